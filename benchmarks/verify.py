"""Benchmark: Monte-Carlo verification throughput (samples/s) of a 5-layer D2NN.

A 5-layer D2NN (N x N pixels, 4 levels of the ``thz-printed`` process, 3 cm spacing, 10
detectors) is exported to STL, read back (timed), and verified on 1000 test images (random
28x28 images, every pixel set: the superposition of ``Evaluator.input_basis`` propagates 784
unit images instead of 1000, see ``verify_quickstart.py`` for a real test set) under
fabrication errors. For each
N it times, as medians of repeated runs after a warm-up:

* ``loop``: the obvious implementation, one :meth:`Evaluator.evaluate` call per sample
  (transmissions rebuilt per sample, every propagation from the input plane);
* ``batched``: :func:`optodesign.verify.montecarlo.monte_carlo` with the device's default
  batch (``MAX_BATCH_BYTES`` of padded fields) and the test images propagated to layer 1 once;
* ``batched xN``: the same with a larger batch (more samples per forward pass);
* ``spacing``: a model with layer-spacing errors, which must run one sample at a time.

The error model is height noise (1 % of the 2π height), misalignment (0.1 px) and rotation
(0.1 px at the edge); ``spacing`` adds 0.5 % spacing errors. GPU rows are added when CUDA is
available. Run: ``python benchmarks/verify.py`` (about 2-3 min on 2 quiet cores);
``--sizes 64 --samples 2`` for a quick look. Results: ``benchmarks/results/verify.{txt,json}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import save_table  # noqa: E402

from optodesign.data.datasets import Dataset  # noqa: E402
from optodesign.design import Design  # noqa: E402
from optodesign.evaluate import Evaluator  # noqa: E402
from optodesign.export.fab import export_design  # noqa: E402
from optodesign.models.functional import auto_detectors  # noqa: E402
from optodesign.optics.propagation import SamplingWarning  # noqa: E402
from optodesign.process import load_process  # noqa: E402
from optodesign.tasks import D2NNSetup  # noqa: E402
from optodesign.variation.perturb import apply_random, apply_systematic  # noqa: E402
from optodesign.variation.spec import ErrorModel  # noqa: E402
from optodesign.verify.montecarlo import Scorer, monte_carlo  # noqa: E402
from optodesign.verify.readback import FabStack, read_fab  # noqa: E402

LAYERS = 5
N_TEST = 1000


def make_fab(n: int, root: Path) -> Path:
    p = load_process("thz-printed")
    rng = np.random.default_rng(0)
    setup = D2NNSetup(
        detectors=tuple(tuple(b) for b in auto_detectors(10, (n, n), max(2, n // 12))),
        image_size=n // 2, encoding="amplitude", dataset="synthetic", test_samples=N_TEST)
    d = Design(setup=setup, wavelength=p.wavelength, pitch=0.4e-3,
               levels=rng.integers(0, 4, (LAYERS, n, n)), level_tables=p.level_table(4),
               distances=(0.03,) * (LAYERS + 1))
    export_design(d, p, root / f"fab{n}", formats="stl", plot=False)
    return root / f"fab{n}"


def synthetic_dataset() -> Dataset:
    rng = np.random.default_rng(1)
    imgs = rng.random((N_TEST, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, N_TEST)
    return Dataset("synthetic", imgs[:10], labels[:10], imgs, labels)


def run_loop(fab: FabStack, ev: Evaluator, model: ErrorModel, samples: int) -> None:
    """One Evaluator.evaluate per sample, from the input plane (the obvious way)."""
    base = apply_systematic(fab.physical, model)
    for s in range(samples):
        ev.evaluate(fab.transmissions(apply_random(base, model, seed=0, sample=s)))


def run_mc(fab: FabStack, scorer: Scorer, model: ErrorModel, samples: int) -> None:
    monte_carlo(fab, model, samples=samples, scorer=scorer, metric="accuracy")


def time_it(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up: transfer functions, caches, allocator
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 100])
    ap.add_argument("--samples", type=int, default=2, help="samples per timed run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", SamplingWarning)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ds = synthetic_dataset()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            fab_dir = make_fab(n, Path(tmp))
            t0 = time.perf_counter()
            fab = read_fab(fab_dir)
            t_read = time.perf_counter() - t0
            scales = fab.scales()
            model = ErrorModel(height_sigma=0.01 * scales.height_2pi,
                               misalignment=0.1 * scales.pitch,
                               rotation=float(np.degrees(0.1 / (n / 2))))
            spacing = ErrorModel(**{**model.to_dict(), "spacing_sigma": 0.005 * 0.03})
            for dev in devices:
                ev = Evaluator(fab.design, torch.device(dev), ds)
                S = args.samples * (8 if dev == "cuda" else 1)

                configs = [("loop", partial(run_loop, fab, ev, model, S), S)]
                default = Scorer(ev).max_fields
                for name, mf, m in (("batched", default, model),
                                    ("batched x4", 4 * default, model),
                                    ("spacing", default, spacing)):
                    sc = Scorer(ev, max_fields=mf)
                    configs.append((f"{name} ({mf} fields)", partial(run_mc, fab, sc, m, S), S))
                base_rate = None
                for name, fn, count in configs:
                    t = time_it(fn, args.repeats)
                    rate = count / t
                    base_rate = base_rate or rate
                    rows.append([n, LAYERS, N_TEST, dev, name, count, t, rate,
                                 rate / base_rate, t_read])
                    print(f"N={n} {dev} {name}: {rate:.3f} samples/s", flush=True)
    save_table(
        "verify", rows,
        ["N", "layers", "test images", "device", "method", "samples", "s (median)",
         "samples/s", "vs loop", "read-back s"],
        {"layers": LAYERS, "test_images": N_TEST, "repeats": args.repeats,
         "threads": args.threads, "pad": 2, "process": "thz-printed",
         "errors": "height σ 1% of 2π height, misalignment 0.1 px, rotation 0.1 px at edge "
                   "(+ spacing 0.5% for 'spacing')"},
        notes=["samples/s counts fabricated realisations, each scored on all test images",
               "one sample = K+1 (loop) or K (batched, inputs cached) propagations of every "
               "test image on a 2N x 2N padded grid"],
    )


if __name__ == "__main__":
    main()

"""Benchmark: training-model vs converged-model gap of D2NN fab directories (issue #12).

For each fab directory (default: the quickstart design, ``optodesign/data/quickstart.toml``,
trained twice, propagating by the Rayleigh–Sommerfeld convolution (its config) and by the
band-limited angular spectrum, and exported with its process into a temporary directory), it
reads the files back and reports:

* the primary metric under the **training model** (the design's pad, samples per pixel and
  propagation; reproduces the trained metric exactly);
* the metric under a grid of models (the angular spectrum at pad 2, 4, 8 and the
  Rayleigh–Sommerfeld convolution at pad 2, each at one and at two samples per pixel);
* the ladder :func:`optodesign.verify.model.converge` climbs, with the change of the detector
  energies of the first 32 test images from the model before (relative L2) at each step;
* the model :func:`optodesign.verify.model.converge` chooses with its default caps, the gap
  to the training model, and the time of the ladder.

Run: ``python benchmarks/verify_convergence.py [FAB_DIR ...] [--max-pad 16]
[--test-samples N] [--no-grid] [--results NAME]``. Results:
``benchmarks/results/verify_convergence.{txt,json}`` (the quickstart, both propagations) and
``verify_convergence_mnist4.{txt,json}`` (``examples/d2nn_mnist4.toml`` trained and exported
with ``thz-printed``, scored on its first 2000 test images, ``--no-grid``).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import save_table  # noqa: E402

from optodesign.evaluate import Evaluator  # noqa: E402
from optodesign.verify.model import (  # noqa: E402
    SimModel,
    batch_size,
    converge,
    evaluator_for,
    render,
)
from optodesign.verify.readback import read_fab  # noqa: E402


def ladder(fab_dir: Path, max_pad: float, test_samples: int = 0,
           grid: bool = True) -> list[list]:
    fab = read_fab(fab_dir)
    ev = Evaluator.from_design(fab.design)
    if test_samples and ev.dataset is not None:  # score on the first test_samples images
        ds = ev.dataset
        ev.dataset = dataclasses.replace(ds, test_images=ds.test_images[:test_samples],
                                         test_labels=ds.test_labels[:test_samples])
    metric = ev.task.primary_metric
    rows = []
    models = [SimModel(p, s, method) for s in (1, 2)
              for p, method in ((2.0, "asm"), (4.0, "asm"), (8.0, "asm"), (2.0, "rs"))
              if p <= max_pad and grid]
    training = SimModel.training(fab.design)
    for m in models:
        t0 = time.perf_counter()
        e = evaluator_for(ev, m)
        t = torch.as_tensor(render(fab, fab.physical, m).astype(np.complex64))
        value = float(e.evaluate(t, batch_size=batch_size(e.grid))[metric])
        rows.append([fab_dir.name, m.label(),
                     "training" if m == training else "", round(100 * value, 2),
                     round(time.perf_counter() - t0, 1)])
    t0 = time.perf_counter()
    c = converge(fab, ev, metric=metric)
    trained = float(ev.evaluate(fab.transmissions())[metric])
    gap = float(c.nominal[metric]) - trained
    rows.append([fab_dir.name, f"chosen: {c.chosen.label()}",
                 f"{'converged' if c.converged else 'NOT converged'}, gap {100 * gap:+.2f} pts",
                 round(100 * float(c.nominal[metric]), 2), round(time.perf_counter() - t0, 1)])
    if not grid:  # the training model's row is not in the grid
        rows.insert(-1, [fab_dir.name, f"training: {training.label()}", "training",
                         round(100 * trained, 2), ""])
    for st in c.steps:
        if st.energy_change is not None:
            rows.append([fab_dir.name, f"ladder: {st.model.label()}",
                         f"energies change {100 * st.energy_change:.2f} %", "",
                         round(st.seconds, 1)])
    return rows


def quickstart_fab(work: Path, propagation: str) -> Path:
    """The quickstart config trained with ``optics.propagation = propagation`` and exported
    with its process: the fab directory ``work/qs-<propagation>``."""
    from optodesign.commands.quickstart import PROCESS, quickstart_config_text

    run, fab = work / f"run-{propagation}", work / f"qs-{propagation}"
    run.mkdir()
    text = "\n".join(line for line in quickstart_config_text().splitlines()
                     if not line.startswith("propagation ="))
    text = text.replace("[optics]\n", f'[optics]\npropagation = "{propagation}"\n', 1)
    (run / "config.toml").write_text(text)
    t0 = time.perf_counter()
    cli = [sys.executable, "-m", "optodesign"]
    subprocess.run([*cli, "train", str(run / "config.toml"), "--out", str(run / "run"),
                    "--quiet"], check=True)
    subprocess.run([*cli, "export", str(run / "run"), "--process", PROCESS, "--out", str(fab)],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"quickstart, propagation = {propagation}: trained and exported in "
          f"{time.perf_counter() - t0:.0f} s")
    return fab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fabs", nargs="*", type=Path)
    ap.add_argument("--max-pad", type=float, default=16.0)
    ap.add_argument("--test-samples", type=int, default=0,
                    help="score on the first N test images (0: the design's test split)")
    ap.add_argument("--results", default="verify_convergence",
                    help="name of the results files under benchmarks/results/")
    ap.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                    help="also score the fixed grid of models (asm at pad 2, 4, 8 and rs at "
                         "pad 2, at s 1 and 2)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    fabs = list(args.fabs)
    tmp = None
    if not fabs:
        tmp = tempfile.TemporaryDirectory()
        fabs = [quickstart_fab(Path(tmp.name), method) for method in ("rs", "asm")]
    rows = [r for f in fabs for r in ladder(f, args.max_pad, args.test_samples, args.grid)]
    header = ["fab", "model", "note", "accuracy %", "seconds"]
    save_table(args.results, rows, header,
               {"max_pad": args.max_pad, "test_samples": args.test_samples or "all"})
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

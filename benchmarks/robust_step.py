"""Benchmark: the cost of an error-aware training step (verify's error models in training).

A one-layer hologram (``fused-silica-etch4``, psq-li, 4 levels) is trained for a few steps
without errors, under every error of ``examples/errors_fused_silica.toml`` but the line-width
bias, and under the whole file; the time per step is the difference of a long and a short
run over the extra steps (start-up and scoring cancel). Also timed: the placement alone
(:func:`optodesign.optics.placement.place` / ``place_drawn``) on ``K`` layers.

Run: ``python benchmarks/robust_step.py`` (about a minute on 2 quiet cores; ``--size``,
``--samples``). Results: ``benchmarks/results/robust_step.{txt,json}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import save_table  # noqa: E402

from optodesign.grid import Grid  # noqa: E402
from optodesign.optics.placement import place, place_drawn  # noqa: E402
from optodesign.train.build import build_quantizers  # noqa: E402
from optodesign.train.config import parse_config  # noqa: E402
from optodesign.train.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NO_BIAS = """[errors]
height_sigma = "5 nm"
height_scale = 0.02
index_sigma = 0.001
misalignment = "200 nm"
rotation = "0.5 mrad"
spacing_sigma = "5 um"
wavelength_shift = "0.2 nm"
"""


def _raw(size: int, errors: str | None, steps: int, samples: int) -> dict:
    raw = {"task": "hologram", "seed": 1,
           "optics": {"wavelength": "633 nm", "pitch": "4 um", "size": size, "layers": 1,
                      "distance": "2 mm"},
           "quantization": {"method": "psq-li", "levels": 4, "process": "fused-silica-etch4"},
           "target": {"kind": "spots", "spots": [2, 2], "spacing": size // 4, "spot_size": 3},
           "train": {"epochs": 1, "steps_per_epoch": steps, "lr": 0.1}}
    if errors is not None:
        raw["fabrication"] = {"errors": errors, "error_samples": samples, "error_ramp": 0.0}
    return raw


def _fit_seconds(size: int, errors: str | None, steps: int, samples: int) -> float:
    tr = Trainer(parse_config(_raw(size, errors, steps, samples)), tempfile.mkdtemp(),
                 progress=False)
    q = build_quantizers(tr.cfg, tr.process_table, tr.fixed_masks)
    t0 = time.perf_counter()
    tr.fit(q)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4, help="error samples per step")
    ap.add_argument("--steps", type=int, default=10, help="extra steps timed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        no_bias = Path(tmp) / "no_bias.toml"
        no_bias.write_text(NO_BIAS)
        full = ROOT / "examples" / "errors_fused_silica.toml"
        for label, errors in (("none", None), ("example file without the bias", str(no_bias)),
                              ("examples/errors_fused_silica.toml", str(full))):
            _fit_seconds(args.size, errors, 2, args.samples)  # warm caches
            short = min(_fit_seconds(args.size, errors, 4, args.samples) for _ in range(2))
            long = min(_fit_seconds(args.size, errors, 4 + args.steps, args.samples)
                       for _ in range(2))
            rows.append(["training step", label, round((long - short) / args.steps * 1e3, 1),
                         "ms"])
    rng = np.random.default_rng(0)
    n, K = 200, 5
    t = torch.as_tensor(rng.normal(size=(K, n, n)) + 1j * rng.normal(size=(K, n, n)))
    grid = Grid((n, n), 1e-4)
    shifts, rot = rng.normal(size=(K, 2)) * 1e-4, rng.normal(size=K) * 1e-3
    for name, move in (("place", place), ("place_drawn", place_drawn)):
        move(t, grid=grid, shifts=shifts, rotations=rot)
        t0 = time.perf_counter()
        for _ in range(3):
            move(t, grid=grid, shifts=shifts, rotations=rot)
        rows.append([name, f"{K} layers {n}², complex128, shift + rotation",
                     round((time.perf_counter() - t0) / 3 * 1e3, 1), "ms"])
    save_table("robust_step", rows, ["what", "case", "time", "unit"],
               meta={"size": args.size, "error_samples": args.samples, "steps": args.steps,
                     "threads": args.threads},
               notes=["before (thin torch stand-in, commit a104067, same machine): none "
                      "4.4 ms, without bias 13.2 ms, whole file 19.8 ms per step; numpy "
                      "place 20 ms, place_drawn 460 ms"])


if __name__ == "__main__":
    main()

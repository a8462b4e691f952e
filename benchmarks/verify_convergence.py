"""Benchmark: training-model vs converged-model gap of D2NN fab directories (issue #12).

For each fab directory (default: a fresh ``optodesign quickstart`` design, trained and
exported into a temporary directory), it reads the files back and reports:

* the primary metric under the **training model** (the design's pad, one sample per pixel;
  reproduces the trained metric exactly);
* the metric under a grid of models (pad 2, 4, 8 at one and at two samples per pixel);
* the ladder :func:`optodesign.verify.model.converge` climbs (samples per pixel at the
  training pad, then the pad), with the change of the detector energies of the first 32 test
  images from the model before (relative L2) at each step;
* the model :func:`optodesign.verify.model.converge` chooses with its default caps, the gap
  to the training model, and the time of the ladder.

Run: ``python benchmarks/verify_convergence.py [FAB_DIR ...] [--max-pad 16]``. Results:
``benchmarks/results/verify_convergence.{txt,json}``.
"""

from __future__ import annotations

import argparse
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


def ladder(fab_dir: Path, max_pad: float) -> list[list]:
    fab = read_fab(fab_dir)
    ev = Evaluator.from_design(fab.design)
    metric = ev.task.primary_metric
    g = fab.design.grid
    rows = []
    models = [SimModel(p, s) for s in (1, 2) for p in (2.0, 4.0, 8.0) if p <= max_pad]
    training = SimModel.training(g)
    for m in models:
        t0 = time.perf_counter()
        e = evaluator_for(ev, m)
        t = torch.as_tensor(render(fab, fab.physical, m).astype(np.complex64))
        value = float(e.evaluate(t, batch_size=batch_size(e.grid))[metric])
        rows.append([fab_dir.name, f"pad {m.pad:g}, s {m.oversample}",
                     "training" if m == training else "", round(100 * value, 2),
                     round(time.perf_counter() - t0, 1)])
    t0 = time.perf_counter()
    c = converge(fab, ev, metric=metric)
    gap = float(c.nominal[metric]) - float(ev.evaluate(fab.transmissions())[metric])
    rows.append([fab_dir.name, f"chosen: {c.chosen.label()}",
                 "converged" if c.converged else "NOT converged",
                 f"gap {100 * gap:+.2f} pts", round(time.perf_counter() - t0, 1)])
    for st in c.steps:
        if st.energy_change is not None:
            rows.append([fab_dir.name, f"ladder pad {st.model.pad:g}, s {st.model.oversample}",
                         f"energies change {100 * st.energy_change:.2f} %", "",
                         round(st.seconds, 1)])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fabs", nargs="*", type=Path)
    ap.add_argument("--max-pad", type=float, default=16.0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    fabs = list(args.fabs)
    tmp = None
    if not fabs:
        tmp = tempfile.TemporaryDirectory()
        out = Path(tmp.name) / "qs"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "optodesign", "quickstart", "--out", str(out),
                        "--quiet", "--samples", "1"], check=True)
        print(f"quickstart (train, export, verify with 1 sample): "
              f"{time.perf_counter() - t0:.0f} s")
        fabs = [out / "fab"]
    rows = [r for f in fabs for r in ladder(f, args.max_pad)]
    header = ["fab", "model", "note", "accuracy %", "seconds"]
    save_table("verify_convergence", rows, header, {"max_pad": args.max_pad})
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""Benchmark: the whole default ``optodesign verify`` of the quickstart design (issue #12's
"converged verify under 2 minutes on 2 CPU cores").

Trains the quickstart config (``optodesign/data/quickstart.toml``: 3 × 64² layers, the
embedded 8×8 digits, 449 test images), exports its STL files, and times
:func:`optodesign.verify.montecarlo.verify_fab` as ``optodesign verify FAB`` runs it: the
convergence ladder, 100 Monte-Carlo samples of the default errors and the tolerance sweep, all
under the converged model (Rayleigh–Sommerfeld, pad 2, 2×2 samples per pixel here). Two ways,
in one process, one after the other (``--repeats`` times each, medians):

* ``unit images``: the default, the readings of the 449 digits combined from the propagated
  unit images of the 59 pixels any digit sets (superposition,
  :meth:`optodesign.evaluate.Evaluator.input_basis`);
* ``every image``: each digit propagated on its own (``input_basis`` patched to None), what
  verify did before.

It checks that both give the same numbers (every metric of the Monte Carlo and of every sweep
point) and prints the times. glibc malloc is tuned as the CLI tunes it. Run:
``python benchmarks/verify_quickstart.py`` (about 7 minutes on 2 quiet cores; ``--fab DIR``
to time an existing fab directory). Results: ``benchmarks/results/verify_quickstart.{txt,json}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import save_table  # noqa: E402

from optodesign.allocator import tune_malloc  # noqa: E402
from optodesign.evaluate import Evaluator  # noqa: E402
from optodesign.verify.montecarlo import verify_fab  # noqa: E402


def quickstart_fab(tmp: Path) -> Path:
    """Train the packaged quickstart config and export its STL files."""
    from optodesign.commands.quickstart import PROCESS, quickstart_config_text
    from optodesign.design import Design
    from optodesign.export.fab import export_design
    from optodesign.fileio import read_toml
    from optodesign.process import load_process
    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer

    cfg_path = tmp / "quickstart.toml"
    cfg_path.write_text(quickstart_config_text(), encoding="utf-8")
    raw = read_toml(cfg_path, what="config")
    cfg = parse_config(raw)
    run = tmp / "run"
    Trainer(cfg, run, progress=False).run()
    design = Design.load(run)
    fab = tmp / "fab"
    export_design(design, load_process(PROCESS), fab, formats=("stl",),
                  design_dir=run, plot=False)
    return fab


def numbers(res) -> np.ndarray:
    """Every metric value of a verify result (Monte Carlo, then each sweep point)."""
    parts = [res.combined.values]
    for s in res.sweep:
        parts.extend(np.asarray(v, dtype=np.float64) for v in s.values)
    return np.concatenate([np.atleast_1d(p) for p in parts])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fab", type=Path, help="an existing fab directory (default: train the "
                                             "quickstart and export it)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    malloc = tune_malloc()
    original = Evaluator.input_basis
    rows, seen = [], {}
    with tempfile.TemporaryDirectory() as td:
        fab = args.fab or quickstart_fab(Path(td))
        for label, basis in (("unit images", original), ("every image", None)):
            Evaluator.input_basis = basis if basis is not None else (lambda self, images: None)
            times, mc = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = verify_fab(fab)
                times.append(time.perf_counter() - t0)
                mc.append(res.combined.seconds)
            Evaluator.input_basis = original
            seen[label] = numbers(res)
            rows.append([label, res.model.label(), len(res.combined.values),
                         sum(len(s.values) for s in res.sweep),
                         round(statistics.median(mc), 1), round(statistics.median(times), 1)])
            print(rows[-1], flush=True)
    a, b = seen["unit images"], seen["every image"]
    same = a.shape == b.shape and bool(np.array_equal(a, b))
    ratio = rows[1][-1] / rows[0][-1]
    for r in rows:
        r.append(round(rows[1][-1] / r[-1], 2))
    save_table("verify_quickstart", rows,
               ["inputs propagated", "model", "MC samples", "sweep points", "MC s",
                "verify s", "speed-up"],
               {"design": "optodesign/data/quickstart.toml (3 x 64^2, 449 test digits)",
                "repeats": args.repeats, "malloc": malloc,
                "identical_metrics": same},
               notes=[f"every metric of the Monte Carlo and the sweep identical both ways: "
                      f"{same}; the unit images are {ratio:.2f}x faster (medians of one run)"])
    if not same:
        raise SystemExit("the two ways disagree")


if __name__ == "__main__":
    main()

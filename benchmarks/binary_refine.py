"""1-bit D2NNs (structural zeros vs plain STE vs PSQ) and discrete refinement (DBS vs annealing).

Two tables, saved together in ``benchmarks/results/binary_refine.txt`` (and ``.json``):

(a) MNIST D2NN at 1 bit (needs the four IDX files in ``--data``; skipped with a message when
    they are absent). Three quantizers train the same network: ``binary`` (one learned phase
    step α per layer, pixels outside the diffraction cones fixed and stored with 0 bits,
    :mod:`optodesign.quantize.binary`), plain STE binary (``ste``, levels = 2) and PSQ
    (``psq-li``, levels = 2). Columns: hard-quantized test accuracy, fixed-pixel fraction and
    stored bits per pixel. Network: 4 phase layers of 64 x 64 px, λ = 532 nm, pitch 1 µm
    (λ/2p = 0.27, so the diffraction cone is narrow enough for structural zeros), 40 µm
    spacing, 28 px images, 4 px detectors; 2000 training images, 3 epochs, batch 32, lr 0.1,
    1000 test images.
(b) Refinement of trained designs at the same evaluation budget, DBS vs simulated annealing
    (Metropolis, :mod:`optodesign.refine.solvers`): a 2-level and a 4-level 64 x 64 hologram
    (PSQ-LI, 200 steps, target "OPTO") and the D2NNs of (a) (MNIST; the embedded digits
    when MNIST is absent). Metric before/after (PSNR dB; D2NN test accuracy), loss
    before/after and wall time, medians over ``--repeats`` seeds.

Usage::

    python benchmarks/binary_refine.py                 # the tables (~10 min on 2 busy cores)
    python benchmarks/binary_refine.py --quick         # smoke run (~1 min)

Unless ``LD_PRELOAD`` or ``GLIBC_TUNABLES`` is set the script re-executes itself with glibc's
mmap/trim thresholds raised (DESIGN.md, "Platform facts"); ``--no-tune-malloc`` keeps the
default allocator. Torch runs with one thread (other jobs share the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

GLIBC_TUNED = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296"
IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "mnist"

FULL: dict[str, Any] = {
    "size": 64, "layers": 4, "wavelength": "532 nm", "pitch": "1 um", "distance": "40 um",
    "image_size": 28, "detector": 4, "train_samples": 2000, "test_samples": 1000,
    "epochs": 3, "batch_size": 32, "lr": 0.1,
    "holo_size": 64, "holo_steps": 200, "holo_budget": 20000,
    "d2nn_budget": 3000, "d2nn_train_samples": 256, "d2nn_chunk": 256, "repeats": 3,
    "d2nn_repeats": 1,
}
QUICK: dict[str, Any] = {**FULL, "size": 32, "layers": 2, "distance": "20 um", "image_size": 16,
                         "detector": 2, "train_samples": 256, "test_samples": 200,
                         "epochs": 1, "holo_size": 32, "holo_steps": 50, "holo_budget": 2000,
                         "d2nn_budget": 300, "d2nn_train_samples": 64, "d2nn_chunk": 64,
                         "repeats": 1}

METHODS_1BIT = (("binary", "binary + structural zeros"), ("ste", "plain STE binary"),
                ("psq-li", "PSQ-LI, L = 2"))


def d2nn_config(s: dict[str, Any], method: str, dataset: str, data: Path) -> dict[str, Any]:
    return {
        "task": "d2nn", "seed": 0,
        "optics": {"wavelength": s["wavelength"], "pitch": s["pitch"], "size": s["size"],
                   "layers": s["layers"], "distance": s["distance"]},
        "quantization": {"method": method, "levels": 2},
        "data": {"dataset": dataset, **({"path": str(data)} if dataset == "mnist" else {}),
                 "image_size": s["image_size"], "train_samples": s["train_samples"],
                 "test_samples": s["test_samples"]},
        "detectors": {"size": s["detector"]},
        "train": {"epochs": s["epochs"], "batch_size": s["batch_size"], "lr": s["lr"]},
    }


def hologram_config(s: dict[str, Any], levels: int) -> dict[str, Any]:
    return {
        "task": "hologram", "seed": 0,
        "optics": {"wavelength": "532 nm", "pitch": "1 um", "size": s["holo_size"],
                   "layers": 1, "distance": "60 um"},
        "quantization": {"method": "psq-li", "levels": levels},
        "target": {"kind": "text", "text": "OPTO"},
        "train": {"epochs": 4, "steps_per_epoch": s["holo_steps"] // 4, "lr": 0.1},
    }


def train(raw: dict[str, Any], out: Path) -> tuple[Any, float]:
    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer

    t0 = time.perf_counter()
    result = Trainer(parse_config(raw), out, progress=False).run()
    return result.design, time.perf_counter() - t0


def refine_rows(name: str, design: Any, s: dict[str, Any], *, budget: int, repeats: int,
                d2nn: bool) -> list[list[Any]]:
    from optodesign.evaluate import Evaluator
    from optodesign.refine import Objective, refine

    ev = Evaluator.from_design(design)
    key = ev.task.primary_metric
    before = ev.evaluate(design.transmissions())[key]
    objective = Objective(design, evaluator=ev, train_samples=s["d2nn_train_samples"])
    opts: dict[str, Any] = {"fixed_mask": design.fixed_mask,
                            "allowed_levels": design.allowed_levels()}
    if d2nn:
        opts["chunk"] = s["d2nn_chunk"]
    rows = []
    scale = 100.0 if key == "accuracy" else 1.0
    for method in ("dbs", "anneal"):
        runs = []
        for seed in range(repeats):
            r = refine(objective, design.levels, method=method, budget=budget, seed=seed, **opts)
            after = ev.evaluate(objective.transmissions(r.levels))[key]
            runs.append((r.loss_before, r.loss_after, after, r.wall_time))
            print(f"  {name} {method} seed {seed}: loss {r.loss_before:.5g} -> "
                  f"{r.loss_after:.5g}, {key} {before:.4g} -> {after:.4g}, "
                  f"{r.wall_time:.1f} s", flush=True)
        med = [statistics.median(v) for v in zip(*runs, strict=True)]
        rows.append([name, method, budget, med[0], med[1], before * scale, med[2] * scale,
                     med[3]])
    return rows


def render(tables: list[tuple[str, list[list[Any]], list[str]]], meta: dict[str, Any],
           notes: list[str]) -> None:
    sys.path.insert(0, str(HERE))
    from _machine import RESULTS, format_table, machine_info

    machine = machine_info()
    head = [f"# binary_refine benchmark, {machine['date']}"]
    head += [f"# {k}: {v}" for k, v in machine.items() if k != "date"]
    head += [f"# {k}: {v}" for k, v in meta.items()]
    parts = ["\n".join(head)]
    for title, rows, header in tables:
        parts.append(title + "\n" + format_table(rows, header))
    text = "\n\n".join(parts) + "\n\n" + "\n".join(notes) + "\n"
    print(text, end="")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "binary_refine.txt").write_text(text, encoding="utf-8")
    payload = {"meta": meta, "machine": machine, "notes": notes,
               "tables": [{"title": t, "header": h, "rows": r} for t, r, h in tables]}
    (RESULTS / "binary_refine.json").write_text(json.dumps(payload, indent=1, default=str) + "\n",
                                                encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST IDX directory")
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--no-tune-malloc", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="keep trained runs here")
    args = ap.parse_args()
    if not (args.no_tune_malloc or os.environ.get("LD_PRELOAD")
            or os.environ.get("GLIBC_TUNABLES")):
        os.environ["GLIBC_TUNABLES"] = GLIBC_TUNED
        os.execv(sys.executable, [sys.executable, *sys.argv])

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)  # sampling notes of tiny grids
    s = QUICK if args.quick else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="binary_refine_"))
    have_mnist = all((args.data / f).is_file() for f in IDX)
    t_start = time.perf_counter()
    notes: list[str] = []
    tables: list[tuple[str, list[list[Any]], list[str]]] = []

    # ---------------------------------------------------------------- (a) 1-bit D2NN
    d2nn_designs: dict[str, Any] = {}
    rows_a: list[list[Any]] = []
    if have_mnist:
        for method, label in METHODS_1BIT:
            print(f"(a) training {label} ...", flush=True)
            design, secs = train(d2nn_config(s, method, "mnist", args.data), work / method)
            d2nn_designs[method] = design
            fixed = 0.0 if design.fixed_mask is None else float(design.fixed_mask.mean())
            bits = design.metrics.get("stored_bits_per_pixel", 1.0)
            rows_a.append([label, method, design.n_levels, 100 * fixed, bits,
                           100 * design.metrics["accuracy"], secs])
        tables.append(("(a) MNIST D2NN at 1 bit: hard-quantized test accuracy",
                       rows_a, ["quantizer", "method", "table entries", "fixed px %",
                                "stored bits/px", "test acc %", "train s"]))
    else:
        msg = (f"(a) skipped: MNIST IDX files not found in {args.data} (pass --data DIR); "
               f"the D2NN refinement rows use the embedded digits instead")
        print(msg, flush=True)
        notes.append(msg)
        design, _ = train(d2nn_config(s, "binary", "digits", args.data), work / "binary")
        d2nn_designs["binary"] = design

    # ---------------------------------------------------------------- (b) refinement
    rows_b: list[list[Any]] = []
    for levels in (2, 4):
        print(f"(b) training the {levels}-level hologram ...", flush=True)
        design, _ = train(hologram_config(s, levels), work / f"holo{levels}")
        rows_b += refine_rows(f"hologram L={levels}", design, s, budget=s["holo_budget"],
                              repeats=s["repeats"], d2nn=False)
    for method, design in d2nn_designs.items():
        data = "MNIST" if have_mnist else "digits"
        rows_b += refine_rows(f"D2NN {data} {method}", design, s, budget=s["d2nn_budget"],
                              repeats=s["d2nn_repeats"], d2nn=True)
    tables.append(("(b) discrete refinement at equal evaluation budgets (medians over seeds)",
                   rows_b, ["design", "solver", "budget evals", "loss before",
                            "loss after", "metric before", "metric after", "wall s"]))
    notes += [
        "metric: hologram PSNR in dB (best scale, target peak 1); D2NN test accuracy in %.",
        "loss: the hard-quantized training loss (hologram MSE; D2NN cross-entropy on "
        f"{s['d2nn_train_samples']} fixed training images, temperature 10).",
        "solver anneal = simulated annealing, Metropolis rule, T from the median uphill "
        "change at acceptance 0.05 down by 1e-3; the best design seen is returned.",
        f"total benchmark time: {time.perf_counter() - t_start:.0f} s",
    ]
    meta = {k: v for k, v in s.items()}
    meta["mode"] = "quick" if args.quick else "full"
    render(tables, meta, notes)


if __name__ == "__main__":
    main()

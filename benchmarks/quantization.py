"""Quantization benchmark: MNIST test accuracy of one D2NN trained with every phase quantizer.

One table: rows FP32, PQ, STE, GS, DSQ, PSQ-FT, PSQ-LI, PSQ-LT; columns L = 2, 4, 16 phase
levels; cells the MNIST test accuracy (%) of the *hard-quantized* design (``Design`` levels,
what export writes). The FP32 row is the unquantized model. Every run uses the same D2NN,
data, epochs, optimiser and seed; the quantizers keep their library defaults
(``docs/quantizers.md``). See ``docs/benchmarks_quantization.md`` for the exact setting.

PQ trains in full precision whatever ``L`` is (its training path is ``exp(i·raw)``, and the
initial phases do not depend on ``L``), so one training gives the FP32 row and the PQ row at
every ``L`` (nearest-level quantization of the trained phases). That is 1 + 6 × 3 = 19 runs.

Usage::

    python benchmarks/quantization.py --data ../shared/data/mnist          # the table
    python benchmarks/quantization.py --data ../shared/data/mnist --quick  # smoke run
    python benchmarks/quantization.py --methods pq,psq-ft,psq-li,psq-lt       # some rows
    python benchmarks/quantization.py --device cuda --jobs 4                  # on a GPU

A run with ``--methods``/``--levels`` saves the rows it trained and keeps the other rows of
the saved table (marked with the date of the run that made them). Runs are cached as JSON
under ``--work`` (keyed by the setting, the device and the quantizer's resolved options), so
an interrupted grid resumes where it stopped. Unless ``LD_PRELOAD`` names tcmalloc/jemalloc
or ``GLIBC_TUNABLES`` is set, the script re-executes itself with glibc's mmap/trim thresholds
raised (DESIGN.md, "Platform facts": the default allocator about halves CPU training speed);
``--no-tune-malloc`` keeps the default allocator.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

GLIBC_TUNED = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296"
IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
METHODS = ("fp32", "pq", "ste", "gs", "dsq", "psq-ft", "psq-li", "psq-lt")
LEVELS = (2, 4, 16)

#: The benchmark setting (examples/d2nn_mnist4.toml is PSQ-LI, L = 4 of it, with the default
#: pixels = "cells"). The table was measured with point-sampled pixels, the model before
#: cells existed, and keeps it so its numbers stay reproducible: it compares quantizers.
FULL: dict[str, Any] = {
    "size": 48, "layers": 5, "wavelength": "0.75 mm", "pitch": "0.4 mm", "distance": "1 cm",
    "pixels": "points",
    "image_size": 28, "detector": 4, "train_samples": 4000, "epochs": 4, "batch_size": 64,
    "lr": 0.05, "temperature": 10.0, "monitor_samples": 500, "test_samples": 10000, "seed": 0,
}
QUICK: dict[str, Any] = {**FULL, "size": 32, "image_size": 20, "detector": 3,
                         "distance": "6 mm", "train_samples": 256, "epochs": 2,
                         "monitor_samples": 100, "test_samples": 500}


#: the MNIST IDX files in ../shared beside the repository (never committed into it)
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def _shown_path(path: Path | str) -> str:
    """A data path as results record it: relative to the repository (``../shared/...``),
    never one machine's absolute path."""
    repo = Path(__file__).resolve().parents[1]
    p = Path(path).resolve()
    try:
        return str(Path("..") / p.relative_to(repo.parent))
    except ValueError:
        return Path(path).name

def config_dict(s: dict[str, Any], method: str, levels: int, data: str) -> dict[str, Any]:
    """The training config (a TOML mapping, see optodesign.train.config) of one run."""
    return {
        "task": "d2nn", "seed": s["seed"],
        "optics": {"wavelength": s["wavelength"], "pitch": s["pitch"], "size": s["size"],
                   "layers": s["layers"], "distance": s["distance"],
                   "pixels": s.get("pixels", "cells")},
        "quantization": {"method": method, "levels": levels},
        "data": {"dataset": "mnist", "path": data, "image_size": s["image_size"],
                 "encoding": "amplitude", "train_samples": s["train_samples"],
                 "test_samples": s["monitor_samples"]},
        "detectors": {"size": s["detector"]},
        "train": {"epochs": s["epochs"], "batch_size": s["batch_size"], "lr": s["lr"],
                  "loss": "ce", "temperature": s["temperature"]},
    }


def _key(s: dict[str, Any], method: str, levels: int, device: str) -> str:
    from optodesign.quantize.registry import build_quantizer

    # the quantizer's resolved options are part of the key: new defaults mean a new run
    setting = {**s, "device": device,
               "quantizer": build_quantizer(method, levels=levels).describe()}
    h = hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:10]
    return f"{method}-L{levels}-{h}"


def run_one(s: dict[str, Any], method: str, levels: int, data: str, work: str,
            threads: int, device: str = "cpu") -> dict[str, Any]:
    """Train one (method, L), then score the hard design on the first ``test_samples`` images.

    For PSQ also score the training path at the end of the schedule (the soft staircase at
    the last epoch's temperature) on the same images: ``accuracy_soft``. For ``pq`` (trained
    once) also score the full-precision phases and their nearest-level quantization at every
    ``L`` in LEVELS. Returns a JSON-able record; cached under ``work``.
    """
    import torch

    from optodesign.evaluate import Evaluator
    from optodesign.models.stack import DiffractiveStack
    from optodesign.quantize.registry import build_quantizer
    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer, build_quantizers

    warnings.filterwarnings("ignore", module="optodesign")
    torch.set_num_threads(threads)
    key = _key(s, method, levels, device)
    cache = Path(work) / f"{key}.json"
    if cache.exists():
        return {**json.loads(cache.read_text()), "cached": True}
    cfg = parse_config(config_dict(s, method, levels, data))
    dev = torch.device(device)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, Path(work) / key, device=device, progress=False)
    result = trainer.run()
    train_s = time.perf_counter() - t0
    design = result.design
    test = design.with_levels(design.levels, setup=dataclasses.replace(
        design.setup, test_samples=s["test_samples"]))
    ev = Evaluator(test, dev, trainer.dataset)
    rec: dict[str, Any] = {
        "method": method, "levels": levels, "device": device, "train_s": train_s,
        "accuracy": ev.evaluate(design.transmissions())["accuracy"],
        "history": result.history, "quantizer": design.quantizer["layers"][0],
    }
    ckpt = Path(work) / key / "checkpoint.pt"
    if method.startswith("psq"):
        stack = DiffractiveStack(build_quantizers(cfg, None), trainer.shape)
        stack.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["stack"])
        stack = stack.to(dev)
        stack.set_progress(s["epochs"] - 1, s["epochs"])  # the last epoch's schedule state
        stack.eval()
        with torch.no_grad():
            rec["accuracy_soft"] = ev.evaluate(stack.transmissions("train"))["accuracy"]
        rec["sharpness"] = [float(q.temperature().detach()) * q.delta  # T·Δ per layer
                            for q in stack.quantizers]
    if method == "pq":
        state = torch.load(ckpt, map_location=dev, weights_only=True)["stack"]
        raw = [state[f"raw.{k}"] for k in range(s["layers"])]
        rec["accuracy_fp32"] = ev.evaluate([torch.polar(torch.ones_like(r), r)
                                            for r in raw])["accuracy"]
        for lv in LEVELS:
            q = build_quantizer("pq", levels=lv)
            rec[f"accuracy_pq_L{lv}"] = ev.evaluate([q.hard(r) for r in raw])["accuracy"]
    rec["wall_s"] = time.perf_counter() - t0
    cache.write_text(json.dumps(rec, indent=1))
    return rec


def _maybe_reexec(args: argparse.Namespace) -> None:
    pre = os.environ.get("LD_PRELOAD", "")
    if args.no_tune_malloc or "malloc" in pre or os.environ.get("GLIBC_TUNABLES"):
        return
    env = {**os.environ, "GLIBC_TUNABLES": GLIBC_TUNED}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        sys.exit("--device: cuda requested but torch.cuda.is_available() is False")
    return name


def _carried_rows(name: str, methods: list[str], s: dict[str, Any]) -> list[list[Any]]:
    """Rows of the saved table for methods not rerun now, if it was made with setting ``s``."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    meta = old.get("meta", {})
    if any(meta.get(k) != v for k, v in s.items()):
        return []  # another setting: nothing to carry
    rerun = {m.upper() for m in methods}
    date = str(old.get("machine", {}).get("date", "?"))[:10]
    out = []
    for row in old.get("rows", []):
        if row[0] not in rerun:
            made = row[5] if len(row) > 5 and row[5] != "this run" else date
            out.append([row[0], *row[1:4], row[4], made])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(MNIST),
                   help="directory holding the four MNIST IDX .gz files (default: "
                        "../shared/data/mnist beside the repository)")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run (about 2 minutes); prints the table, saves nothing")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="where to train and score (default cpu)")
    p.add_argument("--jobs", type=int, default=2,
                   help="runs in parallel (CPU: 1 torch thread each; CUDA: sharing one GPU)")
    p.add_argument("--work", default=None, help="run directories and cache (default /tmp)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated rows to train, of {','.join(METHODS)}")
    p.add_argument("--levels", default="2,4,16", help="comma-separated L values to train")
    p.add_argument("--train-samples", type=int, default=None, help="override (see FULL)")
    p.add_argument("--epochs", type=int, default=None, help="override (see FULL)")
    p.add_argument("--size", type=int, default=None, help="override layer size, px")
    p.add_argument("--no-save", action="store_true",
                   help="print the table only (for settings other than the default)")
    p.add_argument("--no-tune-malloc", action="store_true")
    args = p.parse_args()
    _maybe_reexec(args)

    data = Path(args.data)
    missing = [f for f in IDX if not (data / f).is_file()]
    if missing:
        sys.exit(f"--data: {data} lacks the MNIST IDX file(s) {', '.join(missing)}; download "
                 f"them from http://yann.lecun.com/exdb/mnist/ (or a mirror) into one directory "
                 f"and pass --data DIR")
    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        sys.exit(f"--methods: unknown {', '.join(unknown) or '(none given)'} "
                 f"(allowed: {', '.join(METHODS)})")
    try:
        levels = [int(v) for v in args.levels.split(",") if v.strip()]
    except ValueError:
        sys.exit(f"--levels: expected comma-separated integers, got {args.levels!r}")
    if not levels or any(v not in LEVELS for v in levels):
        sys.exit(f"--levels: each must be one of {', '.join(map(str, LEVELS))}, got {args.levels}")
    device = _resolve_device(args.device)
    s = dict(QUICK if args.quick else FULL)
    for k in ("train_samples", "epochs", "size"):
        if getattr(args, k) is not None:
            s[k] = getattr(args, k)
    name = "quantization_quick" if args.quick else "quantization"
    work = Path(args.work or Path(tempfile.gettempdir()) / f"optodesign-{name}")
    work.mkdir(parents=True, exist_ok=True)
    # fp32 and pq are one training (see the module docstring); L = 4 first, it matters most
    jobs = [("pq", 4)] if {"fp32", "pq"} & set(methods) else []
    jobs += [(m, lv) for lv in sorted(levels, key=lambda v: (v != 4, -v))
             for m in methods if m not in ("fp32", "pq")]
    threads = 1 if device == "cuda" else max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    t0 = time.perf_counter()
    recs: dict[tuple[str, int], dict[str, Any]] = {}
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futs = {pool.submit(run_one, s, m, lv, str(data.resolve()), str(work), threads,
                            device): (m, lv)
                for m, lv in jobs}
        for f in cf.as_completed(futs):
            m, lv = futs[f]
            rec = f.result()
            recs[(m, lv)] = rec
            soft = (f", soft {100 * rec['accuracy_soft']:.2f} %"
                    if "accuracy_soft" in rec else "")
            print(f"[{time.perf_counter() - t0:7.1f} s] {m:6s} L={lv:2d}: hard accuracy "
                  f"{100 * rec['accuracy']:.2f} %{soft}  ({rec['wall_s']:.0f} s)", flush=True)
    total = time.perf_counter() - t0

    rows: list[list[Any]] = []
    pq = recs.get(("pq", 4))
    for m in methods:
        row: list[Any] = [m.upper()]
        for lv in LEVELS:
            if m == "fp32":
                v = pq["accuracy_fp32"] if pq else None
            elif m == "pq":
                v = pq[f"accuracy_pq_L{lv}"] if pq else None
            else:
                r = recs.get((m, lv))
                v = r["accuracy"] if r else None
            row.append(None if v is None else round(100 * v, 2))
        times = [recs[(m, lv)]["wall_s"] for lv in LEVELS if (m, lv) in recs]
        if m in ("fp32", "pq") and pq:
            times = [pq["wall_s"]]
        row.append(round(sorted(times)[len(times) // 2]) if times else None)
        rows.append(row)
    subset = set(methods) != set(METHODS) or set(levels) != set(LEVELS)
    save = not (args.quick or args.no_save)
    if "pq" in methods and "fp32" not in methods and pq:  # the same training: show it too
        rows.insert(0, ["FP32", *[round(100 * pq["accuracy_fp32"], 2)] * 3, round(pq["wall_s"])])
    today = "this run"
    rows = [[*r, today] for r in rows]
    carried = _carried_rows(name, [r[0] for r in rows], s) if save and subset else []
    order = {m.upper(): i for i, m in enumerate(METHODS)}
    rows = sorted(rows + carried, key=lambda r: order.get(r[0], len(order)))
    n_cached = sum(bool(r.get("cached")) for r in recs.values())
    meta = {**s, "data": _shown_path(data), "device": device, "methods": methods, "levels": levels,
            "runs": len(recs), "runs_from_cache": n_cached, "jobs": args.jobs,
            "threads_per_run": threads, "grid_wall_s": round(total, 1)}
    where = (f"{device} ({args.jobs} runs sharing the GPU)" if device == "cuda" else
             f"cpu, {args.jobs} runs in parallel with {threads} torch thread(s) each")
    notes = [
        f"MNIST test accuracy (%) of the hard-quantized design, first {s['test_samples']} test "
        f"images; trained on the first {s['train_samples']} training images, {s['epochs']} "
        f"epochs, batch {s['batch_size']}, Adam lr {s['lr']}, CE loss at temperature "
        f"{s['temperature']}, seed {s['seed']}; quantizer options at their defaults.",
        f"D2NN: {s['layers']} phase layers of {s['size']}x{s['size']} px, pitch {s['pitch']}, "
        f"wavelength {s['wavelength']}, {s['distance']} between planes, band-limited ASM "
        f"with 2x padding; {s['image_size']} px amplitude-encoded input; 10 detectors of "
        f"{s['detector']}x{s['detector']} px.",
        "FP32 = unquantized phases of the PQ training (the same for every L); PQ = those "
        "phases rounded to the nearest of L uniform levels.",
        f"'train s' = wall time of one run (median over L) on {where}; "
        f"{len(recs) - n_cached} trainings now ({total:.0f} s)"
        + (f" and {n_cached} read from the --work cache (finished by an earlier invocation "
           "with the same setting; their times are that invocation's)" if n_cached else "")
        + ". 'run' = which run made the row (rows not retrained now are kept from the saved "
        "table, with that run's date).",
    ]
    for m in ("psq-ft", "psq-li", "psq-lt"):
        got = [(lv, recs[(m, lv)]) for lv in LEVELS if (m, lv) in recs]
        if got:
            notes.append(
                f"{m.upper()} at the end, L = {', '.join(str(lv) for lv, _ in got)}: soft "
                "(training path at the last epoch's T) minus hard accuracy "
                + ", ".join(f"{100 * (r['accuracy_soft'] - r['accuracy']):+.2f}" for _, r in got)
                + " points; sharpness T·Δ (layer 1) "
                + ", ".join(f"{r['sharpness'][0]:.3g}" for _, r in got) + ".")
    header = ["method", "L=2 %", "L=4 %", "L=16 %", "train s", "run"]
    if save:
        save_table(name, rows, header, meta, notes=notes)
    else:  # print only; benchmarks/results keeps the default table
        print("\n".join([format_table(rows, header), "", *notes]))
    (work / "records.json").write_text(
        json.dumps({f"{m}-L{lv}": r for (m, lv), r in recs.items()}, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import RESULTS, format_table, save_table

    main()

"""Full-size MNIST accuracy: ``examples/d2nn_mnist4_full.toml`` at 2, 4 and 16 phase levels.

Trains the config (5 phase layers of 200 x 200 px, PSQ-LI, all 60 000 training images) with
the project's :class:`~optodesign.train.trainer.Trainer` at each requested level count (the
config's ``quantization.levels`` overridden) and reports the hard-quantized test accuracy on
all 10 000 test images, epochs, wall time, samples/s and device.

With ``--budget S`` a run first times a few training steps and one test evaluation (a probe,
through the same trainer code) and trains as many epochs as fit in S seconds (at most the
config's ``train.epochs``); PSQ-LI's temperature schedule spans exactly those epochs. A run
writes ``<work>/L<levels>.json`` when it starts (status ``running``) and when it ends (status
``done``); a run killed in between is reported from its ``metrics.csv`` (the epochs it
finished). ``--merge`` builds the table from whatever runs are in ``--work``, so the level
counts can train concurrently as separate processes on one GPU::

    for L in 2 4 16; do
      python benchmarks/accuracy_full.py --levels $L --data .mnist --budget 300 &
    done; wait
    python benchmarks/accuracy_full.py --merge

``python benchmarks/accuracy_full.py --levels 2 4 16 --data DIR`` runs them one after the
other and merges. ``--smoke`` shrinks the network and data (seconds on a CPU) to test the
script. Results: ``<--results>/accuracy_full.txt`` and ``.json`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: a network and data small enough to test the whole script in seconds on a CPU
SMOKE = {"size": 32, "distance": "8 mm", "image_size": 16, "detector": 3, "train_samples": 512,
         "test_samples": 200, "batch_size": 64, "epochs": 2}
#: seconds allowed for what follows the last epoch (final evaluations, design, plots)
FINAL_OVERHEAD_S = 20.0


class EpochClock(logging.Handler):
    """Wall-clock time of every ``epoch N: {...}`` line the trainer logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("epoch %d"):
            self.times.append(record.created)
            print(f"[{time.strftime('%H:%M:%S')}] {record.getMessage()}", flush=True)


def run_config(args: argparse.Namespace, levels: int) -> dict[str, Any]:
    from gpu import override, raw_config

    raw = raw_config(args.config)
    kw: dict[str, Any] = dict(levels=levels, data=str(args.data) if args.data else None,
                              train_samples=args.train_samples,
                              test_samples=args.test_samples, batch_size=args.batch_size)
    if args.smoke:
        kw.update({k: v for k, v in SMOKE.items() if kw.get(k) is None})
    if args.dataset:
        kw["dataset"] = args.dataset
    return override(raw, **kw)


def plan_epochs(trainer: Any, *, budget_s: float, elapsed_s: float, max_epochs: int,
                safety: float, smoke: bool) -> dict[str, Any]:
    """Time training steps and a test evaluation; the epochs that fit in the budget."""
    import torch
    from gpu import new_model, sync, time_training

    cfg = trainer.cfg
    ds = trainer.dataset
    n_train = len(ds.train_labels)
    if cfg.data.train_samples:
        n_train = min(n_train, cfg.data.train_samples)
    n_test = cfg.data.test_samples or len(ds.test_labels)
    steps, warmup = (2, 1) if smoke else (8, 3)
    steps = max(1, min(steps, n_train // cfg.train.batch_size - warmup - 1))
    t0 = time.perf_counter()
    r = time_training(trainer, steps=steps, warmup=warmup, n_epochs=max_epochs)
    stack, _, ev = new_model(trainer)
    m = min(n_test, 256 if smoke else 2048)
    with torch.no_grad():
        ev.evaluate(stack.transmissions("hard"), max_samples=min(m, 256))  # warm-up
        sync(trainer.device)
        t1 = time.perf_counter()
        ev.evaluate(stack.transmissions("hard"), max_samples=m)
        sync(trainer.device)
    eval_s = (time.perf_counter() - t1) * n_test / m
    del stack, ev
    # an epoch: the training pass + the trainer's two test evaluations (training path, hard)
    epoch_s = n_train / r["epoch_samples_per_s"] + 2 * eval_s
    probe_s = time.perf_counter() - t0
    left = budget_s - elapsed_s - probe_s - FINAL_OVERHEAD_S - 2 * eval_s
    fit = math.floor(safety * left / epoch_s) if left > 0 else 0
    epochs = max(1, min(max_epochs, fit))
    return {"epochs": epochs, "fit": fit, "epoch_s_estimate": round(epoch_s, 2),
            "probe_samples_per_s": round(r["epoch_samples_per_s"], 1),
            "probe_step_samples_per_s": round(r["samples_per_s"], 1),
            "eval_s_estimate": round(eval_s, 2), "probe_s": round(probe_s, 1)}


def wait_for_peers(directory: Path, count: int, levels: int, timeout_s: float = 90.0) -> None:
    """Wait until ``count`` runs have reached this point (or ``timeout_s``), so that runs
    sharing a device time their probes under the same load as their training."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"ready-L{levels}").touch()
    t0 = time.perf_counter()
    while len(list(directory.glob("ready-L*"))) < count:
        if time.perf_counter() - t0 > timeout_s:
            print(f"L={levels}: {count} runs did not all get ready within {timeout_s:.0f} s; "
                  "probing anyway", flush=True)
            return
        time.sleep(0.2)


def train_one(args: argparse.Namespace, levels: int) -> dict[str, Any]:
    import torch
    from gpu import device_name, make_trainer, resolve

    from optodesign.fileio import atomic_write_json

    t_start = time.perf_counter()
    device = resolve(args.device)
    raw = run_config(args, levels)
    out = args.work / f"L{levels}"
    record: dict[str, Any] = {
        "levels": levels, "status": "running", "device": str(device),
        "device_name": device_name(device), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "config": args.config.name,
        "overrides": {s: raw[s] for s in ("quantization", "data", "train")},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run_dir": str(out),
        "budget_s": args.budget, "smoke": args.smoke,
    }
    args.work.mkdir(parents=True, exist_ok=True)
    json_path = args.work / f"L{levels}.json"
    trainer = make_trainer(raw, device, out)
    cfg = trainer.cfg
    n_train = cfg.data.train_samples or len(trainer.dataset.train_labels)
    n_train = min(n_train, len(trainer.dataset.train_labels))
    max_epochs = args.epochs or cfg.train.epochs
    if args.sync_dir:
        wait_for_peers(args.sync_dir, args.sync_count, levels)
    if args.budget and not args.epochs:
        plan = plan_epochs(trainer, budget_s=args.budget,
                           elapsed_s=time.perf_counter() - t_start, max_epochs=max_epochs,
                           safety=args.safety, smoke=args.smoke)
        record["plan"] = plan
        epochs = plan["epochs"]
        print(f"L={levels}: probe {plan['probe_samples_per_s']} samples/s, epoch ~"
              f"{plan['epoch_s_estimate']} s -> {epochs} epochs (config {max_epochs})",
              flush=True)
    else:
        epochs = max_epochs
    trainer.cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    record.update(epochs_planned=epochs, train_samples=n_train,
                  batch_size=cfg.train.batch_size)
    atomic_write_json(json_path, record)

    clock = EpochClock()
    log = logging.getLogger("optodesign.train.trainer")
    log.addHandler(clock)
    log.setLevel(logging.INFO)
    t_train = time.time()
    try:
        result = trainer.run()
    finally:
        log.removeHandler(clock)
    metrics = result.design.metrics
    stamps = [t_train, *clock.times]
    epoch_s = [b - a for a, b in zip(stamps, stamps[1:])]
    record.update(
        status="done", accuracy=metrics["accuracy"],
        accuracy_latent=metrics.get("accuracy_latent"),
        epochs=len(result.history), wall_s=round(time.perf_counter() - t_start, 1),
        train_s=round(sum(epoch_s), 1), epoch_s=[round(s, 2) for s in epoch_s],
        samples_per_s=round(n_train * len(epoch_s) / sum(epoch_s), 1) if epoch_s else None,
        history=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
                 for row in result.history],
        peak_memory_gib=(round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                         if device.type == "cuda" else None),
    )
    atomic_write_json(json_path, record)
    print(f"L={levels}: accuracy {100 * metrics['accuracy']:.2f} % after {record['epochs']} "
          f"epochs, {record['wall_s']} s", flush=True)
    return record


def _from_metrics_csv(rec: dict[str, Any]) -> dict[str, Any]:
    """A run that did not finish: its last completed epoch, from metrics.csv."""
    path = Path(rec.get("run_dir", "")) / "metrics.csv"
    if not path.is_file():
        return {**rec, "status": "no epoch finished"}
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {**rec, "status": "no epoch finished"}
    last = rows[-1]
    return {**rec, "accuracy": float(last["test_accuracy_hard"]), "epochs": int(last["epoch"]),
            "status": f"stopped after epoch {last['epoch']}/{rec.get('epochs_planned')} "
                      "(schedule unfinished)"}


def merge(args: argparse.Namespace) -> str:
    import _machine

    _machine.RESULTS = args.results
    recs = []
    for path in sorted(args.work.glob("L*.json"), key=lambda p: int(p.stem[1:])
                       if p.stem[1:].isdigit() else 0):
        rec = json.loads(path.read_text(encoding="utf-8"))
        if rec.get("status") != "done":
            rec = _from_metrics_csv(rec)
        recs.append(rec)
    if not recs:
        raise SystemExit(f"--merge: no L*.json runs in {args.work}")
    rows = []
    for r in recs:
        acc = r.get("accuracy")
        fp = r.get("accuracy_latent")
        rows.append([r["levels"], None if acc is None else round(100 * acc, 2),
                     None if fp is None else round(100 * fp, 2),
                     r.get("epochs"), r.get("epochs_planned"), r.get("batch_size"),
                     r.get("wall_s"), r.get("samples_per_s"),
                     r.get("plan", {}).get("probe_samples_per_s"), r.get("device_name"),
                     r.get("status")])
    header = ["levels", "test acc %", "latent acc %", "epochs", "planned", "batch", "wall s",
              "samples/s", "probe samples/s", "device", "status"]
    first = recs[0]
    overrides = json.loads(json.dumps(first.get("overrides") or {}))
    overrides.get("quantization", {}).pop("levels", None)  # per row
    meta = {"config": first.get("config"), "overrides": overrides,
            "budget_s": first.get("budget_s"), "torch_cuda": first.get("torch_cuda"),
            "smoke": first.get("smoke"),
            "concurrent": "runs listed together may have shared one device"}
    notes = [
        "test acc = hard-quantized levels (the Design that export writes) on the test set; "
        "FP acc = the raw phases unquantized (for reference; PSQ's raw phases are not what "
        "is fabricated).",
        "samples/s = training images x epochs / time of the epochs (the trainer's per-epoch "
        "test evaluations included); probe = training steps alone, before the run.",
        "epochs = what fitted the wall-clock budget (the PSQ-LI schedule spans exactly "
        "them); 'stopped after' = killed before the end, accuracy of its last epoch.",
    ]
    return _machine.save_table("accuracy_full", rows, header, meta, notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", type=int, nargs="+", default=None,
                    help="phase level counts to train, one after the other (default 2 4 16)")
    ap.add_argument("--merge", action="store_true",
                    help="only build the table from the runs in --work")
    ap.add_argument("--config", type=Path, default=REPO / "examples" / "d2nn_mnist4_full.toml")
    ap.add_argument("--data", type=Path, default=None,
                    help="directory of the four MNIST IDX .gz files (default: the config's)")
    ap.add_argument("--dataset", default=None, help="override data.dataset (e.g. digits)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="wall-clock seconds per run (0: the config's epochs)")
    ap.add_argument("--safety", type=float, default=0.85,
                    help="fraction of the estimated time left that epochs may fill")
    ap.add_argument("--epochs", type=int, default=None, help="fixed epochs (no probe)")
    ap.add_argument("--train-samples", type=int, default=None)
    ap.add_argument("--test-samples", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--sync-dir", type=Path, default=None,
                    help="concurrent runs: wait here until --sync-count runs are ready to probe")
    ap.add_argument("--sync-count", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "accuracy_full",
                    help="run directories and per-run JSON")
    ap.add_argument("--results", type=Path, default=HERE / "results",
                    help="directory for accuracy_full.txt / .json")
    ap.add_argument("--smoke", action="store_true", help="tiny network and data (CPU test)")
    args = ap.parse_args(argv)
    if args.merge:
        merge(args)
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from optodesign.commands._common import check_output_dir, user_errors

    @user_errors
    def run_all() -> None:
        check_output_dir(args.work, "--work")
        check_output_dir(args.results, "--results")
        for levels in args.levels or [2, 4, 16]:
            train_one(args, levels)

    run_all()  # bad input: one line, exit 2
    if args.levels is None or len(args.levels) > 1:
        merge(args)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()

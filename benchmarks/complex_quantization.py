"""Joint complex quantization vs independent Re/Im and amplitude/phase, and adaptive precision.

Same model, data, seed, optimiser, schedule and bit count for every row; only the quantizer
changes.

(a) A complex-modulation hologram (one layer, 532 nm, 4 um pitch, 128 x 128 px, 1 mm to the
    image plane, built-in "OPTO" text target): 300 Adam steps, the first 2 of 6 epochs at
    full precision (the weight clipped to |t| <= 1), then quantization-aware. PSNR (dB) and
    diffraction efficiency, median over seeds. Tables with 2**bits codewords: the joint
    quantizer on a phase ring, a polar grid, a learned codebook and on the Re/Im baseline's
    own lattice (a control: same table, only the assignment/training differs).
(b) A 3-layer complex D2NN on MNIST (``../shared/data/mnist``; skipped with a message when
    absent): 48 x 48 px, 0.75 mm wavelength, 0.4 mm pitch, 2 cm spacing, 3000 training
    images, 3 epochs (1 full precision + 2 QAT), accuracy on 1000 test images. Then adaptive
    precision: a full-precision model (3 epochs), per-layer sensitivities on 1000 held-out
    *training* images, the fewest total bits whose predicted accuracy drop is within 0.5 % of
    uniform 3 bits' (and of uniform 2 bits'), and 2 epochs of quantization-aware fine-tuning
    for the adaptive and the uniform allocations alike (and a uniform 1-bit control).

Every run uses :func:`optodesign.train.adaptive.train_mixed_precision`, which runs the
trainer's own epoch loop and evaluator and reproduces ``Trainer.run`` bit for bit (checked
here once, and in ``tests/test_complex_training.py``) without writing plots and checkpoints.
Torch runs on one thread: on a shared 2-core machine two threads were up to 7x slower.

Run: ``python benchmarks/complex_quantization.py [--seeds 3] [--quick] [--no-mnist]``
(about 6-8 minutes on 2 shared cores; ``--quick`` prints a smaller run and saves nothing).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import format_table, save_table  # noqa: E402

from optodesign.quantize.base import Quantizer  # noqa: E402
from optodesign.quantize.codebooks import polar_codebook  # noqa: E402
from optodesign.quantize.complex import (  # noqa: E402
    IndependentAmpPhaseQuantizer,
    IndependentReImQuantizer,
    JointComplexQuantizer,
)
from optodesign.quantize.registry import build_quantizer  # noqa: E402
from optodesign.tasks import get_task  # noqa: E402
from optodesign.train.adaptive import (  # noqa: E402
    BitAllocation,
    BitFamily,
    adaptive_precision,
    full_precision_transmissions,
    joint_codebook,
    layer_sensitivity,
    task_metric,
    train_mixed_precision,
)
from optodesign.train.config import parse_config  # noqa: E402
from optodesign.train.trainer import Trainer, build_quantizers  # noqa: E402

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
E = 1 / math.sqrt(2)  # Re/Im grid half-width that keeps every lattice codeword passive
FINE_TUNE_EPOCHS = 2  # QAT after the full-precision model (joint schedule: T_rel 2 -> 200)
ADAPTIVE_REFERENCES = (3, 2)  # adaptive allocations are matched to uniform 3 and 2 bits

HEADER = ["task", "method", "table", "bits/layer", "total bits", "metric", "median", "min",
          "max", "efficiency", "s/run"]


def hologram_config(seed: int, steps: int, size: int) -> dict[str, Any]:
    return {"task": "hologram", "seed": seed,
            "optics": {"wavelength": "532 nm", "pitch": "4 um", "size": size,
                       "distance": "1 mm"},
            "quantization": {"method": "joint", "codebook": "phase:8"},
            "target": {"text": "OPTO"},
            "train": {"epochs": 6, "steps_per_epoch": max(1, steps // 6), "lr": 0.05,
                      "qat_start": 2}}


def d2nn_config(seed: int, n_train: int, n_test: int, epochs: int) -> dict[str, Any]:
    return {"task": "d2nn", "seed": seed,
            "optics": {"wavelength": "0.75 mm", "pitch": "0.4 mm", "size": 48, "layers": 3,
                       "distance": "2 cm"},
            "quantization": {"method": "joint", "codebook": "phase:8"},
            "data": {"dataset": "mnist", "path": str(MNIST), "image_size": 28,
                     "train_samples": n_train, "test_samples": n_test},
            "detectors": {"size": 4},
            "train": {"epochs": epochs, "batch_size": 32, "lr": 0.05, "qat_start": 1}}


# Each entry: (method label, table label, bits, quantizer factory for one layer).
def hologram_rows() -> list[tuple[str, str, int, Callable[[], Quantizer]]]:
    return [
        ("joint", "phase ring 8", 3, lambda: JointComplexQuantizer(joint_codebook(3))),
        ("joint", "polar 2x4", 3, lambda: JointComplexQuantizer(polar_codebook(2, 4))),
        ("joint-learned", "learned (init ring 8)", 3,
         lambda: build_quantizer("joint-learned", codebook=joint_codebook(3))),
        ("joint", "Re/Im lattice 4x2", 3,
         lambda: JointComplexQuantizer(IndependentReImQuantizer(3, extent=E).table())),
        ("reim", "Re/Im lattice 4x2", 3, lambda: IndependentReImQuantizer(3, extent=E)),
        ("ampphase", "polar 2x4", 3, lambda: IndependentAmpPhaseQuantizer(1, 2)),
        ("ampphase", "phase ring 8", 3, lambda: IndependentAmpPhaseQuantizer(0, 3)),
        ("joint", "polar 2x8", 4, lambda: JointComplexQuantizer(joint_codebook(4))),
        ("reim", "Re/Im lattice 4x4", 4, lambda: IndependentReImQuantizer(4, extent=E)),
        ("ampphase", "polar 2x8", 4, lambda: IndependentAmpPhaseQuantizer(1, 3)),
    ]


def d2nn_rows() -> list[tuple[str, str, int, Callable[[], Quantizer]]]:
    keep = {("joint", "phase ring 8"), ("joint", "polar 2x4"), ("joint", "Re/Im lattice 4x2"),
            ("reim", "Re/Im lattice 4x2"), ("ampphase", "polar 2x4")}
    return [r for r in hologram_rows() if r[2] == 3 and r[:2] in keep]


def _quiet_trainer(raw: dict[str, Any], out: Path) -> Trainer:
    return Trainer(parse_config(raw), out, progress=False)


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def run_hologram(seeds: int, steps: int, size: int, tmp: Path,
                 rows_out: list[list[Any]], notes: list[str]) -> dict[str, float]:
    key = get_task("hologram").primary_metric
    medians: dict[str, float] = {}
    trainers = {s: _quiet_trainer(hologram_config(s, steps, size), tmp / f"h{s}")
                for s in range(seeds)}
    # full precision (joint with warm-up over every epoch: forward = clipped complex weight)
    fp, ptq, eff_fp, t_fp = [], [], [], []
    for tr in trainers.values():
        t0 = time.perf_counter()
        q = JointComplexQuantizer(joint_codebook(3), warmup_epochs=tr.cfg.train.epochs)
        res = train_mixed_precision(tr, [q])
        t_fp.append(time.perf_counter() - t0)
        m = tr_eval(res, full=True)
        fp.append(m[key])
        eff_fp.append(m["efficiency"])
        ptq.append(res.design.metrics[key])
    rows_out.append(["hologram", "full precision", "complex, |t|<=1", "-", "-", "PSNR dB",
                     *_stats(fp), statistics.median(eff_fp), statistics.median(t_fp)])
    rows_out.append(["hologram", "joint PTQ", "phase ring 8", 3, 3, "PSNR dB", *_stats(ptq),
                     None, None])
    for method, table, bits, make in hologram_rows():
        vals, effs, times = [], [], []
        for tr in trainers.values():
            t0 = time.perf_counter()
            res = train_mixed_precision(tr, [make()])
            times.append(time.perf_counter() - t0)
            vals.append(res.design.metrics[key])
            effs.append(res.design.metrics["efficiency"])
        med = _stats(vals)
        medians[f"{method}|{table}|{bits}"] = med[0]
        rows_out.append(["hologram", method, table, bits, bits, "PSNR dB", *med,
                         statistics.median(effs), statistics.median(times)])
        print(f"  hologram {method:13s} {table:22s} {bits} bits: PSNR {med[0]:.2f} dB",
              flush=True)
    # the benchmark's loop is the trainer's: check once against Trainer.run
    tr = _quiet_trainer(hologram_config(0, steps, size), tmp / "check")
    ref = tr.run().design.metrics[key]
    mine = train_mixed_precision(tr, build_quantizers(tr.cfg, None)).design.metrics[key]
    notes.append(f"check: Trainer.run and the benchmark loop give the same PSNR for joint/ring 8, "
                 f"seed 0: {ref:.6f} vs {mine:.6f} dB ({'identical' if ref == mine else 'DIFFER'})")
    return medians


def tr_eval(res: Any, *, full: bool) -> dict[str, float]:
    """Metrics of a result's raw weights at full precision (``full``) or hard."""
    from optodesign.evaluate import Evaluator

    ev = Evaluator.from_design(res.design)
    ts = full_precision_transmissions(list(res.stack.raw)) if full else \
        res.stack.transmissions("hard")
    return ev.evaluate(ts)


def run_d2nn(n_train: int, n_val: int, n_test: int, epochs: int, tmp: Path,
             rows_out: list[list[Any]], notes: list[str]) -> None:
    raw = d2nn_config(0, n_train, n_test, epochs)
    tr = _quiet_trainer(raw, tmp / "d2nn")
    key = get_task("d2nn").primary_metric
    n_layers = tr.cfg.optics.layers
    for method, table, bits, make in d2nn_rows():
        t0 = time.perf_counter()
        res = train_mixed_precision(tr, [make() for _ in range(n_layers)])
        dt = time.perf_counter() - t0
        acc = res.design.metrics[key]
        rows_out.append(["d2nn", method, table, bits, bits * n_layers, "accuracy", acc, acc, acc,
                         None, dt])
        print(f"  d2nn {method:9s} {table:20s} {bits} bits: accuracy {acc:.4f} ({dt:.0f} s)",
              flush=True)

    # adaptive precision: full-precision model -> sensitivities -> allocation -> fine-tune
    t0 = time.perf_counter()
    fp = train_mixed_precision(tr, [JointComplexQuantizer(joint_codebook(3), warmup_epochs=epochs)
                                    for _ in range(n_layers)])
    t_fp = time.perf_counter() - t0
    raw_fp = [p.detach().clone() for p in fp.stack.raw]
    from optodesign.evaluate import Evaluator

    ev = Evaluator.from_design(fp.design, dataset=tr.dataset)
    acc_fp = ev.evaluate(full_precision_transmissions(raw_fp))[key]
    rows_out.append(["d2nn", "full precision", "complex, |t|<=1", "-", "-", "accuracy", acc_fp,
                     acc_fp, acc_fp, None, t_fp])
    images = tr.dataset.train_images[n_train:n_train + n_val]
    labels = tr.dataset.train_labels[n_train:n_train + n_val]
    if len(labels) < n_val:
        raise SystemExit(f"d2nn: need {n_train + n_val} training images for a validation split")
    fam = BitFamily("joint")
    t0 = time.perf_counter()
    sens = layer_sensitivity(raw_fp, task_metric(ev, images=images, labels=labels), fam,
                             bit_choices=(1, 2, 3, 4))
    t_sens = time.perf_counter() - t0
    drops = sens.table()
    notes.append(f"d2nn sensitivity (validation accuracy drop, layer x bits {sens.bit_choices}; "
                 f"reference {sens.reference:.4f}; {t_sens:.0f} s): "
                 + "; ".join(f"L{i + 1} " + " ".join(f"{d:+.4f}" for d in row)
                             for i, row in enumerate(drops)))
    tol = 0.005
    mono = sens.monotone()
    runs: list[tuple[str, tuple[int, ...]]] = []
    allocs: dict[int, BitAllocation] = {}
    for ref_bits in ADAPTIVE_REFERENCES:
        uniform = (ref_bits,) * n_layers
        uniform_drop = sum(mono.drop(i, b) for i, b in enumerate(uniform))
        alloc = adaptive_precision(sens, max_drop=max(uniform_drop, 0.0) + tol)
        allocs[ref_bits] = alloc
        notes.append(f"adaptive rule vs uniform {ref_bits} bits (monotone envelope of the "
                     f"drops): fewest total bits with predicted drop <= max({uniform_drop:+.4f}"
                     f", 0) + {tol}: bits {alloc.bits} ({alloc.used_bits} bits, predicted "
                     f"{alloc.predicted_drop:+.4f})")
        runs += [("uniform", uniform), ("adaptive", alloc.bits)]
    runs.append(("uniform", (1,) * n_layers))
    # the accuracy-vs-bits curve between the uniform points: adaptive at every other budget
    for budget in range(n_layers + 1, 3 * n_layers):
        if budget % n_layers:
            runs.append((f"adaptive @{budget}",
                         adaptive_precision(sens, total_bits=budget).bits))
    results: dict[tuple[int, ...], float] = {}
    for label, bits in runs:
        if bits in results:  # the same widths as a row above (e.g. adaptive = uniform)
            continue
        for ft in (0, FINE_TUNE_EPOCHS):
            t0 = time.perf_counter()
            res = train_mixed_precision(tr, fam.quantizers(bits), init_raw=raw_fp, epochs=ft,
                                        qat_start=0)
            dt = time.perf_counter() - t0
            acc = res.design.metrics[key]
            if ft:
                results[bits] = acc
            name = f"{label} joint, {'PTQ' if ft == 0 else f'fp + {ft} ep QAT'}"
            rows_out.append(["d2nn", name, "ring/polar per width",
                             "/".join(map(str, bits)), sum(bits), "accuracy", acc, acc, acc,
                             None, dt])
            print(f"  d2nn {name:28s} bits {bits}: accuracy {acc:.4f}", flush=True)
    for ref_bits, alloc in allocs.items():
        uniform = (ref_bits,) * n_layers
        a, u = results[alloc.bits], results[uniform]
        se = math.sqrt(max(u * (1 - u), 1e-12) / n_test)
        notes.append(f"adaptive vs uniform {ref_bits} bits after fine-tuning: {a:.4f} with "
                     f"{alloc.used_bits} bits vs {u:.4f} with {sum(uniform)} bits (difference "
                     f"{a - u:+.4f}; one binomial s.e. on {n_test} test images ~{se:.4f})")
    curve = sorted(results.items(), key=lambda kv: (sum(kv[0]), kv[0]))
    notes.append("d2nn accuracy vs total bits after fine-tuning: " + ", ".join(
        f"{sum(b)} bits {'/'.join(map(str, b))}: {a:.3f}" for b, a in curve))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="hologram seeds (median reported)")
    p.add_argument("--quick", action="store_true", help="smaller, for a smoke test")
    p.add_argument("--no-mnist", action="store_true", help="skip the D2NN part")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message=".*band limit.*")
    size, steps = (64, 60) if args.quick else (128, 300)
    n_train, n_val, n_test, epochs = (500, 300, 300, 3) if args.quick else (3000, 1000, 1000, 3)
    rows: list[list[Any]] = []
    notes: list[str] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("(a) complex-modulation hologram", flush=True)
        med = run_hologram(args.seeds, steps, size, tmp, rows, notes)
        gain = med["joint|phase ring 8|3"] - med["reim|Re/Im lattice 4x2|3"]
        gain_same = med["joint|polar 2x4|3"] - med["ampphase|polar 2x4|3"]
        notes.insert(0, f"hologram, 3 bits: joint (ring 8) - independent Re/Im = {gain:+.2f} dB "
                        f"(target >= +2 dB: {'met' if gain >= 2 else 'MISSED'}); joint - "
                        f"independent amp/phase on the same polar 2x4 table = {gain_same:+.2f} dB")
        if args.no_mnist:
            notes.append("d2nn: skipped (--no-mnist)")
        elif not (MNIST / "train-images-idx3-ubyte.gz").is_file():
            notes.append(f"d2nn: skipped, MNIST not found at {MNIST}")
            print(notes[-1])
        else:
            print("(b) D2NN on MNIST", flush=True)
            run_d2nn(n_train, n_val, n_test, epochs, tmp, rows, notes)
    total = time.perf_counter() - t_start
    meta = {"hologram": f"{size}x{size} px, 532 nm, 4 um pitch, 1 mm, text 'OPTO', {steps} "
                        f"Adam steps (lr 0.05), {args.seeds} seeds",
            "d2nn": f"MNIST, 3 layers 48x48 px, 0.75 mm, 0.4 mm pitch, 2 cm, {n_train} train / "
                    f"{n_val} validation (sensitivity) / {n_test} test images, {epochs} epochs, "
                    "batch 32, lr 0.05, seed 0",
            "torch_threads_used": 1, "total_seconds": round(total, 1), "quick": args.quick}
    if args.quick:  # a smoke test: print, keep the saved results
        print(format_table(rows, HEADER), *notes, sep="\n")
    else:
        save_table("complex_quantization", rows, HEADER, meta, notes=notes)


if __name__ == "__main__":
    main()

"""Benchmark: plain training against constrained + error-aware training (issue #13 targets).

For the quickstart D2NN (digits, ``thz-printed``), the hologram and the lens examples
(``fused-silica-etch4``), at a reduced size, it trains two designs:

* ``plain``: the example without ``[fabrication]`` (trained on the process's level table);
* ``robust``: ``[fabrication] process`` (design rules: filter / legalizer / rule penalty as in
  the examples; the D2NN a 2 px filter) plus ``errors`` (the realistic magnitudes below with
  the bias drawn per sample, error-aware training on the p5 statistic (the D2NN: on the mean,
  at full strength after ¼ of the epochs, its last epoch kept, its loss at temperature 20),
  sampling verify's own error models: :mod:`optodesign.train.robust`);

and, for the hologram and the lens (``--refine S``, default 4), refines both the same way
(rows ``+refine``): ``optodesign refine`` on point samples (80 000 evaluations), then on
verify's drawing at S samples per pixel (``--oversample S``, 40 000), the robust design under
its process's rules, the plain one without (the "train s" column then includes the
refinement);

exports each (GDS) and verifies it with ``optodesign.verify.montecarlo.verify_fab``
(``--model converged``: the convergence ladder once per design, every error then under the
chosen model; ``--model training``: the training model), reporting the nominal metric, the
DRC violations (errors + warnings), the metric under each single error (mean of ``--single``
samples) and under all of them combined (mean and 5th percentile of ``--samples`` samples, at
least 100 for the table), once with the bias at +¼ px in every sample ("all") and once with
it drawn per sample, σ ⅛ px of either sign ("all'", what robust training samples).

Realistic magnitudes (issue #13): line-width bias ±¼ px (both signs are rows), misalignment
½ px per layer, rotation 0.2°, height σ 2 % of a 2π step. The misalignment and the rotation
are drawn with σ = magnitude (default) or, with ``--sigmas 3``, read as 3σ tolerances
(σ = magnitude / 3), in training and in verify alike.

Run: ``python benchmarks/robust.py [--model converged|training]`` (``training``: about 20
minutes on 2 quiet cores; ``converged``: the D2NN's ladder chooses the Rayleigh–Sommerfeld
convolution at pad 2, 2×2 samples per pixel, and its 449 digits × 140 samples take about 10
minutes on 2 cores beside the 7 of training); ``--quick`` for a smoke run; ``--seeds 1,2,3``
(one row per training seed: the run-to-run spread), ``--rows robust`` (only those) and
``--variant NAME:KEY=VALUE[,KEY=VALUE]`` (repeatable: rows trained with dotted config keys
changed, e.g. ``--variant layers5:optics.layers=5``; one row per variant instead of the
example's). Results:
``benchmarks/results/robust.{txt,json}`` (``--model training``, all three cases, the D2NN
trained by the angular spectrum), ``robust_converged.{txt,json}`` (``--cases hologram,lens
--results robust_converged``) and ``robust_d2nn_converged.{txt,json}`` (``--cases d2nn
--results robust_d2nn_converged``: the D2NN trained by the Rayleigh–Sommerfeld convolution,
its default since, every error under verify's converged model); ``robust_d2nn_cosine*``
(the D2NN rows, four seeds) and ``robust_d2nn_3sigma*`` (``--cases d2nn --sigmas 3``,
seeds 0,1 and 2,3), all with the robust D2NN's epoch kept under the errors;
``robust_d2nn_3sigma_strips_s01``, ``_s23`` (the robust rows as they are now: the bias's
gradient, the last epoch; run as ``--rows robust --variant 'last:train.keep="last"'``,
before the last epoch became the default) and ``robust_converged_strips`` (``--cases
hologram,lens --rows robust --refine 0``, the bias's gradient);
``robust_d2nn_3sigma_strips_strength2`` (seeds 1,2 trained at 2× the magnitudes);
``robust_d2nn_3sigma_t20`` (``--cases d2nn --sigmas 3 --rows robust --seeds 0,1,2,3``: the
robust D2NN as it is now, trained at loss temperature 20), ``robust_d2nn_3sigma_plain_t20``
(the plain rows at temperature 20, ``--variant t20:train.temperature=20``) and
``robust_d2nn_3sigma_t20_strength2`` (seeds 2,3 at 2× the magnitudes);
``robust_d2nn_sigma_t20`` (``--cases d2nn --rows robust --seeds 0,1``: the σ reading);
``robust_hologram_strips_refine`` (``--cases hologram --rows robust``: refined with the
bias's gradient); ``robust_d2nn_3sigma_t20_p5`` (seeds 0,1,2 trained on the worst of each
step's five designs at 1× the magnitudes: ``--variant``
``'p5s1:fabrication.error_statistic="p5",fabrication.error_strength=1.0'``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import save_table  # noqa: E402

from optodesign.export.drc import check_levels  # noqa: E402
from optodesign.export.fab import export_design  # noqa: E402
from optodesign.fileio import read_toml  # noqa: E402
from optodesign.process import load_process  # noqa: E402
from optodesign.train.config import parse_config  # noqa: E402
from optodesign.train.trainer import Trainer  # noqa: E402
from optodesign.variation.spec import parse_errors  # noqa: E402
from optodesign.verify.montecarlo import verify_fab  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def magnitudes(process, pitch: float, sigmas: float = 1.0) -> dict[str, dict[str, float]]:
    """The single errors of the table, SI units (rotation in degrees). The misalignment and
    the rotation are drawn with σ = their magnitude / ``sigmas`` (1: the magnitude is σ; 3:
    it is a 3σ tolerance)."""
    h2pi = process.wavelength / (process.material.n - process.material.n0)
    return {
        "bias +1/4 px": {"linewidth_bias": pitch / 4},
        "bias -1/4 px": {"linewidth_bias": -pitch / 4},
        "misalign 1/2 px": {"misalignment": pitch / 2 / sigmas},
        "rotation 0.2 deg": {"rotation": 0.2 / sigmas},
        "height 2 %": {"height_sigma": 0.02 * h2pi},
    }


def combined(process, pitch: float, *, bias: str = "random",
             sigmas: float = 1.0) -> dict[str, float]:
    """Every error of :func:`magnitudes` at once. The line-width bias is ``+¼`` px in every
    sample (``bias="fixed"``, the table's first "all" columns) or drawn per sample with
    σ = ⅛ px, of either sign (``"random"``: ±¼ px at 2σ; the second columns, and what robust
    training samples: a fab's bias is known only to within a tolerance)."""
    m: dict[str, float] = {}
    for name, v in magnitudes(process, pitch, sigmas).items():
        if not name.startswith("bias"):
            m.update(v)
    if bias == "fixed":
        m["linewidth_bias"] = pitch / 4
    else:
        m["linewidth_bias_sigma"] = pitch / 8
    return m


def errors_file(values: dict[str, float], path: Path) -> Path:
    lines = ["[errors]"]
    for k, v in values.items():
        lines.append(f"{k} = {v!r}" if k == "rotation" else f'{k} = "{v:.6g} m"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def case_configs(name: str, size: int, quick: bool) -> tuple[dict, dict, str]:
    """(plain raw config, robust raw config without errors, process name)."""
    if name == "d2nn":
        raw = read_toml(ROOT / "examples" / "d2nn_digits.toml", what="example")
        raw["optics"]["size"] = min(raw["optics"]["size"], size)
        raw["train"]["epochs"] = 2 if quick else 16
        # both rows on a decaying rate: the last epochs settle instead of jumping by points
        raw["train"]["lr_schedule"] = "cosine"
        process = raw["quantization"]["process"]
        robust = copy.deepcopy(raw)
        # a 2 px filter: features wider than the ±¼ px bias and the ½ px misalignment
        robust["fabrication"] = {"process": process, "constraint": "filter",
                                 "options": {"radius": 2.0}}
        # the last epoch: on the cosine rate it has settled, and choosing among the last
        # epochs by 8 realisations of 134 validation digits is noisier than what it chooses
        # between (seed 1: kept epoch 15, 93.99 % nominal; the last, 95.55 %)
        robust["train"]["keep"] = "last"
        # a sharper softmax (temperature 20, the example's 10): the loss saturates sooner on
        # digits read with a margin (four seeds, 3σ reading: all' p5 91.8 % -> 93.0 %,
        # nominal 94.99 % -> 96.05 %; the plain design gains as much at 20, 97.4 % on two
        # seeds, so the gap to its own nominal stays 3.1 points)
        robust["train"]["temperature"] = 20
        return raw, robust, process
    raw = read_toml(ROOT / "examples" / f"{name}.toml", what="example")
    fab = raw.pop("fabrication")
    process = fab["process"]
    plain = copy.deepcopy(raw)
    plain["quantization"]["process"] = process
    for r in (plain, raw):
        r["optics"]["size"] = size
        r["train"]["epochs"] = 2 if quick else min(r["train"]["epochs"], 6)
        r["train"]["steps_per_epoch"] = 10 if quick else 40
    raw["fabrication"] = fab
    return plain, raw, process


def evaluate(run: Path, process, pitch: float, *, samples: int, single: int,
             tmp: Path, model: str, sigmas: float = 1.0) -> tuple[list[float], str]:
    """[nominal, DRC count, single errors..., combined mean, combined p5], under verify's
    converged model (the ladder climbed once per design, then reused) or the training
    model, and that model's label."""
    from optodesign.design import Design

    design = Design.load(run)
    drc = check_levels(design.levels, design.level_tables, process=process, pitch=design.pitch)
    n_drc = sum(v.count for layer in drc.layers for v in layer.violations)
    fab = tmp / (run.name + "_fab")
    export_design(design, process, fab, formats=("gds",), design_dir=run, plot=False)
    out: list[float] = []
    fixed = combined(process, pitch, bias="fixed", sigmas=sigmas)
    cfg = parse_errors({"errors": values_units(fixed)})
    res = verify_fab(fab, errors=cfg, samples=samples, sweep=False, fast=model == "training")
    v, nominal, sim = res.combined.values, res.nominal_value, res.model
    for values in magnitudes(process, pitch, sigmas).values():
        cfg = parse_errors({"errors": values_units(values)})
        single_res = verify_fab(fab, errors=cfg, samples=single, sweep=False, model=sim)
        out.append(float(single_res.combined.values.mean()))
    cfg = parse_errors({"errors": values_units(combined(process, pitch, sigmas=sigmas))})
    w = verify_fab(fab, errors=cfg, samples=samples, sweep=False, model=sim).combined.values
    return [float(nominal), float(n_drc), *out, float(v.mean()), float(np.percentile(v, 5)),
            float(w.mean()), float(np.percentile(w, 5))], sim.label()


def refine_twice(run: Path, tmp: Path, rules: str, oversample: int, quick: bool) -> Path:
    """``optodesign refine`` on point samples (80 000 evaluations), then on verify's drawing
    at ``oversample`` samples per pixel (40 000), both under the process's rules (``rules``:
    its name) or none (``"none"``); the refined run directory."""
    points, drawn = (800, 400) if quick else (80_000, 40_000)
    src = run
    for tag, extra in (("points", []), ("drawn", ["--oversample", str(oversample)])):
        out = tmp / f"{run.name}_{tag}"
        cmd = [sys.executable, "-m", "optodesign", "refine", str(src), "--process", rules,
               "--budget", str(points if tag == "points" else drawn), "--out", str(out),
               "--quiet", *extra]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        src = out
    return src


def variants(specs: list[str]) -> list[tuple[str, dict[str, object]]]:
    """``--variant NAME:KEY=VALUE[,KEY=VALUE]`` -> [(name, {dotted key: TOML value})]; none:
    the example itself (name "")."""
    import tomllib

    out: list[tuple[str, dict[str, object]]] = []
    for spec in specs:
        name, _, body = spec.partition(":")
        sets = {}
        for item in filter(None, body.split(",")):
            key, _, value = item.partition("=")
            sets[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        out.append((name, sets))
    return out or [("", {})]


def with_sets(raw: dict, sets: dict[str, object]) -> dict:
    """A copy of the raw config with the dotted keys of ``sets`` changed."""
    raw = copy.deepcopy(raw)
    for key, value in sets.items():
        *path, last = key.split(".")
        node = raw
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return raw


def values_units(values: dict[str, float]) -> dict[str, object]:
    return {k: (v if k == "rotation" else f"{v:.6g} m") for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="pixels per side (hologram, lens)")
    ap.add_argument("--samples", type=int, default=100, help="combined-error samples")
    ap.add_argument("--single", type=int, default=8, help="samples per single error")
    ap.add_argument("--cases", default="d2nn,hologram,lens")
    ap.add_argument("--error-samples", type=int, default=4,
                    help="error realisations per training step (robust)")
    ap.add_argument("--seeds", default="0",
                    help="training seeds, comma-separated (one row per seed: the spread)")
    ap.add_argument("--rows", default="plain,robust", help="which trainings")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="train rows with dotted config keys changed (repeatable)")
    ap.add_argument("--refine", type=int, default=4, metavar="S",
                    help="hologram, lens: also refine both designs (rows '+refine'), the "
                         "second pass on verify's drawing at S samples per pixel (0: no)")
    ap.add_argument("--sigmas", type=float, default=1.0,
                    help="the misalignment (1/2 px) and rotation (0.2 deg) read as this many "
                         "sigma: 1 (default, the magnitude is sigma) or 3 (a 3-sigma "
                         "tolerance), in training and in verify")
    ap.add_argument("--quick", action="store_true", help="2 epochs, 10 samples (smoke run)")
    ap.add_argument("--results", default="robust",
                    help="name of the results files under benchmarks/results/")
    ap.add_argument("--model", choices=("converged", "training"), default="converged",
                    help="verify's model: the converged one (the ladder, once per design) or "
                         "the training model (pad 2, one sample per pixel, cells)")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.single = 10, 2
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for case in args.cases.split(","):
            plain, robust, pname = case_configs(case, args.size, args.quick)
            process = load_process(pname)
            pitch = parse_config(plain).optics.pitch
            err = errors_file(combined(process, pitch, sigmas=args.sigmas),
                              tmp / f"{case}_errors.toml")
            robust.setdefault("fabrication", {}).update(
                errors=str(err), error_samples=args.error_samples, error_statistic="p5")
            if case == "d2nn":  # full strength after 1/4 of the epochs, on the mean: the
                # tail (all' p5 48 % -> 72 %) for 0.7 points of nominal (one run each); the
                # errors trained at 1.5x the magnitudes they are scored at: all' p5 65.7 % ->
                # 77.2 % at the same nominal (2x: 77.7 %, 1.6 points of nominal lost)
                robust["fabrication"].update(error_ramp=0.25, error_statistic="mean",
                                             error_strength=1.5)
            runs = []
            seeds = [int(v) for v in args.seeds.split(",")]
            for (name, sets), (label, raw) in itertools.product(
                    variants(args.variant), (("plain", plain), ("robust", robust))):
                if label not in args.rows.split(","):
                    continue
                for seed in seeds:
                    t0 = time.perf_counter()
                    cfg = parse_config({**with_sets(raw, sets), "seed": seed})
                    tag = " ".join(filter(None, (label, name, len(seeds) > 1 and f"seed {seed}")))
                    run = tmp / f"{case}_{label}_{name}_{seed}"
                    Trainer(cfg, run, progress=False).run()
                    runs.append((tag, run, time.perf_counter() - t0))
            if case != "d2nn" and args.refine:
                # the same refinement of both: on point samples, then on verify's drawing
                for label, run, train_s in list(runs):
                    t0 = time.perf_counter()
                    out = refine_twice(run, tmp, pname if label.startswith("robust") else "none",
                                       args.refine, args.quick)
                    runs.append((label + "+refine", out, train_s + time.perf_counter() - t0))
            for label, run, train_s in runs:
                vals, sim = evaluate(run, process, pitch, samples=args.samples,
                                     single=args.single, tmp=tmp, model=args.model,
                                     sigmas=args.sigmas)
                rows.append([case, label, *[round(v, 4) for v in vals], round(train_s, 1), sim])
                print(rows[-1], flush=True)
    header = ["case", "training", "nominal", "DRC", "bias+1/4px", "bias-1/4px",
              "misalign1/2px", "rot0.2deg", "height2%", "all mean", "all p5",
              "all' mean", "all' p5", "train s", "verify model"]
    save_table(args.results, rows, header, {
        "size": args.size, "seeds": args.seeds, "samples": args.samples,
        **({"variants": "; ".join(args.variant)} if args.variant else {}),
        "misalignment_rotation_sigma": f"magnitude / {args.sigmas:g}",
        "single_samples": args.single,
        "error_samples_per_step": args.error_samples, "quick": args.quick,
        "verify_model": f"optodesign.verify.montecarlo.verify_fab, {args.model} model "
                        "(torch geometric error models of issue #12; designs trained with "
                        "pixels = cells)",
        "training_errors": "verify's error models (optodesign/train/robust.py ErrorSampler), "
                           "the all' errors (bias drawn per sample), the line-width bias's "
                           "gradient by robust.bias_strips (since 2026-11-30)",
        "d2nn": "16 epochs for both, cosine learning rate; robust: filter 2 px, error_ramp "
                "0.25, statistic mean, error_strength 1.5, the last epoch kept, "
                "loss temperature 20 (plain: the example's 10); "
                "hologram, lens: the examples' [fabrication] at 6 epochs x 40 steps, p5",
        "metric": "d2nn accuracy, hologram PSNR dB, lens Strehl"},
        notes=["single errors: line-width bias +-1/4 px, misalignment 1/2 px (per layer and "
               "axis), rotation 0.2 deg, both drawn with sigma = magnitude / "
               f"{args.sigmas:g}, height sigma 2 % of a 2 pi step "
               "(mean of the single samples each).",
               "all = every single error at once with the bias +1/4 px in every sample; "
               "all' = the same with the bias drawn per sample (sigma 1/8 px, either sign). "
               "mean and 5th percentile over the samples.",
               *([] if not any(r[1].endswith("+refine") for r in rows) else [
                   "+refine rows: optodesign refine on point samples (80 000 evaluations), "
                   f"then on verify's drawing (--oversample {args.refine}, 40 000 "
                   "evaluations); the robust design under its process's rules, the plain one "
                   "without; train s includes the refinement."])])


if __name__ == "__main__":
    main()

"""``optodesign verify FAB_DIR --report OUT``: simulate the written files under fab errors.

The files are simulated under a model chosen by convergence (padding, then samples per pixel,
raised until the metric and the detector energies stop changing; ``--fast``: the training
model). Exit codes: 0 when the files read back score within the tolerance of the trained
metric (both under the training model) and the metric under the combined errors stays within
the tolerance of the read-back one (both under the simulation model), 1 when
either does not, 2 for bad input (missing, corrupt or inconsistent files — files that do not
make the design in ``design.npz`` —, a bad errors file, bad options, an unusable --report).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import UserError
from ._common import MAX_SEED, check_output_dir, device_option, resolve_device, user_errors

#: largest --seed (numpy seeds any non-negative integer; JSON readers keep 63 bits)


@click.command()
@click.argument("fab_dir", type=click.Path(path_type=Path))
@click.option("--report", "report_dir", required=True,
              type=click.Path(path_type=Path),
              help="Report directory (created, or a previous report replaced; other entries "
                   "in it are kept): report.json, report.md, report.html (self-contained), PNG "
                   "figures.")
@click.option("--samples", type=int, default=100, show_default=True,
              help="Monte-Carlo samples of the combined errors.")
@click.option("--errors", "errors_file", type=click.Path(path_type=Path),
              default=None, help="Errors TOML ([errors], [tolerance], [sweep]); default: a "
                                 "typical model scaled to the design (see docs/verify.md).")
@device_option
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Dataset directory (MNIST/Fashion IDX files) if not where training had it.")
@click.option("--source", type=click.Choice(["auto", "gds", "stl"]), default="auto",
              show_default=True,
              help="Which files to read back: auto = STL for printed parts, GDS otherwise.")
@click.option("--test-samples", type=int, default=None,
              help="Use only the first N test images (D2NN).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every draw.")
@click.option("--sweep/--no-sweep", default=True, show_default=True,
              help="Run the tolerance sweep (metric vs each error's magnitude).")
@click.option("--sweep-samples", type=int, default=None,
              help="Samples per sweep point (default: errors file, else min(samples, 8)).")
@click.option("--fast", is_flag=True,
              help="Simulate under the training model (no convergence ladder): quick, but "
                   "not converged for every geometry.")
@click.option("--allow-edited", is_flag=True,
              help="Accept GDS/OASIS/STL files the fab edited after export (OPC, dummy fill, "
                   "a moved marker): re-derive the levels from the geometry, report every "
                   "pixel that differs from the design, and simulate what the files make.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@user_errors
def verify(fab_dir: Path, report_dir: Path, samples: int, errors_file: Path | None, device: str,
           data: Path | None, source: str, test_samples: int | None, seed: int, sweep: bool,
           sweep_samples: int | None, fast: bool, allow_edited: bool, quiet: bool) -> None:
    """Re-read the GDS/STL files of FAB_DIR, perturb them with fabrication errors, simulate
    and score them, and write a report to --report."""
    from ..variation.spec import load_errors
    from ..verify.montecarlo import verify_fab
    from ..verify.report import (
        check_report_dir,
        tolerated_up_to,
        trained_drop,
        trained_passed,
        verdict,
        write_report,
    )

    for name, value in (("--samples", samples), ("--sweep-samples", sweep_samples),
                        ("--test-samples", test_samples)):
        if value is not None and value < 1:
            raise UserError(f"{name}: must be >= 1, got {value}")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed: must be in 0..{MAX_SEED}, got {seed}")
    # before any expensive work: the report must have somewhere to go
    check_output_dir(report_dir, "--report")
    check_report_dir(report_dir, option="--report")
    if not fab_dir.is_dir():
        raise UserError(f"{fab_dir}: fab directory not found" if not fab_dir.exists() else
                        f"{fab_dir}: not a directory (give the fab directory written by "
                        "optodesign export)")
    cfg = load_errors(errors_file) if errors_file is not None else None
    from .. import distributed

    # under torchrun the Monte-Carlo chunks and the sweep are split over ranks and merged in
    # sample order, so every rank holds the same result; rank 0 writes the report
    dev = distributed.setup(resolve_device(device))
    result = verify_fab(fab_dir, errors=cfg, samples=samples, seed=seed, device=dev,
                        source=source, data=data, test_samples=test_samples,  # type: ignore[arg-type]
                        sweep=sweep, sweep_samples=sweep_samples, progress=not quiet,
                        fast=fast, allow_edited=allow_edited)
    main = distributed.is_main()
    distributed.shutdown()
    if not main:
        sys.exit(0 if verdict(result) else 1)
    files = write_report(result, report_dir)
    fab, m = result.fab, result.metric
    s = result.combined.summary()
    t = result.seconds
    click.echo(f"verify {fab.fab_dir} ({fab.process.name}, read from {fab.source.upper()}, "
               f"{dev}): {fab.design.task}, metric {m}")
    if result.trained is not None:
        if result.round_trip_exact:
            same = "exactly reproduced"
        else:
            ok = "within" if trained_passed(result) else "FAIL: beyond"
            same = (f"DIFFERS, drop {trained_drop(result):.4g}, {ok} the allowed "
                    f"{result.max_drop:.4g}")
        click.echo(f"  training model: trained {m} {result.trained:.6g}; files read back "
                   f"{result.readback_value:.6g} ({same})")
    else:
        click.echo(f"  training model: {m} of the files read back {result.readback_value:.6g}")
    conv = result.convergence
    state = ("--fast, not checked" if conv is None else
             "converged" if conv.converged else "NOT converged")
    click.echo(f"  simulation model ({result.model.label()}, {state}): {m} "
               f"{result.nominal_value:.6g}, model gap {result.model_gap:+.4g}")
    for note in fab.notes:
        click.echo(f"  note: {note}")
    rate = result.combined.computed / max(t.get("combined", 0.0), 1e-9)
    click.echo(f"  combined errors, {result.samples} samples: mean {s['mean']:.4g}, std "
               f"{s['std']:.3g}, min {s['min']:.4g}, 5th pct {s['p5']:.4g}  "
               f"[{t.get('combined', 0):.1f} s, {rate:.2f} samples/s]")
    for sw in result.sweep:
        click.echo(f"  sweep {sw.name:<19} tolerated up to {tolerated_up_to(sw)}")
    tol = result.config.tolerance
    passed = verdict(result)
    reasons = []
    if not trained_passed(result):
        reasons.append(f"files read back {trained_drop(result):.4g} below the trained {m}")
    if not result.passed:
        reasons.append(f"combined errors {result.drop:.4g} below the files' {m}")
    why = f" ({'; '.join(reasons)})" if reasons else ""
    click.echo(f"  {'PASS' if passed else 'FAIL'}: {tol.statistic} {m} drop {result.drop:.4g} "
               f"under the combined errors (allowed {result.max_drop:.4g}){why}")
    click.echo(f"  report: {files['report.md']}  ({len(files)} files in {report_dir})")
    if not passed:
        sys.exit(1)

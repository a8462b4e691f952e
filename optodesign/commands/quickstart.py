"""``optodesign quickstart --out DIR``: train → export → verify the embedded default design.

The default is the digits D2NN (``optodesign/data/quickstart.toml``, the embedded 8x8 digits,
no download) trained on the level table of the shipped ``thz-printed`` process, exported with
that process to GDS, OASIS and STL, and verified from the STL files under the default error
model. About 2-4 minutes on 2 CPU cores; everything it needs ships inside the package.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ._common import check_output_dir, device_option, parse_int_option, resolve_device, user_errors

PROCESS = "thz-printed"

#: what ``--tiny`` changes (a run of seconds, for tests)
TINY = {
    "optics": {"size": 32, "layers": 2, "distance": "2 cm"},
    "data": {"image_size": 16, "train_samples": 128, "test_samples": 64},
    "detectors": {"size": 3},
    "train": {"epochs": 1},
}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(raw: dict[str, Any]) -> str:
    """A TOML text for a config of scalars, lists and one level of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for k, v in raw.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def quickstart_config_text() -> str:
    """The packaged default config (``optodesign/data/quickstart.toml``)."""
    from importlib import resources

    return resources.files("optodesign.data").joinpath("quickstart.toml").read_text("utf-8")


def check_quickstart_out(out: Path) -> bool:
    """Check (changing nothing) that ``out/run``, ``out/fab``, ``out/verify`` are ours to write.

    Each may be absent or empty, or hold what an earlier quickstart wrote there (a run; a fab
    directory with ``manifest.json``; a report); anything else is refused, so a quickstart
    never replaces what it did not write. Run it again to redo a quickstart in place.

    Returns:
        True when ``out/run`` holds an earlier run whose files must be cleared first.

    Raises:
        UserError: one line naming ``--out``.
    """
    from ..train.rundir import is_run_dir

    check_output_dir(out, "--out")
    expected = {"run": ("a training run", is_run_dir),
                "fab": ("a fab directory (manifest.json)",
                        lambda d: (d / "manifest.json").is_file()),
                "verify": ("a verify report (report.json)",
                           lambda d: (d / "report.json").is_file() or (d / "report.md").is_file())}
    earlier_run = False
    for name, (what, ours) in expected.items():
        d = out / name
        if not d.exists():
            continue
        if not d.is_dir() or d.is_symlink():
            raise UserError(f"--out: {d} exists and is not a directory quickstart wrote; "
                            f"choose another --out")
        if not any(d.iterdir()):
            continue
        if not ours(d):
            raise UserError(f"--out: {d} is not empty and is not {what} from an earlier "
                            f"quickstart; choose another --out")
        earlier_run = earlier_run or name == "run"
    # export and verify replace only their own earlier output: refuse now, not after training
    from ..export.fab import check_out_dir
    from ..verify.report import check_report_dir

    check_out_dir(out / "fab", option="--out")
    check_report_dir(out / "verify", option="--out")
    return earlier_run


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Directory for everything (run/, fab/, verify/).")
@device_option
@click.option("--samples", default="32", show_default=True, metavar="N",
              help="Monte-Carlo samples of the combined fabrication errors (>= 1).")
@click.option("--epochs", default=None, hidden=True, help="Override train.epochs.")
@click.option("--tiny", is_flag=True, hidden=True,
              help="A seconds-long run on a 32x32, 2-layer version (tests).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@user_errors
def quickstart(out_dir: Path, device: str, samples: str, epochs: str | None, tiny: bool,
               quiet: bool) -> None:
    """Train, export and verify the embedded default D2NN (digits, 3D-printed THz layers)."""
    from ..export.fab import export_design
    from ..fileio import parse_toml
    from ..process import load_process
    from ..train.config import parse_config
    from ..train.rundir import clear_run_outputs
    from ..train.trainer import Trainer
    from ..verify.montecarlo import verify_fab
    from ..verify.report import verdict, write_report

    n_samples = parse_int_option(samples, "--samples", low=1)
    assert n_samples is not None
    n_epochs = parse_int_option(epochs, "--epochs", low=1)
    # the output first: nothing is computed for results that cannot be written
    earlier_run = check_quickstart_out(out_dir)
    dev = resolve_device(device)
    text = quickstart_config_text()
    raw = parse_toml(text, where="the embedded quickstart config")
    if tiny:
        for section, values in TINY.items():
            raw.setdefault(section, {}).update(values)
    if n_epochs is not None:
        raw.setdefault("train", {})["epochs"] = n_epochs
    if tiny or n_epochs is not None:
        text = dump_toml(raw)
    cfg = parse_config(raw)
    run_dir, fab_dir, report_dir = out_dir / "run", out_dir / "fab", out_dir / "verify"
    t0 = time.perf_counter()

    click.echo(f"[1/3] train: {cfg.optics.layers} layers of {cfg.optics.size}x{cfg.optics.size}"
               f" px, {cfg.quantization.levels} levels of process {PROCESS}, "
               f"{cfg.train.epochs} epochs on the embedded digits ({dev})")
    trainer = Trainer(cfg, run_dir, device=dev, progress=not quiet, config_text=text)
    if earlier_run:  # an earlier quickstart's run: no stale plots or refined/ survive
        clear_run_outputs(run_dir)
    result = trainer.run()
    m = result.design.metrics
    t1 = time.perf_counter()
    n_test = cfg.data.test_samples or "all"
    click.echo(f"      test accuracy {m['accuracy']:.4f} (hard-quantized levels of the printed "
               f"resin, {n_test} test digits)  [{t1 - t0:.0f} s]")

    click.echo(f"[2/3] export with process {PROCESS}: GDS, OASIS, STL")
    manifest = export_design(result.design, load_process(PROCESS), fab_dir, design_dir=run_dir,
                             option="--out")
    t2 = time.perf_counter()
    click.echo(f"      {manifest.n_layers} layers, DRC "
               f"{'passed' if manifest.drc['passed'] else 'FAILED'}  [{t2 - t1:.0f} s]")

    click.echo(f"[3/3] verify the written STL files: {n_samples} samples of the default "
               "fabrication errors + tolerance sweep")
    res = verify_fab(fab_dir, samples=n_samples, device=dev, progress=not quiet,
                     sweep_samples=1 if tiny else 3, errors_under_training_model=True)
    files = write_report(res, report_dir, option="--out")
    t3 = time.perf_counter()
    s = res.combined.summary()
    same = {True: "reproduced exactly", False: "DIFFERS from training", None: ""}[
        res.round_trip_exact]
    conv = res.convergence
    state = "not checked" if conv is None else "converged" if conv.converged else \
        "NOT converged within the ladder's caps"
    click.echo(f"      accuracy from the files: {res.readback_value:.4f} under the training "
               f"model ({same}); {res.nominal_value:.4f} under the drawn model "
               f"({res.model.label()}, {state}; gap {res.model_gap:+.4f})")
    click.echo(f"      under errors "
               f"mean {s['mean']:.4f}, 5th pct {s['p5']:.4f} -> "
               f"{'PASS' if verdict(res) else 'FAIL'} (allowed drop {res.max_drop:g})  "
               f"[{t3 - t2:.0f} s]")
    click.echo("")
    click.echo(f"done in {t3 - t0:.0f} s. Files:")
    click.echo(f"  design       {run_dir / 'design.json'}  (+ design.npz, metrics.csv, plots/)")
    click.echo(f"  fabrication  {fab_dir}/layer*.gds|.oas|.stl, {fab_dir / 'manifest.json'}, "
               f"{fab_dir / 'drc.txt'}")
    click.echo(f"  verify       {files['report.md']}  (+ report.html, report.json, "
               f"{', '.join(n for n in files if n.endswith('.png'))})")

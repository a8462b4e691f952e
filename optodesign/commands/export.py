"""``optodesign export RUN_DIR --process NAME_OR_PATH --out FAB_DIR``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ._common import check_output_dir, user_errors


def _size(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--process", "process_name", required=True, metavar="NAME_OR_PATH",
              help="Shipped process name (e.g. thz-printed, fused-silica-etch4, tio2-pillars, "
                   "ip-dip-2pp) or a process .toml file.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Fab directory to write. A previous fab directory there is replaced; "
                   "entries export did not write (e.g. a verify report) are kept; any other "
                   "non-empty directory is refused.")
@click.option("--format", "formats", default="gds,oas,stl", show_default=True,
              help="Comma-separated outputs: gds, oas, stl.")
@click.option("--strict", is_flag=True,
              help="Exit with status 1 when any design rule fails (files are still written).")
@click.option("--stl-units", type=click.Choice(["mm", "um"]), default=None,
              help="Units of the STL coordinates: mm (slicers) or um (two-photon printing "
                   "software); recorded in the manifest and the STL header. Default: the "
                   "process's ([print] stl_units: um for ip-dip-2pp), else mm.")
@click.option("--spacer", is_flag=True,
              help="Also write STL spacer frames holding the layers at the design distances.")
@user_errors
def export(run_dir: Path, process_name: str, out_dir: Path, formats: str, strict: bool,
           stl_units: str | None, spacer: bool) -> None:
    """Write GDSII/OASIS/STL, a DRC report and manifest.json for the design in RUN_DIR."""
    from ..design import Design
    from ..export.fab import DesignRuleError, export_design, parse_formats
    from ..process import load_process

    t0 = time.perf_counter()
    fmts = parse_formats(formats)
    check_output_dir(out_dir, "--out")
    design = Design.load(run_dir)
    process = load_process(process_name)
    failed: DesignRuleError | None = None
    kept: list[str] = []
    try:
        manifest = export_design(design, process, out_dir, formats=fmts, strict=strict,
                                 spacer=spacer, design_dir=run_dir, kept=kept,
                                 option="--out", stl_units=stl_units)
    except DesignRuleError as e:
        failed, manifest = e, e.manifest
    dt = time.perf_counter() - t0

    click.echo(f"exported {manifest.n_layers} layer(s), {manifest.shape[0]}x"
               f"{manifest.shape[1]} px, {manifest.n_levels} levels, process "
               f"{process.name} ({process.kind}) -> {out_dir}  [{dt:.1f} s]")
    for layer in manifest.layers:
        files = "  ".join(f"{info.name} {_size(info.bytes or 0)}"
                          for info in layer.files.values())
        counts = "  ".join(f"{k}={v}" for k, v in layer.drc["counts"].items())
        status = "ok" if layer.drc["passed"] else "FAIL"
        click.echo(f"  layer {layer.index}: {files or '(no layout files)'}")
        click.echo(f"    drc {status}: {counts}")
    for sp in manifest.spacers:
        click.echo(f"  spacer {sp.between[0]}-{sp.between[1]}: {sp.file}")
    for note in manifest.notes:
        click.echo(f"  note: {note}")
    if kept:
        names = ", ".join(n + ("/" if (Path(out_dir) / n).is_dir() else "") for n in kept)
        click.echo(f"  kept from the previous fab directory (not written by export, carried "
                   f"over unchanged): {names}; a verify report among them describes the "
                   "previous files: re-run verify")
    click.echo(f"  manifest: {Path(out_dir) / 'manifest.json'}   drc: "
               f"{Path(out_dir) / 'drc.txt'}")
    if failed is not None:
        click.echo(f"error: {failed}", err=True)
        sys.exit(1)

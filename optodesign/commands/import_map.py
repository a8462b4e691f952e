"""``optodesign import MAP --pitch P --wavelength L --process NAME --distance D --out RUN``.

A phase or transmission map made elsewhere becomes a design directory (design.json,
design.npz) on the process's levels, which ``optodesign export`` and ``optodesign verify``
then take like a trained one (:mod:`optodesign.importer`).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from ._common import check_output_dir, parse_int_option, user_errors


@click.command("import")
@click.argument("map_file", metavar="MAP", type=click.Path(path_type=Path))
@click.option("--pitch", required=True, help="Pixel pitch with a unit, e.g. '0.4 mm'.")
@click.option("--wavelength", required=True,
              help="Wavelength with a unit ('532 nm') or a frequency ('0.4 THz').")
@click.option("--process", "process_name", required=True, metavar="NAME_OR_PATH",
              help="Shipped process name or a process .toml file: the levels to quantize to.")
@click.option("--distance", required=True,
              help="Element -> output plane (a lens: its focal length), with a unit; the "
                   "metrics compare the output there with the continuous map's.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Design directory to write (design.json, design.npz).")
@click.option("--levels", default=None,
              help="Level count, for processes that make any count (default: the process's "
                   "own count, else 8).")
@click.option("--method", type=click.Choice(["nearest", "error-diffusion"]), default="nearest",
              show_default=True,
              help="Nearest level per pixel, or Floyd-Steinberg error diffusion of the "
                   "wrapped phase (complex maps: of the complex error).")
@click.option("--phase-range", default=None, metavar="LOW,HIGH",
              help="Grey-level PNG/TIFF maps: the phases of grey 0 and of full scale, in "
                   "radians, e.g. '0,2pi'.")
@click.option("--pad", type=float, default=2.0, show_default=True,
              help="Zero padding of the propagation (as optics.pad).")
@user_errors
def import_map(map_file: Path, pitch: str, wavelength: str, process_name: str, distance: str,
               out_dir: Path, levels: str | None, method: str, phase_range: str | None,
               pad: float) -> None:
    """Import a phase map (.npy radians, grey PNG/TIFF) or a complex transmission map (.npy)
    as a design on the levels of --process."""
    from ..importer import import_map as run_import

    t0 = time.perf_counter()
    n = parse_int_option(levels, "--levels", low=2)
    check_output_dir(out_dir, "--out")
    design = run_import(map_file, pitch=pitch, wavelength=wavelength, process=process_name,
                        distance=distance, levels=n, method=method, phase_range=phase_range,
                        pad=pad, out=out_dir)
    m = design.metrics
    ny, nx = design.shape
    click.echo(f"imported {map_file.name} ({design.setup.map_kind} map, {ny}x{nx} px) onto "
               f"{design.n_levels} levels of {design.quantizer['process']} by {method} -> "
               f"{out_dir}  [{time.perf_counter() - t0:.1f} s]")
    click.echo(f"  fidelity {m['fidelity']:.4f}, efficiency {m['efficiency']:.4f} (continuous "
               f"map: {design.setup.reference_efficiency:.4f})")
    click.echo(f"  next: optodesign export {out_dir} --process {process_name} --out FAB_DIR")

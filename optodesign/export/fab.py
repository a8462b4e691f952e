"""Orchestration: a Design and a process become a fab directory.

``export_design(design, process, out_dir)`` writes, per design layer ``k`` (1-based),
``layer<k>.gds``, ``layer<k>.oas`` and ``layer<k>.stl`` (one file per layer keeps things
simple for a fab), plus ``drc.json``/``drc.txt`` (design-rule summary), ``levels.png`` (the
level maps as heights or pillar sizes), a byte copy of ``design.json``/``design.npz`` (so
``verify`` has the Design) and ``manifest.json`` (:mod:`optodesign.export.manifest`).

Atomic as a whole (:func:`replace_dir`): everything is written into a hidden temporary
directory beside ``out_dir`` and renamed into place at the end, so an error leaves no
half-written fab directory (a previous fab directory at ``out_dir`` is replaced only on
success). An existing, non-empty ``out_dir`` is replaced only when it is a previous fab
directory: its ``manifest.json`` parses with our format tag and none of the files it lists
was changed since. Entries it holds that export did not write (a verify report put inside
it, notes) are carried into the new directory unchanged; anything else is refused with one
line. ``.NAME.lock`` beside ``out_dir`` keeps two exports from writing it at once, and
staging directories of killed exports are removed by the next one.

STL heights: print → the thickness map on its base plate; etch → the relief above the
substrate (process ``etch.substrate``); pillars → no STL (noted in the manifest).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..design import Design
from ..errors import UserError
from ..fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    foreign_entries,
    replace_dir,
    sha256_file,
)
from ..plotting import new_figure, save_png
from ..process import Process
from ..tasks import get_task, task_of
from .drc import DRCReport, check_levels
from .manifest import (
    FORMAT,
    FileRecord,
    LayerRecord,
    Manifest,
    ProcessRecord,
    SpacerRecord,
    conventions,
    file_entry,
    listed_files,
    load_manifest,
    write_manifest,
)

__all__ = ["export_design", "DesignRuleError", "FORMATS", "parse_formats", "check_out_dir"]

log = logging.getLogger(__name__)

FORMATS = ("gds", "oas", "stl")


class DesignRuleError(UserError):
    """Design rules failed in strict mode; the fab directory was still written.

    Attributes:
        report: the :class:`~optodesign.export.drc.DRCReport`.
        manifest: the :class:`~optodesign.export.manifest.Manifest` of the written fab
            directory.
    """

    def __init__(self, message: str, report: DRCReport, manifest: Manifest):
        super().__init__(message)
        self.report = report
        self.manifest = manifest


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """``"gds,oas"`` or ``["gds", "stl"]`` → a validated tuple in canonical order."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = {f.strip().lower() for f in items if f.strip()}
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise UserError(
            f"format: unknown format {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(FORMATS)})"
        )
    if not wanted:
        raise UserError(f"format: choose at least one of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in wanted)


def check_out_dir(out_dir: str | Path, *, option: str = "out") -> None:
    """Check, changing nothing, that :func:`export_design` may write ``out_dir``: absent,
    empty, or a previous fab directory (see :func:`replace_dir`); for callers that want to
    fail before expensive work (quickstart).

    Raises:
        UserError: one line naming ``option``.
    """
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise UserError(f"{option}: {out} exists and is not a directory")
    foreign_entries(out, functools.partial(_fab_owned, option=option))


def _fab_owned(out: Path, option: str = "out") -> set[str]:
    """Names a previous export wrote into ``out``; refuses anything else (see
    :func:`replace_dir`): a directory without our manifest, or one whose listed files were
    changed after export (a re-export would silently lose the change)."""
    try:
        manifest = load_manifest(out)
    except UserError as e:
        raise UserError(f"{option}: {out} exists, is not empty and is not a fab directory written "
                        f"by optodesign export ({e}); refusing to replace it (choose a new "
                        "directory)") from None
    own = {"manifest.json"}
    changed = []
    for name, sha in listed_files(manifest):
        own.add(name)
        f = out / name
        if os.path.lexists(f) and (f.is_symlink() or not f.is_file()
                                   or sha256_file(f) != sha):
            changed.append(name)
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise UserError(f"{option}: {out / changed[0]}{more} changed after export wrote it "
                        "(SHA-256 differs from manifest.json); refusing to replace it (move "
                        "the changed files away or choose a new directory)")
    return own


# ---------------------------------------------------------------------------- main entry
def export_design(
    design: Design,
    process: Process,
    out_dir: str | Path,
    *,
    formats: str | Iterable[str] = FORMATS,
    strict: bool = False,
    spacer: bool = False,
    design_dir: str | Path | None = None,
    max_examples: int = 10,
    plot: bool = True,
    kept: list[str] | None = None,
    option: str = "out",
    stl_units: str | None = None,
) -> Manifest:
    """Write the fab directory of ``design`` made with ``process``.

    Args:
        design: the trained Design.
        process: the fabrication process (checked against the design first).
        out_dir: the fab directory to create (or replace, if it is a previous one).
        formats: any of ``gds``, ``oas``, ``stl`` (a list or ``"gds,oas"``).
        strict: raise :class:`DesignRuleError` when any error-severity rule fails (after
            writing the directory, so the DRC report can be read).
        spacer: also write plate holders (STL) keeping consecutive layers at the design's
            distances (:func:`optodesign.export.stl.plate_holder`: plates base-down on
            ledges, holder height = distance).
        design_dir: the run directory the design came from; its ``design.json`` and
            ``design.npz`` are copied byte for byte (else the Design is saved afresh).
        max_examples: example locations per design rule.
        plot: write ``levels.png``.
        kept: if given, the names of the entries of a previous fab directory at ``out_dir``
            that export did not write (carried over unchanged, see :func:`replace_dir`) are
            appended to it.
        option: how error messages about ``out_dir`` name it (the CLI: ``--out``).
        stl_units: ``mm`` or ``um``: the STL files' coordinates (recorded in the manifest);
            default: the process's (``[print] stl_units``; mm unless it says otherwise).

    Returns:
        The :class:`~optodesign.export.manifest.Manifest` (also written to
        ``manifest.json``).

    Raises:
        UserError: design and process do not match, output not writable or not a previous
            fab directory (see :func:`replace_dir`), being written by another export, bad
            formats.
        DesignRuleError: ``strict`` and the design rules fail.
    """
    fmts = parse_formats(formats)
    process.check_design(design)
    stl_units = stl_units or process.structure.stl_units
    out = Path(out_dir).expanduser().absolute()
    with replace_dir(out, option=option,
                     owned=functools.partial(_fab_owned, option=option)) as staging:
        manifest, report = _write_all(
            design, process, staging.path, formats=fmts, spacer=spacer,
            design_dir=design_dir, max_examples=max_examples, plot=plot, stl_units=stl_units,
        )
    if kept is not None:
        kept.extend(staging.kept)
    log.info("wrote fab directory %s", out)
    if strict and not report.passed:
        failing = [
            f"layer {layer.layer}: " + ", ".join(
                f"{v.count} {v.rule}" for v in layer.violations if v.fails)
            for layer in report.layers if not layer.passed
        ]
        raise DesignRuleError(
            f"design rules failed ({'; '.join(failing)}); see {out / 'drc.txt'}",
            report, manifest,
        )
    return manifest


def _write_all(
    design: Design,
    process: Process,
    d: Path,
    *,
    formats: tuple[str, ...],
    spacer: bool,
    design_dir: str | Path | None,
    max_examples: int,
    plot: bool,
    stl_units: str = "mm",
) -> tuple[Manifest, DRCReport]:
    from .gds import (
        build_library,
        centre_offset,
        layout_origin,
        top_cell_name,
        write_gds,
        write_oas,
    )

    g = process.gds
    structure = process.structure
    pitch = design.pitch
    ny, nx = design.shape
    K, L = design.n_layers, design.n_levels
    origin = layout_origin((ny, nx), pitch, g.precision)
    stl_offset = centre_offset(pitch, g.precision)  # the STL part lies on the GDS layout
    notes: list[str] = list(get_task(design.task).export_notes(design.setup))
    test_split = _test_split(design, notes)
    want_stl = "stl" in formats
    if want_stl and structure.stl_refusal:
        notes.append(structure.stl_refusal)
        want_stl = False
    if want_stl and not process.base_thickness > 0:
        notes.append("stl: not written, the process has no base/substrate thickness (> 0 "
                     "needed for a solid)")
        want_stl = False

    layer_files: list[dict[str, FileRecord]] = []
    level_rows: list[list[dict[str, Any]]] = []
    height_maps: list[np.ndarray] = []
    for k in range(K):
        idx = k + 1
        lv = design.levels[k]
        table = design.level_tables[k]
        files: dict[str, FileRecord] = {}
        if "gds" in formats or "oas" in formats:
            lib = build_library([(idx, lv, table)], process=process, pitch=pitch,
                                wavelength=design.wavelength, n_layers=K)
            if "gds" in formats:
                files["gds"] = file_entry(write_gds(lib, d / f"layer{idx}.gds"))
            if "oas" in formats:
                files["oas"] = file_entry(write_oas(lib, d / f"layer{idx}.oas"))
        value_map = structure.level_values(table)[lv]  # heights, or pillar sizes
        height_maps.append(value_map)
        if want_stl:
            from .stl import heightmap_mesh, write_stl

            mesh = heightmap_mesh(value_map, pitch=pitch, base=process.base_thickness,
                                  offset=stl_offset, units=stl_units)
            path = d / f"layer{idx}.stl"
            write_stl(mesh, path)
            files["stl"] = dataclasses.replace(file_entry(path), triangles=int(len(mesh.faces)))
        layer_files.append(files)
        level_rows.append(structure.level_rows(table))

    report = check_levels(design.levels, design.level_tables, process=process, pitch=pitch,
                          max_examples=max_examples)
    layers_out = tuple(
        LayerRecord(index=k + 1, top_cell=top_cell_name(process, k + 1), files=files,
                    drc={"passed": lr.passed, "counts": {v.rule: v.count for v in lr.violations}})
        for k, (files, lr) in enumerate(zip(layer_files, report.layers, strict=True)))
    atomic_write_text(d / "drc.txt", report.to_text())
    atomic_write_json(d / "drc.json", report.to_dict())

    extra_files = ["drc.json", "drc.txt"]
    if plot:
        _plot_levels(d / "levels.png", height_maps, process=process, pitch=pitch)
        extra_files.append("levels.png")

    # the Design, byte for byte when we know where it came from
    design_sha: dict[str, str] = {}
    if design_dir is not None:
        src = Path(design_dir)
        if src.is_file():
            src = src.parent
        for name in ("design.json", "design.npz"):
            if not (src / name).is_file():
                raise UserError(f"{src / name}: not found (the design to copy into the fab "
                                "directory)")
            with atomic_path(d / name) as t:
                shutil.copyfile(src / name, t)
    else:
        design.save(d)
    for name in ("design.json", "design.npz"):
        design_sha[name] = sha256_file(d / name)
        extra_files.append(name)

    spacers: list[SpacerRecord] = []
    if spacer:
        spacers = _write_spacers(design, process, d, notes, enabled=want_stl, units=stl_units)

    manifest = Manifest(
        format=FORMAT,
        created_by=_created_by(),
        process=ProcessRecord(
            name=process.name, kind=process.kind,
            file=Path(process.source).name if process.source else "",
            sha256=process.sha256, toml=process.text, wavelength=process.wavelength,
            n=process.material.n, kappa=process.material.kappa, n0=process.material.n0,
            references=tuple(process.references)),
        units={"length": "m", "phase": "rad", "gds_unit": g.unit,
               "gds_precision": g.precision, "stl": stl_units},
        wavelength=design.wavelength,
        pitch=pitch,
        shape=(ny, nx),
        n_layers=K,
        n_levels=L,
        distances=tuple(design.distances),
        base_thickness=process.base_thickness,
        origin=origin,
        stl_offset=stl_offset,
        gds_layers=process.gds_layers(L),
        levels=tuple(tuple(rows) for rows in level_rows),
        layers=layers_out,
        files={name: file_entry(d / name) for name in extra_files},
        design={"task": design.task, "n_layers": K, "n_levels": L,
                "layer_kind": design.layer_kind, "files": design_sha},
        drc={"passed": report.passed, "file": "drc.json"},
        notes=tuple(notes),
        spacers=tuple(spacers),
        conventions=conventions(pad=design.pad, pixels=design.pixels,
                                oversample=design.oversample,
                                propagation=design.propagation,
                                setup=design.setup.to_json(), test_split=test_split),
    )
    write_manifest(d / "manifest.json", manifest)
    return manifest, report


def _created_by() -> str:
    import optodesign

    return f"optodesign {getattr(optodesign, '__version__', '?')}"


def _test_split(design: Design, notes: list[str]) -> dict[str, Any] | None:
    """``{"count", "sha256"}`` of a supervised design's test split (what verify scores), or
    None (with a note) when its dataset cannot be read here."""
    from ..data.datasets import split_digest

    task = task_of(design)
    if not task.supervised:
        return None
    try:
        data = task.load_dataset()
    except UserError as e:
        notes.append(f"test split not recorded (its dataset could not be read: {e})")
        return None
    n = task.test_samples or len(data.test_labels)
    return {"count": int(min(n, len(data.test_labels))),
            "sha256": split_digest(data.test_images[:n], data.test_labels[:n])}


def _write_spacers(design: Design, process: Process, d: Path, notes: list[str], *,
                   enabled: bool, units: str = "mm") -> list[SpacerRecord]:
    if not enabled:
        notes.append("spacer: needs STL output of a thin-element process; not written")
        return []
    if design.n_layers < 2:
        notes.append("spacer: a single layer needs no spacer")
        return []
    from .gds import centre_offset
    from .stl import holder_dimensions, plate_holder, write_stl

    ny, nx = design.shape
    p = design.pitch
    wx, wy = nx * p, ny * p
    dims = holder_dimensions((wx, wy), pitch=p)
    # the plates' footprint centre: half a pixel off the optical axis on an even grid
    ox, oy = centre_offset(p, process.gds.precision)
    centre = (ox + (nx / 2 - nx // 2 - 0.5) * p, oy + (ny / 2 - ny // 2 - 0.5) * p)
    phases = design.level_phases() if design.layer_kind == "phase" else design.level_tables
    out = []
    for k in range(1, design.n_layers):
        plate = process.base_thickness + float(
            process.heights(design.levels[k - 1], phases[k - 1]).max())
        try:
            mesh = plate_holder(plate=(wx, wy), height=design.distances[k],
                                plate_thickness=plate, centre=centre, units=units, **dims)
        except UserError as e:
            notes.append(f"spacer {k}-{k + 1}: not written ({e})")
            continue
        path = d / f"spacer{k}-{k + 1}.stl"
        write_stl(mesh, path)
        out.append(SpacerRecord(
            between=(k, k + 1), height=design.distances[k], rim=dims["rim"], file=path.name,
            sha256=sha256_file(path),
            convention=f"holders stack from the table; plate {k} lies in the pocket of this "
                       f"holder, plate {k + 1} rests base-down on its top ledge (covering "
                       f"{dims['ledge']:.6g} m of its rim); base bottom to base bottom = design "
                       f"distance; clearance {dims['clearance']:.6g} m, ledge "
                       f"{dims['ledge_thickness']:.6g} m thick"))
    return out


def _plot_levels(path: Path, maps: list[np.ndarray], *, process: Process, pitch: float) -> None:
    """Level maps as heights (µm) or pillar sizes (nm); deterministic PNG (no metadata)."""
    save_png(levels_figure(maps, process=process, pitch=pitch), path)


def levels_figure(maps: list[np.ndarray], *, process: Process, pitch: float) -> Any:
    """The figure of ``levels.png``: each layer in the layout frame (x right, y up, as a GDS
    viewer shows it), axes in mm or µm, a colorbar of the structure in its unit."""
    K = len(maps)
    cols = min(K, 4)
    rows = math.ceil(K / cols)
    fig = new_figure(3.6 * cols, 3.2 * rows, dpi=100)
    # constrained layout makes room for colorbar labels (a fixed right margin clipped them:
    # "0 0 0 0 1" for 0.2 ... 1.0 um); it is computed in the one draw that saving does
    fig.set_layout_engine("constrained")
    structure = process.structure
    scale, unit = structure.value_unit
    what = structure.value_label
    for k, m in enumerate(maps):
        ax = fig.add_subplot(rows, cols, k + 1)
        ny, nx = m.shape
        span = max(nx, ny) * pitch
        ax_scale, ax_unit = (1e-3, "mm") if span >= 2e-3 else (1e-6, "µm")
        # pixel edges, the centre of pixel (ny // 2, nx // 2) on the optical axis
        ext = ((-(nx // 2) - 0.5) * pitch / ax_scale, (nx - nx // 2 - 0.5) * pitch / ax_scale,
               (-(ny // 2) - 0.5) * pitch / ax_scale, (ny - ny // 2 - 0.5) * pitch / ax_scale)
        im = ax.imshow(m / scale, origin="lower", interpolation="nearest", cmap="viridis",
                       extent=ext)
        ax.set_title(f"layer {k + 1}: {what} ({unit})", fontsize=9)
        ax.set_xlabel(f"x ({ax_unit})", fontsize=8)
        ax.set_ylabel(f"y ({ax_unit})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=5)
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label(f"{what} ({unit})", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"{process.name}", fontsize=10)
    return fig

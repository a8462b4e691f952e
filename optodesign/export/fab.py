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

import contextlib
import errno
import functools
import io
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..design import Design
from ..errors import UserError
from ..fileio import atomic_path, atomic_write_json, atomic_write_text, sha256_file
from ..process import EtchSpec, PillarSpec, Process, wrap_phase
from .drc import DRCReport, check_levels
from .manifest import FORMAT, file_entry, listed_files, load_manifest, write_manifest

__all__ = ["export_design", "DesignRuleError", "FORMATS", "parse_formats", "replace_dir",
           "Staging", "foreign_entries", "check_out_dir"]

log = logging.getLogger(__name__)

FORMATS = ("gds", "oas", "stl")


class DesignRuleError(UserError):
    """Design rules failed in strict mode; the fab directory was still written.

    Attributes:
        report: the :class:`~optodesign.export.drc.DRCReport`.
        manifest: the manifest dict of the written fab directory.
    """

    def __init__(self, message: str, report: DRCReport, manifest: dict[str, Any]):
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


# ---------------------------------------------------------------------------- directories
#: hidden entries our own staging leaves beside a directory NAME: ``.NAME.<8 chars>.tmp`` (a
#: directory being written), ``.NAME.<8 chars>.old`` (the previous one, during a swap)
_STAGING_RE = r"\.{name}\.[a-z0-9_]{{8}}\.(tmp|old)"
_ANY_STAGING = re.compile(r"^\..+\.([a-z0-9_]{8}\.(tmp|old)|lock)$")


@dataclass
class Staging:
    """A directory being built for :func:`replace_dir`.

    Attributes:
        path: the hidden temporary directory to write into.
        kept: names of the entries of the previous directory that its owner did not write;
            they are carried into the new directory unchanged at the swap.
    """

    path: Path
    kept: list[str] = field(default_factory=list)


@contextlib.contextmanager
def replace_dir(out: str | Path, *, option: str,
                owned: Callable[[Path], set[str]]) -> Iterator[Staging]:
    """Build a directory in a hidden temporary directory beside ``out`` and swap it in.

    ``out`` is replaced only when it is absent, empty, or ``owned(out)`` recognises it as a
    previous output of the same writer: ``owned`` returns the names it wrote (they are
    replaced) or raises :class:`UserError` (nothing is touched). Every other entry (a verify
    report a user put inside a fab directory, notes) is carried into the new directory
    unchanged (hard links, else copies) at the swap, so a re-run never loses it; a carried
    name that the new directory also writes is refused.

    While it runs, ``.NAME.lock`` beside ``out`` is locked (``fcntl.flock``): a second writer
    of the same ``out`` fails at once with one line. Under the lock, staging directories left
    by killed runs (``.NAME.*.tmp``, ``.NAME.*.old``) are removed; a previous directory that a
    killed swap left as ``.NAME.*.old`` with ``out`` missing is first put back.

    Args:
        out: the directory to create or replace.
        option: how error messages name it (``"out"``, ``"--report"``).
        owned: ``owned(out) -> names`` (see above), called only for a non-empty ``out``.

    Yields:
        A :class:`Staging`: write into ``staging.path``; on a clean exit the result replaces
        ``out`` atomically (one rename), on an exception it is removed and ``out`` is left
        untouched.

    Raises:
        UserError: ``out`` is a file, is not recognised, cannot be created, is locked, or a
            kept entry collides with a new file.
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise UserError(f"{option}: {out} exists and is not a directory")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option}: cannot create {out} ({e.strerror or type(e).__name__})"
                        ) from None
    with _dir_lock(out, option):
        _clean_staging(out)
        kept = foreign_entries(out, owned)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
        except OSError as e:
            raise UserError(f"{option}: cannot create {out} ({e.strerror or type(e).__name__})"
                            ) from None
        staging = Staging(tmp, kept)
        try:
            yield staging
            _share(tmp)
            _carry(out, tmp, kept, option)
            _swap_into_place(tmp, out)
        except BaseException:
            _remove(tmp)
            raise


def foreign_entries(out: Path, owned: Callable[[Path], set[str]]) -> list[str]:
    """Entries of ``out`` its writer did not write (``[]`` when absent or empty).

    Our own staging leftovers inside it (``.X.*.tmp``, ``.X.*.old``, ``.X.lock`` of a nested
    report) are neither kept nor counted.

    Raises:
        UserError: from ``owned``, when ``out`` is not a previous output.
    """
    if not out.is_dir():
        return []
    names = sorted(p.name for p in out.iterdir() if not _ANY_STAGING.match(p.name))
    if not names:
        return []
    own = owned(out)
    return [n for n in names if n not in own]


@contextlib.contextmanager
def _dir_lock(out: Path, option: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``.NAME.lock`` beside ``out`` (removed afterwards).

    The file is unlinked while locked; a process that opened it before checks after locking
    that the path still names the file it locked, else retries (the usual lock-file dance).
    Where ``fcntl`` or ``flock`` is not available, runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield
        return
    path = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"{option}: cannot create the lock file {path} "
                            f"({e.strerror or type(e).__name__})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{option}: {out} is being written by another process (lock "
                            f"{path} is held); run one at a time") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                os.close(fd)
                raise
            log.warning("cannot lock %s (%s); writing %s unlocked", path, e.strerror, out)
            try:
                yield
            finally:
                os.close(fd)
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # unlinked by its previous holder: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _clean_staging(out: Path) -> None:
    """Remove what killed runs left beside ``out`` (called under the lock)."""
    pattern = re.compile("^" + _STAGING_RE.format(name=re.escape(out.name)) + "$")
    found = [p for p in out.parent.iterdir() if pattern.match(p.name)]
    olds = [p for p in found if p.name.endswith(".old")]
    tmps = [p for p in found if p.name.endswith(".tmp")]
    if olds and not os.path.lexists(out):
        if len(olds) == 1:
            # killed between the two renames of a swap: the previous directory is the .old
            log.warning("restoring %s from %s (a previous run was interrupted)", out, olds[0])
            os.rename(olds[0], out)
        else:  # ambiguous: leave them to the user
            log.warning("%s is missing and %d previous copies lie beside it; not touched",
                        out, len(olds))
        olds = []
    for p in tmps + olds:
        log.info("removing %s (left by an interrupted run)", p)
        _remove(p)


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _share(tmp: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; a fab directory is for sharing."""
    mask = _umask()
    os.chmod(tmp, 0o777 & ~mask)
    for f in tmp.iterdir():
        if f.is_file() and not f.is_symlink():
            os.chmod(f, 0o666 & ~mask)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def _carry(out: Path, tmp: Path, kept: list[str], option: str) -> None:
    """Put the kept entries of ``out`` into ``tmp`` unchanged (``out`` is not modified)."""
    for name in kept:
        src, dst = out / name, tmp / name
        if os.path.lexists(dst):
            raise UserError(f"{option}: {src} was not written by the previous run, and this "
                            f"run writes {name} too; move it out of {out} first")
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(src), str(dst))


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    _remove(old)


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
) -> dict[str, Any]:
    """Write the fab directory of ``design`` made with ``process``.

    Args:
        design: the trained Design.
        process: the fabrication process (checked against the design first).
        out_dir: the fab directory to create (or replace, if it is a previous one).
        formats: any of ``gds``, ``oas``, ``stl`` (a list or ``"gds,oas"``).
        strict: raise :class:`DesignRuleError` when any error-severity rule fails (after
            writing the directory, so the DRC report can be read).
        spacer: also write spacer frames (STL) holding consecutive layers at the design's
            distances (plates stacked base-down; frame height = distance − base thickness).
        design_dir: the run directory the design came from; its ``design.json`` and
            ``design.npz`` are copied byte for byte (else the Design is saved afresh).
        max_examples: example locations per design rule.
        plot: write ``levels.png``.
        kept: if given, the names of the entries of a previous fab directory at ``out_dir``
            that export did not write (carried over unchanged, see :func:`replace_dir`) are
            appended to it.
        option: how error messages about ``out_dir`` name it (the CLI: ``--out``).

    Returns:
        The manifest as a dict (also written to ``manifest.json``).

    Raises:
        UserError: design and process do not match, output not writable or not a previous
            fab directory (see :func:`replace_dir`), being written by another export, bad
            formats.
        DesignRuleError: ``strict`` and the design rules fail.
    """
    fmts = parse_formats(formats)
    process.check_design(design)
    out = Path(out_dir).expanduser().absolute()
    with replace_dir(out, option=option,
                     owned=functools.partial(_fab_owned, option=option)) as staging:
        manifest, report = _write_all(
            design, process, staging.path, formats=fmts, spacer=spacer,
            design_dir=design_dir, max_examples=max_examples, plot=plot,
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
) -> tuple[dict[str, Any], DRCReport]:
    from .gds import build_library, layout_origin, top_cell_name, write_gds, write_oas

    g = process.gds
    pitch = design.pitch
    ny, nx = design.shape
    K, L = design.n_layers, design.n_levels
    origin = layout_origin((ny, nx), pitch, g.precision)
    stl_offset = (origin[0] + nx * pitch / 2, origin[1] + ny * pitch / 2)
    notes: list[str] = []
    is_pillars = isinstance(process.structure, PillarSpec)
    want_stl = "stl" in formats
    if want_stl and is_pillars:
        notes.append("stl: not written for a pillar metasurface (pillars are lithographic; "
                     "the GDS is the fabrication file)")
        want_stl = False
    if want_stl and not process.base_thickness > 0:
        notes.append("stl: not written, the process has no base/substrate thickness (> 0 "
                     "needed for a solid)")
        want_stl = False

    layers_out: list[dict[str, Any]] = []
    level_rows: list[list[dict[str, Any]]] = []
    height_maps: list[np.ndarray] = []
    for k in range(K):
        idx = k + 1
        lv = design.levels[k]
        table = design.level_tables[k]
        files: dict[str, Any] = {}
        if "gds" in formats or "oas" in formats:
            lib = build_library([(idx, lv, table)], process=process, pitch=pitch,
                                wavelength=design.wavelength, n_layers=K)
            if "gds" in formats:
                files["gds"] = file_entry(write_gds(lib, d / f"layer{idx}.gds"))
            if "oas" in formats:
                files["oas"] = file_entry(write_oas(lib, d / f"layer{idx}.oas"))
        if is_pillars:
            height_maps.append(process.pillar_sizes(lv, table))
        else:
            heights = process.heights(lv, np.angle(table))
            height_maps.append(heights)
            if want_stl:
                from .stl import heightmap_mesh, write_stl

                mesh = heightmap_mesh(heights, pitch=pitch, base=process.base_thickness,
                                      offset=stl_offset)
                path = d / f"layer{idx}.stl"
                write_stl(mesh, path)
                entry = file_entry(path)
                entry["triangles"] = int(len(mesh.faces))
                files["stl"] = entry
        layers_out.append({"index": idx, "top_cell": top_cell_name(process, idx),
                           "files": files})
        level_rows.append(_level_rows(process, table, L))

    report = check_levels(design.levels, design.level_tables, process=process, pitch=pitch,
                          max_examples=max_examples)
    for entry, lr in zip(layers_out, report.layers, strict=True):
        entry["drc"] = {"passed": lr.passed,
                        "counts": {v.rule: v.count for v in lr.violations}}
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

    spacers: list[dict[str, Any]] = []
    if spacer:
        spacers = _write_spacers(design, process, d, notes, enabled=want_stl)

    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_by": _created_by(),
        "process": {
            "name": process.name,
            "kind": process.kind,
            "file": Path(process.source).name if process.source else "",
            "sha256": process.sha256,
            "toml": process.text,
            "wavelength": process.wavelength,
            "n": process.material.n,
            "kappa": process.material.kappa,
            "n0": process.material.n0,
            "references": list(process.references),
        },
        "units": {"length": "m", "phase": "rad", "gds_unit": g.unit,
                  "gds_precision": g.precision, "stl": "mm"},
        "wavelength": design.wavelength,
        "pitch": pitch,
        "shape": [ny, nx],
        "n_layers": K,
        "n_levels": L,
        "distances": list(design.distances),
        "base_thickness": process.base_thickness,
        "origin": list(origin),
        "stl_offset": list(stl_offset),
        "gds_layers": [list(x) for x in process.gds_layers(L)],
        "levels": level_rows,
        "layers": layers_out,
        "files": {name: {k: v for k, v in file_entry(d / name).items() if k != "name"}
                  for name in extra_files},
        "design": {"task": design.task, "n_layers": K, "n_levels": L,
                   "layer_kind": design.layer_kind, "files": design_sha},
        "drc": {"passed": report.passed, "file": "drc.json"},
        "notes": notes,
    }
    if spacers:
        manifest["spacers"] = spacers
    write_manifest(d / "manifest.json", manifest)
    return manifest, report


def _created_by() -> str:
    import optodesign

    return f"optodesign {getattr(optodesign, '__version__', '?')}"


def _level_rows(process: Process, table: np.ndarray, n_levels: int) -> list[dict[str, Any]]:
    """The level → structure table of one design layer, for the manifest."""
    rows: list[dict[str, Any]] = []
    s = process.structure
    if isinstance(s, PillarSpec):
        from .gds import pillar_cell_names

        atoms = process.level_atoms(table)
        names = pillar_cell_names(process)
        t_atoms = process.pillar_table()
        for k, a in enumerate(atoms):
            t = t_atoms[a]
            rows.append({"level": k, "atom": int(a), "size": s.sizes[a],
                         "height": s.height if s.sizes[a] > 0 else 0.0,
                         "cell": names[a], "t": [float(t.real), float(t.imag)],
                         "phase": float(wrap_phase(np.angle(t)))})
        return rows
    phases = wrap_phase(np.angle(table))
    heights = process.level_heights(phases)
    t_made = process.transmission(heights)
    top = float(heights.max())
    binary = isinstance(s, EtchSpec) and s.mode == "binary"
    layers = process.gds_layers(n_levels)
    for k in range(n_levels):
        row: dict[str, Any] = {
            "level": k,
            "phase": float(phases[k]),
            "t": [float(t_made[k].real), float(t_made[k].imag)],
            "height": float(heights[k]),
            "thickness": float(process.base_thickness + heights[k]),
        }
        if process.kind == "etch":
            if binary:
                code = (n_levels - 1) - k
                row["depth"] = code * process.etch_step
                row["masks"] = [j for j in range(s.masks) if (code >> j) & 1]  # type: ignore[union-attr]
                row["gds_layers"] = [list(layers[j]) for j in row["masks"]]
            else:
                row["depth"] = top - float(heights[k])
                row["gds_layers"] = [list(layers[k])]
        else:
            row["gds_layers"] = [list(layers[k])]
        rows.append(row)
    return rows


def _write_spacers(design: Design, process: Process, d: Path, notes: list[str], *,
                   enabled: bool) -> list[dict[str, Any]]:
    if not enabled:
        notes.append("spacer: needs STL output of a thin-element process; not written")
        return []
    if design.n_layers < 2:
        notes.append("spacer: a single layer needs no spacer")
        return []
    from .stl import spacer_frame, write_stl

    ny, nx = design.shape
    wx, wy = nx * design.pitch, ny * design.pitch
    rim = max(0.1 * max(wx, wy), 5 * design.pitch)
    out = []
    for k in range(1, design.n_layers):
        height = design.distances[k] - process.base_thickness
        if not height > 0:
            notes.append(f"spacer {k}-{k + 1}: distance {design.distances[k]:.6g} m is not "
                         f"larger than the base thickness; not written")
            continue
        mesh = spacer_frame(outer=(wx + 2 * rim, wy + 2 * rim), inner=(wx, wy), height=height)
        path = d / f"spacer{k}-{k + 1}.stl"
        write_stl(mesh, path)
        out.append({"between": [k, k + 1], "height": height, "rim": rim, "file": path.name,
                    "sha256": sha256_file(path),
                    "convention": "plates stacked base-down; base bottom to base bottom = "
                                  "design distance"})
    return out


def _plot_levels(path: Path, maps: list[np.ndarray], *, process: Process, pitch: float) -> None:
    """Level maps as heights (µm) or pillar sizes (nm); deterministic PNG (no metadata)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    K = len(maps)
    cols = min(K, 4)
    rows = math.ceil(K / cols)
    fig = Figure(figsize=(3.4 * cols, 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    pillars = isinstance(process.structure, PillarSpec)
    scale, unit = (1e-9, "nm") if pillars else (1e-6, "um")
    what = "pillar size" if pillars else "height"
    for k, m in enumerate(maps):
        ax = fig.add_subplot(rows, cols, k + 1)
        ny, nx = m.shape
        ext = (-nx * pitch / 2e-3, nx * pitch / 2e-3, -ny * pitch / 2e-3, ny * pitch / 2e-3)
        im = ax.imshow(m / scale, origin="lower", interpolation="nearest", cmap="viridis",
                       extent=ext)
        ax.set_title(f"layer {k + 1}: {what} ({unit})", fontsize=9)
        ax.set_xlabel("x (mm)", fontsize=8)
        ax.set_ylabel("y (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{process.name}", fontsize=10)
    # fixed margins: tight_layout would draw the figure twice (most of the export time of a
    # small design)
    fig.subplots_adjust(left=0.08, right=0.95, bottom=0.12, top=0.85, wspace=0.45, hspace=0.45)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    with atomic_path(path) as t:
        t.write_bytes(buf.getvalue())
    with contextlib.suppress(Exception):
        fig.clear()

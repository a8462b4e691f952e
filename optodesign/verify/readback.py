"""Rebuild what gets made from a fab directory's files alone, as physics.

:func:`read_fab` reads ``manifest.json`` (units, grid, distances, the level → height / pillar
table, the process file's text), checks the SHA-256 of every file it lists, rebuilds each
layer from its written file and turns it into a :class:`Physical` description:

* thin-element processes (``etch``, ``print``): a relief height map in metres above the base
  plate / etch floor, ``(K, ny, nx)``;
* ``pillars``: the meta-atom index and pillar size of every lattice site.

Which file is read (``source``):

``gds``  the layout is rasterised at the design pitch (a pixel belongs to the polygon covering
         its centre) into a level map, which the manifest's level table turns into heights
         (or meta-atoms). Default for ``etch`` and ``pillars``: the masks are what a mask shop
         receives, and pillars have no STL.
``stl``  the top surface of each layer's solid is sampled at the pixel centres
         (:func:`optodesign.verify.stl_reader.read_stl_heights`), measured above the base
         plate of the manifest. Default for ``print``: the STL is what the printer receives.
         STL coordinates are float32 millimetres (~1e-7 relative), so heights within
         ``1e-4`` of the smallest level step of a level height are snapped to it (the level
         is recovered exactly); heights further off are kept as read and reported.

:func:`transmissions` then applies the process physics (the process's
:class:`~optodesign.process.structure.Structure`: thin elements ``2π (n − n0) h / λ`` of phase
relative to the base and ``exp(−2π κ h / λ)`` of amplitude; pillars: the meta-atom table's
``t``), so a freshly exported design reproduces its trained transmissions —
and, through :class:`optodesign.evaluate.Evaluator`, its trained hard-quantized metric.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..design import Design
from ..errors import UserError
from ..export.manifest import Manifest, ProcessRecord, check_files, load_manifest
from ..fileio import parse_toml
from ..grid import Grid
from ..process import Physical, Process, load_process, process_from_dict
from ..variation.spec import Scales

__all__ = ["FabStack", "read_fab", "element_transmissions", "transmissions", "Source",
           "SNAP_FRACTION"]

log = logging.getLogger(__name__)

Source = Literal["auto", "gds", "stl"]
#: STL heights within this fraction of the smallest level step of a level height snap to it
SNAP_FRACTION = 1e-4


@dataclass(frozen=True, eq=False)
class FabStack:
    """A fab directory read back: the process, the Design it came from, the physical stack.

    Attributes:
        fab_dir: the directory.
        manifest: ``manifest.json`` (:class:`~optodesign.export.manifest.Manifest`).
        process: the process rebuilt from the text recorded in the manifest.
        design: the Design copy of the fab directory with its level maps replaced by the
            read-back ones and its level tables by the manifest's (what the files make).
        source: ``"gds"`` or ``"stl"``.
        levels: int16 ``(K, ny, nx)`` read-back level maps (STL: nearest level).
        physical: the nominal :class:`Physical` description.
        level_values: ``(K, L)`` per-level heights (thin) or pillar sizes (pillars), metres.
        trained_levels_equal: whether the read-back level maps equal the Design's.
        notes: what happened while reading, for the report.
        edits: with ``allow_edited``: the layer files whose SHA-256 differs from the
            manifest, and every pixel whose structure differs from the design's
            (:class:`Edits`); ``None`` when every file is as exported.
    """

    fab_dir: Path
    manifest: Manifest
    process: Process
    design: Design
    source: Literal["gds", "stl"]
    levels: np.ndarray
    physical: Physical
    level_values: np.ndarray
    trained_levels_equal: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    edits: Edits | None = None

    @property
    def n_layers(self) -> int:
        return int(self.levels.shape[0])

    def scales(self) -> Scales:
        """Natural scales of this stack (for default errors and sweep ranges)."""
        d, p = self.design, self.process
        nonzero = [x for x in d.distances if x > 0] or [d.wavelength]
        return Scales(pitch=d.pitch, size=max(d.shape), wavelength=d.wavelength,
                      distance=float(np.mean(nonzero)),
                      index_contrast=abs(p.material.n - p.material.n0),
                      height_2pi=p.structure.natural_height)

    def transmissions(self, phys: Physical | None = None) -> np.ndarray:
        """Complex128 ``(K, ny, nx)`` transmissions of ``phys`` (default: the nominal), as the
        training model reads them."""
        from ..evaluate import reads_cells
        from ..tasks import get_task

        task = get_task(self.design.task)
        return transmissions(phys or self.physical, self.process, grid=self.design.grid,
                             periodic=task.periodic, cells=reads_cells(task, self.design.pixels))


# ---------------------------------------------------------------------------- reading
def _process_from_manifest(manifest: Manifest, fab: Path) -> tuple[Process, str | None]:
    info = manifest.process or ProcessRecord()
    text = info.toml
    if text:
        import hashlib

        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if info.sha256 and sha != info.sha256:
            raise UserError(f"{fab / 'manifest.json'}: process.toml does not match its "
                            "process.sha256 (manifest edited?)")
        raw = parse_toml(text, where=f"{fab / 'manifest.json'}: process.toml")
        return process_from_dict(raw, source=info.file or "<manifest>", text=text), None
    name = info.name
    if not name:
        raise UserError(f"{fab / 'manifest.json'}: no process recorded (process.name)")
    note = (f"the manifest holds no process text; process {name!r} was loaded by name "
            "(it may differ from the one used for export)")
    return load_process(name), note


def _check_consistent(m: Manifest, design: Design, fab: Path) -> None:
    where = fab / "manifest.json"
    pairs = [("shape", list(m.shape), list(design.shape)),
             ("n_layers", m.n_layers, design.n_layers),
             ("n_levels", m.n_levels, design.n_levels)]
    for key, a, b in pairs:
        if a != b:
            raise UserError(f"{where}: {key} {a} differs from design.json ({b})")
    for key in ("pitch", "wavelength"):
        a, b = getattr(m, key), getattr(design, key)
        if not math.isclose(a, b, rel_tol=1e-12):
            raise UserError(f"{where}: {key} {a} differs from design.json ({b})")
    dm = list(m.distances)
    if len(dm) != len(design.distances) or not np.allclose(dm, design.distances, rtol=1e-12,
                                                           atol=0):
        raise UserError(f"{where}: distances {dm} differ from design.json "
                        f"({list(design.distances)})")
    if len(m.layers) != design.n_layers or len(m.levels) != design.n_layers:
        raise UserError(f"{where}: lists {len(m.layers)} layers, the design has "
                        f"{design.n_layers}")


def _check_makes_design(levels: np.ndarray, design_levels: np.ndarray, values: np.ndarray,
                        files: list[str], fab: Path) -> None:
    """The files must make the checksummed design: every pixel read back must be the
    structure (height or pillar size, from the manifest's level table) of the design's level.

    Levels that the table maps to the same structure are interchangeable (the files cannot
    tell them apart); anything else means the files are not those of this design (layer
    entries swapped in the manifest, a file replaced and its checksum updated).

    Raises:
        UserError: one line naming the first file that differs, exit code 2 in the CLI.
    """
    for k in range(levels.shape[0]):
        made = values[k][levels[k]]
        wanted = values[k][design_levels[k]]
        bad = made != wanted
        if bad.any():
            n = int(bad.sum())
            raise UserError(
                f"{fab / files[k]}: does not make layer {k + 1} of design.npz ({n} of "
                f"{bad.size} pixels differ); the fab directory is inconsistent (layer entries "
                "of manifest.json swapped or files replaced?)")




@dataclass(frozen=True)
class Edits:
    """What a fab edited in its copy of the files (``verify --allow-edited``).

    Attributes:
        files: names of the layer files whose SHA-256 differs from the manifest.
        pixels: int ``(n, 4)``: ``(layer, row, col, level read back)`` of every pixel whose
            structure (height or pillar size) differs from the design's, layer 0-based.
        design_levels: int ``(n,)``: the design's level at those pixels.
    """

    files: tuple[str, ...]
    pixels: np.ndarray
    design_levels: np.ndarray

    @property
    def count(self) -> int:
        return int(self.pixels.shape[0])

    def per_layer(self, n_layers: int) -> list[int]:
        return [int((self.pixels[:, 0] == k).sum()) for k in range(n_layers)]


def _edits(levels: np.ndarray, design_levels: np.ndarray, values: np.ndarray,
           files: tuple[str, ...]) -> Edits:
    made = np.take_along_axis(values[:, None, :], levels.reshape(len(levels), 1, -1).astype(
        np.int64), axis=2).reshape(levels.shape)
    wanted = np.take_along_axis(values[:, None, :], design_levels.reshape(
        len(levels), 1, -1).astype(np.int64), axis=2).reshape(levels.shape)
    k, r, c = np.nonzero(made != wanted)
    return Edits(files=files,
                 pixels=np.stack([k, r, c, levels[k, r, c]], axis=1).astype(np.int64),
                 design_levels=design_levels[k, r, c].astype(np.int64))


def read_fab(fab_dir: str | Path, *, source: Source = "auto", oversample: int = 8,
             allow_edited: bool = False) -> FabStack:
    """Read a fab directory written by ``optodesign export`` back into physics.

    Args:
        fab_dir: the directory holding ``manifest.json``.
        source: ``gds``, ``stl`` or ``auto`` (STL for print, GDS otherwise; see module doc).
        oversample: sub-pixels per pixel used later for line-width bias.
        allow_edited: accept layer files changed after export (OPC, dummy fill, a moved
            marker): their levels are derived from the geometry as always, every pixel that
            differs from the design is listed in :attr:`FabStack.edits`, and what the edited
            files make is what gets simulated. ``design.json``/``design.npz`` and the
            manifest must still be as exported: they are the reference.

    Raises:
        UserError: missing manifest, a file whose SHA-256 differs from the manifest, a
            manifest that contradicts its design, unreadable or inconsistent GDS/STL files
            (one line, naming the file).
    """
    fab = Path(fab_dir)
    if not fab.exists():
        raise UserError(f"{fab}: fab directory not found")
    try:
        return _read_fab(fab, source, oversample, allow_edited)
    except UserError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        # a manifest missing or mangling a field that validate_manifest does not type-check
        raise UserError(f"{fab / 'manifest.json'}: malformed or incomplete "
                        f"({type(e).__name__}: {e})") from None


def _read_fab(fab: Path, source: Source, oversample: int, allow_edited: bool) -> FabStack:
    manifest = load_manifest(fab)
    for name in ("design.json", "design.npz"):
        # the Design is the reference the files are checked against: it must be checksummed
        if name not in manifest.files:
            raise UserError(f"{fab / 'manifest.json'}: files lists no {name} (its SHA-256 "
                            "is what makes the design of this fab directory trustworthy)")
    problems = check_files(fab, manifest)
    edited: tuple[str, ...] = ()
    if allow_edited:  # only the layer files may differ; the design is the reference
        layer_files = {name for fmt in ("gds", "oas", "stl")
                       for name in (manifest.files_of(fmt) or [])}
        changed = [p for p in problems if p.endswith("(file changed)")
                   and Path(p.split(": SHA-256")[0]).name in layer_files]
        edited = tuple(Path(p.split(": SHA-256")[0]).name for p in changed)
        problems = [p for p in problems if p not in changed]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more + ("" if allow_edited else
                                              "; --allow-edited verifies edited layer files"))
    notes: list[str] = []
    process, note = _process_from_manifest(manifest, fab)
    if note:
        notes.append(note)
    trained = Design.load(fab)
    _check_consistent(manifest, trained, fab)
    K, L = trained.n_layers, trained.n_levels
    ny, nx = trained.shape
    structure = process.structure

    if source not in ("auto", "gds", "stl"):
        raise UserError(f"--source: must be auto, gds or stl, got {source!r}")
    stl_files, gds_files = manifest.files_of("stl"), manifest.files_of("gds")
    oas_files = manifest.files_of("oas")
    if source == "auto":
        source = "stl" if structure.preferred_source == "stl" and stl_files else "gds"
    if source == "stl" and stl_files is None:
        raise UserError(f"--source stl: {fab} holds no STL file for every layer "
                        f"(process {process.name!r}, {process.kind}); use --source gds")
    if source == "gds" and gds_files is None:
        if oas_files is None:
            raise UserError(f"--source gds: {fab} holds no GDS or OASIS file for every layer; "
                            "use --source stl")
        gds_files = oas_files
        notes.append("read the OASIS files (no GDS files in the fab directory)")

    tables = manifest.level_tables()
    if tables.shape != (K, L):
        raise UserError(f"{fab / 'manifest.json'}: levels table has shape {tables.shape}, "
                        f"expected ({K}, {L})")
    key = structure.value_name
    try:
        values = manifest.level_values(key)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{fab / 'manifest.json'}: levels rows lack a numeric {key!r}") from None

    levels = np.empty((K, ny, nx), dtype=np.int16)
    heights = np.empty((K, ny, nx), dtype=np.float64)
    if source == "gds":
        from .gds_reader import read_gds_levels

        origin = manifest.origin
        for k, name in enumerate(gds_files):  # type: ignore[arg-type]
            path = fab / name
            lv = read_gds_levels(path, process=process, shape=(ny, nx), pitch=trained.pitch,
                                 n_levels=L, level_tables=tables[k], origin=origin,
                                 skip_outside=allow_edited)
            if lv.shape[0] != 1:
                raise UserError(f"{path}: expected one top cell (layer {k + 1}), found "
                                f"{lv.shape[0]}")
            if lv.min() < 0 or lv.max() >= L:
                raise UserError(f"{path}: level {int(lv.max())} outside 0..{L - 1}")
            levels[k] = lv[0]
            heights[k] = values[k][lv[0]]
    else:
        from ..export.gds import layout_origin
        from .stl_reader import read_stl_heights

        if manifest.base_thickness is None:
            raise UserError(f"{fab / 'manifest.json'}: base_thickness: missing (the base plate "
                            "under the STL heights)")
        base = manifest.base_thickness
        # the STL's pixel (0, 0) starts at the layout origin (as written by every version);
        # its offset is where the centre of pixel (ny // 2, nx // 2) lies
        x0, y0 = manifest.origin or layout_origin((ny, nx), trained.pitch,
                                                  process.gds.precision)
        offset = (x0 + (nx // 2 + 0.5) * trained.pitch, y0 + (ny // 2 + 0.5) * trained.pitch)
        worst = 0.0
        for k, name in enumerate(stl_files):  # type: ignore[arg-type]
            h = read_stl_heights(fab / name, shape=(ny, nx), pitch=trained.pitch, base=base,
                                 offset=offset)  # type: ignore[arg-type]
            lv, hk, dev = _snap_heights(h, values[k], total=base + float(values[k].max()))
            levels[k], heights[k] = lv, hk
            worst = max(worst, dev)
        if worst > 0:
            notes.append(f"STL heights deviate from the level table by up to {worst:.3g} m "
                         "(kept as read)")
    phys = structure.physical(levels, heights, values, tables, wavelength=trained.wavelength,
                              distances=tuple(trained.distances), oversample=oversample)
    read_files = stl_files if source == "stl" else gds_files
    edits = None
    if allow_edited:
        edits = _edits(levels, trained.levels, values, edited)
        notes.append(f"--allow-edited: {len(edited)} layer file(s) changed after export "
                     f"({', '.join(edited) or 'none'}); {edits.count} pixel(s) differ from "
                     "the design, and what the files make is simulated")
    else:
        _check_makes_design(levels, trained.levels, values, read_files,  # type: ignore[arg-type]
                            fab)
    equal = bool(np.array_equal(levels, trained.levels))
    if not equal and (edits is None or edits.count == 0):
        notes.append(f"{int((levels != trained.levels).sum())} pixels of the files read back "
                     "as another level of the same height/size as the design's")
    design = trained.with_levels(levels, level_tables=tables)
    return FabStack(fab_dir=fab, manifest=manifest, process=process, design=design,
                    source=source, levels=levels, physical=phys, level_values=values,
                    trained_levels_equal=equal, notes=tuple(notes), edits=edits)


def _snap_heights(h: np.ndarray, level_heights: np.ndarray, *,
                  total: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Nearest level of every STL height; heights within tolerance snap to the level's.

    Returns:
        ``(levels, heights, worst)``: int16 nearest levels, heights (snapped where within
        tolerance, else as read) and the largest deviation of an unsnapped height (0 if all
        snapped).
    """
    lh = np.asarray(level_heights, dtype=np.float64)
    d = np.abs(h[..., None] - lh)
    lv = np.argmin(d, axis=-1)
    dev = np.take_along_axis(d, lv[..., None], axis=-1)[..., 0]
    steps = np.diff(np.unique(lh))
    step = float(steps.min()) if steps.size else float(abs(lh).max() or total)
    tol = max(SNAP_FRACTION * step, 1e-6 * total)
    ok = dev <= tol
    out = np.where(ok, lh[lv], h)
    worst = float(dev[~ok].max()) if (~ok).any() else 0.0
    return lv.astype(np.int16), out, worst


# ---------------------------------------------------------------------------- physics
def element_transmissions(phys: Physical, process: Process, *, grid: Grid) -> np.ndarray:
    """Transmissions of the elements as made, before placement: complex128 ``(K, ny, nx)`` on
    ``grid`` (:meth:`~optodesign.process.structure.Structure.element_transmissions` of the
    process's structure: the perturbed heights, sizes, index, wavelength, κ and line-width
    bias)."""
    t = process.structure.element_transmissions(phys, pitch=grid.pitch)
    grid.check_field(t.shape, what="element transmissions")
    return t


def transmissions(phys: Physical, process: Process, *, grid: Grid,
                  periodic: bool = False, cells: bool = False) -> np.ndarray:
    """Complex128 ``(K, ny, nx)`` transmissions of a physical stack on ``grid``: the elements
    (:func:`element_transmissions`), then moved (``periodic``: the window is one period of a
    grating): with ``cells`` (the layer is read as band-limited flat-topped cells,
    :func:`optodesign.evaluate.reads_cells`) by exact transforms
    (:func:`~optodesign.optics.placement.place_drawn`), else by interpolation
    (:func:`~optodesign.optics.placement.place`)."""
    t = element_transmissions(phys, process, grid=grid)
    if phys.shifts is None and phys.rotations is None:
        return t
    import torch

    from ..optics.placement import place, place_drawn

    move = place_drawn if cells else place
    return move(torch.as_tensor(t), grid=grid, shifts=phys.shifts,
                rotations=phys.rotations, periodic=periodic).numpy()

"""GDSII and OASIS layouts of level maps (gdstk).

Geometry and units
    The user unit is the process's ``gds.unit`` (1 µm) and the database unit its
    ``gds.precision`` (1 nm). Pixel ``(row, col)`` of an ``(ny, nx)`` level map occupies
    ``x0 + col·p .. x0 + (col + 1)·p`` by ``y0 + row·p .. y0 + (row + 1)·p`` with the origin
    ``(x0, y0)`` of :func:`layout_origin`: the array is centred on (0, 0) (the optical axis),
    snapped to the database grid. Rows go along +y and columns along +x, the axis order
    ``(y, x)`` of :class:`optodesign.grid.Grid`, seen looking along +z (the light's direction).

Never one polygon per pixel
    Same-level pixels are merged: horizontal runs per row, then identical runs of consecutive
    rows into rectangles (:func:`merge_rectangles`, vectorised numpy). Rectangles of equal size
    on one layer share one polygon with an explicit-offset repetition: GDSII has no polygon
    repetitions, so gdstk writes each copy (64 B), while OASIS keeps the repetition (a few bytes
    per copy). Pillars use hierarchy: one cell per pillar size, placed by references whose
    repetitions are rectangular arrays (GDS AREF) for merged blocks and explicit offsets for
    single sites.

What each process writes
    ``etch``/binary   mask ``j`` (layer ``gds.layers[j]``) = pixels whose code ``L − 1 − level``
                      has bit ``j`` set (the regions etched ``d·2**j`` deep).
    ``etch``/per-level and ``print``
                      one layer per level, every level (the union covers the whole array).
    ``pillars``       one cell per pillar size (circle or square polygon on ``gds.layers[0]``),
                      placed at the centre of every pixel of that level; empty sites (size 0)
                      get nothing.

Every design layer is its own top cell (``<PROCESS>_L<k>``) with a text label (layer index,
process, wavelength, pitch) and, when the process asks, alignment crosses outside its corners.
Files carry a fixed timestamp, so the same design writes the same bytes.
"""

from __future__ import annotations

import datetime
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..fileio import atomic_path
from ..process import PillarSpec, Process, wrap_phase
from ..units import format_length

if TYPE_CHECKING:
    import gdstk

__all__ = [
    "Rects",
    "merge_rectangles",
    "layout_origin",
    "pitch_in_db",
    "top_cell_name",
    "pillar_cell_names",
    "pillar_polygon_points",
    "layer_masks",
    "build_library",
    "write_gds",
    "write_oas",
    "FIXED_TIMESTAMP",
]

log = logging.getLogger(__name__)

#: Written into every GDSII file instead of the current time (reproducible bytes).
FIXED_TIMESTAMP = datetime.datetime(2000, 1, 1, 0, 0, 0)
LIBRARY_NAME = "OPTODESIGN"


# ---------------------------------------------------------------------------- merging
@dataclass(frozen=True)
class Rects:
    """Axis-aligned rectangles on the pixel grid (index space, end-exclusive).

    Attributes:
        label: int64 ``(N,)`` label (level) of each rectangle.
        r0, r1: int64 ``(N,)`` first and one-past-last row.
        c0, c1: int64 ``(N,)`` first and one-past-last column.
    """

    label: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    c0: np.ndarray
    c1: np.ndarray

    def __len__(self) -> int:
        return int(self.label.size)

    def select(self, keep: np.ndarray) -> Rects:
        return Rects(self.label[keep], self.r0[keep], self.r1[keep], self.c0[keep], self.c1[keep])

    def area(self) -> np.ndarray:
        """Pixels per rectangle, int64 ``(N,)``."""
        return (self.r1 - self.r0) * (self.c1 - self.c0)


def merge_rectangles(labels: np.ndarray) -> Rects:
    """Cover a label map exactly with rectangles of one label each (vectorised).

    Each row is cut into maximal runs of one label; a run identical (same label, same
    columns) to a run in the row before extends that rectangle. Every pixel lies in exactly
    one rectangle. Cost O(ny·nx) plus a sort of the runs.

    Args:
        labels: integer ``(ny, nx)`` map (levels, or a 0/1 mask).

    Returns:
        :class:`Rects` sorted by (label, c0, c1, r0).
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.size == 0:
        raise UserError(f"levels: expected a non-empty (ny, nx) map, got shape {lab.shape}")
    ny, nx = lab.shape
    starts = np.ones((ny, nx + 1), dtype=bool)
    starts[:, 1:nx] = lab[:, 1:] != lab[:, :-1]
    rr, cc = np.nonzero(starts)  # row-major: boundaries of each row in order, ending at nx
    same_row = rr[1:] == rr[:-1]
    r0 = rr[:-1][same_row].astype(np.int64)
    c0 = cc[:-1][same_row].astype(np.int64)
    c1 = cc[1:][same_row].astype(np.int64)
    run_label = lab[r0, c0].astype(np.int64)
    order = np.lexsort((r0, c1, c0, run_label))
    r0, c0, c1, run_label = r0[order], c0[order], c1[order], run_label[order]
    cont = np.zeros(r0.size, dtype=bool)
    cont[1:] = (
        (run_label[1:] == run_label[:-1])
        & (c0[1:] == c0[:-1])
        & (c1[1:] == c1[:-1])
        & (r0[1:] == r0[:-1] + 1)
    )
    first = ~cont
    group = np.cumsum(first) - 1
    last_row = np.zeros(int(first.sum()), dtype=np.int64)
    np.maximum.at(last_row, group, r0)
    return Rects(run_label[first], r0[first], last_row + 1, c0[first], c1[first])


# ---------------------------------------------------------------------------- geometry
def pitch_in_db(pitch: float, precision: float) -> int:
    """The pitch as a whole number of database units; refuses pitches off the grid."""
    q = pitch / precision
    k = round(q)
    if k < 1 or abs(q - k) > 1e-3 + 1e-9 * q:
        raise UserError(
            f"pitch: {format_length(pitch)} is not a whole number of GDS database units "
            f"({format_length(precision)}); pixels would not tile"
        )
    return int(k)


def layout_origin(
    shape: tuple[int, int], pitch: float, precision: float = 1e-9
) -> tuple[float, float]:
    """Lower-left corner ``(x0, y0)`` of pixel (0, 0), metres, so the array is centred on 0.

    Snapped to the database grid so every pixel edge lies on it.
    """
    ny, nx = int(shape[0]), int(shape[1])
    p = pitch_in_db(pitch, precision)
    return (-((nx * p) // 2) * precision, -((ny * p) // 2) * precision)


def top_cell_name(process: Process, layer_index: int) -> str:
    """Deterministic top-cell name of design layer ``layer_index`` (1-based)."""
    tag = re.sub(r"[^A-Za-z0-9]+", "_", process.name).strip("_").upper() or "PROCESS"
    return f"{tag}_L{int(layer_index)}"


def pillar_cell_names(process: Process) -> list[str | None]:
    """Short cell name per meta-atom (``D81`` = 81 nm diameter, ``S120`` = square side);
    ``None`` for empty sites (size 0)."""
    s = _pillar_spec(process)
    prefix = "D" if s.shape == "circle" else "S"
    names: list[str | None] = []
    for k, size in enumerate(s.sizes):
        if size <= 0:
            names.append(None)
            continue
        nm = size / 1e-9
        if abs(nm - round(nm)) < 1e-6:
            base = f"{prefix}{round(nm)}"
        else:
            base = f"{prefix}{nm:.3f}".replace(".", "p")
        names.append(base if base not in names else f"{base}_{k}")
    return names


def pillar_polygon_points(size: float, *, shape: str, points: int) -> np.ndarray:
    """Vertices (metres, centred on 0) of a pillar cross-section.

    A circle becomes a regular ``points``-gon whose *area* equals the circle's (its vertex
    radius is ``r·sqrt(2π / (N sin(2π/N)))``), so the written area is exact up to database
    rounding; an inscribed 9-gon would lose 7.9 %.
    """
    if shape == "square":
        h = size / 2
        return np.array([(-h, -h), (h, -h), (h, h), (-h, h)], dtype=np.float64)
    n = int(points)
    r = size / 2 * math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))
    ang = 2 * math.pi * (np.arange(n) + 0.5) / n
    return np.stack((r * np.cos(ang), r * np.sin(ang)), axis=1)


def layer_masks(levels: np.ndarray, process: Process, n_levels: int) -> list[np.ndarray]:
    """The boolean map of every GDS layer of a thin process (what the polygons cover).

    Binary etch: mask ``j`` = bit ``j`` of ``L − 1 − level``; per-level and print: one map
    per level.
    """
    lv = np.asarray(levels)
    s = process.structure
    if process.kind == "etch" and getattr(s, "mode", "") == "binary":
        code = (n_levels - 1) - lv.astype(np.int64)
        return [((code >> j) & 1).astype(bool) for j in range(s.masks)]  # type: ignore[union-attr]
    return [lv == k for k in range(n_levels)]


def _pillar_spec(process: Process) -> PillarSpec:
    if not isinstance(process.structure, PillarSpec):
        raise UserError(f"process {process.name!r} is not a pillar process")
    return process.structure


def _cross_points(cx: float, cy: float, size: float, width: float) -> list[tuple[float, float]]:
    a, w = size / 2, width / 2
    return [
        (cx - w, cy - a), (cx + w, cy - a), (cx + w, cy - w), (cx + a, cy - w),
        (cx + a, cy + w), (cx + w, cy + w), (cx + w, cy + a), (cx - w, cy + a),
        (cx - w, cy + w), (cx - a, cy + w), (cx - a, cy - w), (cx - w, cy - w),
    ]


# ---------------------------------------------------------------------------- building
def build_library(
    layers: Sequence[tuple[int, np.ndarray, np.ndarray]],
    *,
    process: Process,
    pitch: float,
    wavelength: float,
    n_layers: int | None = None,
) -> gdstk.Library:
    """A gdstk Library with one top cell per design layer.

    Args:
        layers: ``(layer_index, levels, level_table)`` per design layer: 1-based index,
            int ``(ny, nx)`` level map, complex ``(L,)`` level table of that layer.
        process: the fabrication process (validated against the design beforehand).
        pitch: pixel pitch, metres.
        wavelength: design wavelength, metres (for the label).
        n_layers: total layers of the design (for the label); default ``len(layers)``.

    Returns:
        ``gdstk.Library`` (user unit and precision from the process).
    """
    import gdstk

    g = process.gds
    lib = gdstk.Library(LIBRARY_NAME, unit=g.unit, precision=g.precision)
    db_to_user = g.precision / g.unit
    p_db = pitch_in_db(pitch, g.precision)
    p_user = p_db * db_to_user
    total = len(layers) if n_layers is None else n_layers
    pillar_cells: dict[int, gdstk.Cell] = {}
    for layer_index, levels, table in layers:
        lv = np.asarray(levels)
        ny, nx = lv.shape
        x0, y0 = layout_origin((ny, nx), pitch, g.precision)
        x0u, y0u = round(x0 / g.precision) * db_to_user, round(y0 / g.precision) * db_to_user
        cell = lib.new_cell(top_cell_name(process, layer_index))
        n_levels = int(np.asarray(table).shape[0])
        if isinstance(process.structure, PillarSpec):
            atoms = process.level_atoms(np.asarray(table), layer=layer_index)
            _add_pillars(lib, cell, lv, atoms, process, pillar_cells, x0u, y0u, p_user, pitch)
        else:
            gds_layers = process.gds_layers(n_levels)
            for (layer, datatype), mask in zip(
                gds_layers, layer_masks(lv, process, n_levels), strict=True
            ):
                _add_rectangles(cell, mask, layer, datatype, x0u, y0u, p_user)
        w_user, h_user = nx * p_user, ny * p_user
        text = (
            f"layer {layer_index}/{total} process {process.name} "
            f"wavelength {format_length(wavelength)} pitch {format_length(pitch)} "
            f"{ny}x{nx}"
        )
        tl, tt = g.text_layer
        cell.add(gdstk.Label(text, (x0u, y0u + h_user + p_user), anchor="sw", layer=tl,
                             texttype=tt))
        if g.alignment_marks:
            size = (g.mark_size if g.mark_size is not None else 20 * pitch) / g.unit
            width = size / 10
            gap = size
            ml, md = g.mark_layer
            for cx, cy in (
                (x0u - gap, y0u - gap),
                (x0u + w_user + gap, y0u - gap),
                (x0u - gap, y0u + h_user + gap),
                (x0u + w_user + gap, y0u + h_user + gap),
            ):
                cell.add(gdstk.Polygon(_cross_points(cx, cy, size, width), layer=ml,
                                       datatype=md))
    return lib


def _add_rectangles(cell: gdstk.Cell, mask: np.ndarray, layer: int, datatype: int,
                    x0u: float, y0u: float, p_user: float) -> int:
    """Merged rectangles covering ``mask``; equal sizes share a polygon with a repetition."""
    import gdstk

    if not mask.any():
        return 0
    rects = merge_rectangles(mask.astype(np.int8))
    rects = rects.select(rects.label == 1)
    w = rects.c1 - rects.c0
    h = rects.r1 - rects.r0
    order = np.lexsort((rects.c0, rects.r0, h, w))
    w, h, r0, c0 = w[order], h[order], rects.r0[order], rects.c0[order]
    brk = np.flatnonzero((w[1:] != w[:-1]) | (h[1:] != h[:-1])) + 1
    bounds = np.concatenate(([0], brk, [w.size]))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        xs = x0u + c0[a:b] * p_user
        ys = y0u + r0[a:b] * p_user
        poly = gdstk.rectangle(
            (xs[0], ys[0]), (xs[0] + w[a] * p_user, ys[0] + h[a] * p_user),
            layer=layer, datatype=datatype,
        )
        if b - a > 1:
            poly.repetition = gdstk.Repetition(
                offsets=np.stack((xs[1:] - xs[0], ys[1:] - ys[0]), axis=1)
            )
        cell.add(poly)
    return len(rects)


def _add_pillars(lib: gdstk.Library, cell: gdstk.Cell, levels: np.ndarray, atoms: np.ndarray,
                 process: Process, pillar_cells: dict[int, gdstk.Cell],
                 x0u: float, y0u: float, p_user: float, pitch: float) -> None:
    import gdstk

    s = _pillar_spec(process)
    g = process.gds
    names = pillar_cell_names(process)
    layer, datatype = process.gds_layers(len(atoms))[0]
    atom_map = np.asarray(atoms, dtype=np.int64)[np.asarray(levels, dtype=np.int64)]
    rects = merge_rectangles(atom_map)
    for a in np.unique(rects.label):
        a = int(a)
        if s.sizes[a] <= 0:
            continue
        if a not in pillar_cells:
            pc = lib.new_cell(names[a])
            pts = pillar_polygon_points(s.sizes[a], shape=s.shape, points=s.circle_points)
            pc.add(gdstk.Polygon(pts / g.unit, layer=layer, datatype=datatype))
            pillar_cells[a] = pc
        pc = pillar_cells[a]
        sel = rects.label == a
        r0, r1, c0, c1 = rects.r0[sel], rects.r1[sel], rects.c0[sel], rects.c1[sel]
        # Blocks of >= 3 sites become rectangular arrays (a GDS AREF, 52 B, beats 3 SREFs of
        # 30 B); smaller ones are expanded to sites placed by one explicit-offset reference
        # (SREFs in GDS, a compact repetition in OASIS).
        small = (r1 - r0) * (c1 - c0) < 3
        if small.any():
            hh = (r1 - r0)[small]
            ww = (c1 - c0)[small]
            # expand 1x1, 1x2 and 2x1 blocks: first site, plus the second where present
            sr = np.concatenate((r0[small], (r0[small] + 1)[hh == 2], r0[small][ww == 2]))
            sc = np.concatenate((c0[small], c0[small][hh == 2], (c0[small] + 1)[ww == 2]))
            order = np.lexsort((sc, sr))
            xs = x0u + (sc[order] + 0.5) * p_user
            ys = y0u + (sr[order] + 0.5) * p_user
            ref = gdstk.Reference(pc, (xs[0], ys[0]))
            if xs.size > 1:
                ref.repetition = gdstk.Repetition(
                    offsets=np.stack((xs[1:] - xs[0], ys[1:] - ys[0]), axis=1)
                )
            cell.add(ref)
        # merged blocks: rectangular arrays (GDS AREF)
        blocks = np.flatnonzero(~small)
        blocks = blocks[np.lexsort((c0[blocks], r0[blocks]))]
        for i in blocks:
            cell.add(gdstk.Reference(
                pc,
                (x0u + (c0[i] + 0.5) * p_user, y0u + (r0[i] + 0.5) * p_user),
                columns=int(c1[i] - c0[i]), rows=int(r1[i] - r0[i]),
                spacing=(p_user, p_user),
            ))


# ---------------------------------------------------------------------------- writing
def write_gds(library: gdstk.Library, path: str | Path) -> Path:
    """Write a library as GDSII atomically, with the fixed timestamp (reproducible bytes)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        library.write_gds(str(tmp), timestamp=FIXED_TIMESTAMP)
    return path


def write_oas(library: gdstk.Library, path: str | Path) -> Path:
    """Write a library as OASIS atomically (repetitions kept, zlib-compressed blocks)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        library.write_oas(
            str(tmp), compression_level=6, detect_rectangles=True, detect_trapezoids=True,
            standard_properties=False,
        )
    return path


def level_phases_of(table: np.ndarray) -> np.ndarray:
    """Phases (radians, [0, 2π)) of a complex level table."""
    return wrap_phase(np.angle(np.asarray(table, dtype=np.complex128)))

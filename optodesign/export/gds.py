"""GDSII and OASIS layouts of level maps (gdstk).

Geometry and units
    The user unit is the process's ``gds.unit`` (1 µm) and the database unit its
    ``gds.precision`` (1 nm). Pixel ``(row, col)`` of an ``(ny, nx)`` level map occupies
    ``x0 + col·p .. x0 + (col + 1)·p`` by ``y0 + row·p .. y0 + (row + 1)·p`` with the origin
    ``(x0, y0)`` of :func:`layout_origin`: the centre of pixel ``(ny // 2, nx // 2)`` lies at
    (0, 0), the optical axis (the centre convention of :class:`optodesign.grid.Grid`), snapped
    to the database grid. Rows go along +y and columns along +x, the axis order ``(y, x)`` of
    :class:`optodesign.grid.Grid`, seen looking along +z (the light's direction).

Never one polygon per pixel
    Same-level pixels are merged: horizontal runs per row, then identical runs of consecutive
    rows into rectangles (:func:`merge_rectangles`, vectorised numpy). Rectangles of equal size
    on one layer share one polygon with an explicit-offset repetition: GDSII has no polygon
    repetitions, so gdstk writes each copy (64 B), while OASIS keeps the repetition (a few bytes
    per copy). Pillars use hierarchy: one cell per pillar size, placed by references whose
    repetitions are rectangular arrays (GDS AREF) for merged blocks and explicit offsets for
    single sites.

What each process writes
    The process's structure says (:meth:`optodesign.process.structure.Structure.layout`):
    masks covered by merged rectangles (binary etch: one per mask, the etched regions;
    per-level etch and print: one per level) and/or cells placed at the centre of lattice
    sites (pillars: one cell per pillar size; empty sites get nothing).

Every design layer is its own top cell (``<PROCESS>_L<k>``) with a text label (layer index,
process, wavelength, pitch) and, when the process asks, alignment crosses outside its corners,
on the mark layer and on every mask layer (each mask then carries the crosses it is aligned
by; a reader skips them, :mod:`optodesign.verify.gds_reader`).

On the database grid
    Every vertex, reference origin and array vector is a whole number of database units. A
    pillar sits at the centre of its lattice site rounded down to the database grid: with a
    pitch of an odd number of units (325 nm at 1 nm) the exact centre is half a unit off the
    grid, which GDSII cannot store (AREF corners would round differently from their origin,
    and KLayout warns); the shift is at most half a database unit (0.5 nm), and it puts the
    pillar of pixel ``(ny // 2, nx // 2)`` exactly on the optical axis.
Files carry a fixed timestamp, so the same design writes the same bytes.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..fileio import atomic_path
from ..process import Process
from ..process.structure import Layout, SiteCell
from ..raster import runs
from ..units import format_length

if TYPE_CHECKING:
    import gdstk

__all__ = [
    "Rects",
    "merge_rectangles",
    "layout_origin",
    "pitch_in_db",
    "top_cell_name",
    "centre_offset",
    "mask_layers",
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
    r0, c0, c1, run_label = runs(lab)
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
    """Lower-left corner ``(x0, y0)`` of pixel (0, 0), metres, so the centre of pixel
    ``(ny // 2, nx // 2)`` lies on the optical axis (0, 0).

    Snapped to the database grid so every pixel edge lies on it (a pitch of an odd number of
    database units puts the centre half a unit off the axis).
    """
    ny, nx = int(shape[0]), int(shape[1])
    p = pitch_in_db(pitch, precision)
    return (-((nx // 2) * p + p // 2) * precision, -((ny // 2) * p + p // 2) * precision)


def centre_offset(pitch: float, precision: float = 1e-9) -> tuple[float, float]:
    """Where the centre of pixel ``(ny // 2, nx // 2)`` of :func:`layout_origin`'s grid lies,
    metres: the ``offset`` that puts an STL part on the GDS layout (0 unless the pitch is an odd
    number of database units)."""
    p = pitch_in_db(pitch, precision)
    off = (p / 2 - p // 2) * precision
    return off, off


def top_cell_name(process: Process, layer_index: int) -> str:
    """Deterministic top-cell name of design layer ``layer_index`` (1-based)."""
    tag = re.sub(r"[^A-Za-z0-9]+", "_", process.name).strip("_").upper() or "PROCESS"
    return f"{tag}_L{int(layer_index)}"


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
    site_cells: dict[str, gdstk.Cell] = {}
    for layer_index, levels, table in layers:
        lv = np.asarray(levels)
        ny, nx = lv.shape
        x0, y0 = layout_origin((ny, nx), pitch, g.precision)
        x0u, y0u = round(x0 / g.precision) * db_to_user, round(y0 / g.precision) * db_to_user
        cell = lib.new_cell(top_cell_name(process, layer_index))
        layout = process.structure.layout(lv, np.asarray(table), layer=layer_index)
        for (layer, datatype), mask in layout.masks:
            _add_rectangles(cell, mask, layer, datatype, x0u, y0u, p_user)
        if layout.sites is not None:
            x0d, y0d = round(x0 / g.precision), round(y0 / g.precision)
            _add_sites(lib, cell, layout, site_cells, g.unit, (x0d, y0d), p_db, db_to_user)
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
            mark_layers = dict.fromkeys([tuple(g.mark_layer), *mask_layers(layout)])
            for cx, cy in (
                (x0u - gap, y0u - gap),
                (x0u + w_user + gap, y0u - gap),
                (x0u - gap, y0u + h_user + gap),
                (x0u + w_user + gap, y0u + h_user + gap),
            ):
                for ml, md in mark_layers:
                    cell.add(gdstk.Polygon(_cross_points(cx, cy, size, width), layer=ml,
                                           datatype=md))
    return lib


def mask_layers(layout: Layout) -> list[tuple[int, int]]:
    """``(layer, datatype)`` of every mask a layout draws on: its mask layers and the layers
    of its site cells (pillars), in order."""
    out = [tuple(lay) for lay, _ in layout.masks]
    out += [tuple(c.layer) for c in (layout.cells or ()) if c is not None]
    return list(dict.fromkeys(out))  # type: ignore[arg-type]


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


def _add_sites(lib: gdstk.Library, cell: gdstk.Cell, layout: Layout,
               site_cells: dict[str, gdstk.Cell], unit: float,
               origin_db: tuple[int, int], p_db: int, db_to_user: float) -> None:
    """Place the layout's cells at the centres of their lattice sites (one cell per kind of
    site, shared by every top cell of the library), rounded down to the database grid.

    Positions are computed in whole database units (``origin_db`` is pixel (0, 0)'s lower-left
    corner, ``p_db`` the pitch), so every origin, offset and array vector is on the grid."""
    import gdstk

    half = p_db // 2
    p_user = p_db * db_to_user

    def x_user(col: np.ndarray | int) -> np.ndarray:
        return (origin_db[0] + np.asarray(col, dtype=np.int64) * p_db + half) * db_to_user

    def y_user(row: np.ndarray | int) -> np.ndarray:
        return (origin_db[1] + np.asarray(row, dtype=np.int64) * p_db + half) * db_to_user

    assert layout.sites is not None
    rects = merge_rectangles(layout.sites)
    for a in np.unique(rects.label):
        a = int(a)
        site: SiteCell | None = layout.cells[a]
        if site is None:
            continue
        if site.name not in site_cells:
            pc = lib.new_cell(site.name)
            pc.add(gdstk.Polygon(site.points / unit, layer=site.layer[0],
                                 datatype=site.layer[1]))
            site_cells[site.name] = pc
        pc = site_cells[site.name]
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
            xs = x_user(sc[order])
            ys = y_user(sr[order])
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
                (float(x_user(c0[i])), float(y_user(r0[i]))),
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

"""Read GDSII/OASIS files back into level maps, from the files alone.

The inverse of :mod:`optodesign.export.gds`. What the process's structure asks for
(:meth:`optodesign.process.structure.Structure.read_layers`) is collected, and the structure
decodes the level map from it (:meth:`~optodesign.process.structure.Structure.decode`):

* mask layers: polygons rasterised at the design pitch (a pixel belongs to a polygon when its
  centre does). Rectangles on the pixel grid — everything our writer emits, and what most fab
  tools keep — are filled through their bounding boxes in index space with one vectorised 2-D
  prefix sum; any other polygon falls back to a point-in-polygon test over its bounding box;
* site layers (pillars): the cells placed by references (position → lattice site, the
  referenced cell's polygon area) and flattened polygons (their centre and area).

A 1000×1000 layer reads back in about a second.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..export.gds import layout_origin, pitch_in_db
from ..process import Process
from ..process.structure import SiteReadout

if TYPE_CHECKING:
    import gdstk

__all__ = ["read_gds_levels", "read_library", "rasterize_polygons"]

log = logging.getLogger(__name__)

_TOP_RE = re.compile(r"_L(\d+)$")
#: ``(ny, nx, x0, y0, pitch)``: pixel counts, then origin and pitch in GDS user units.
PixelGrid = tuple[int, int, float, float, float]


def read_library(path: str | Path, *, unit: float) -> gdstk.Library:
    """Load a ``.gds`` or ``.oas`` file (coordinates converted to ``unit`` metres).

    Raises:
        UserError: missing, unreadable or corrupt file (names the file).
    """
    import gdstk

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: layout file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".oas":
            return gdstk.read_oas(str(path), unit=unit)
        if suffix in (".gds", ".gds2", ".gdsii"):
            return gdstk.read_gds(str(path), unit=unit)
    except (OSError, RuntimeError, ValueError) as e:
        raise UserError(f"{path}: not a readable {suffix[1:].upper()} file ({e})") from None
    raise UserError(f"{path}: unknown layout format {suffix!r} (expected .gds or .oas)")


def _top_cells(lib: gdstk.Library, path: Path) -> list[tuple[int, gdstk.Cell]]:
    tops = list(lib.top_level())
    if not tops:
        raise UserError(f"{path}: no top cell in the layout")
    indexed = []
    for c in tops:
        m = _TOP_RE.search(c.name)
        if m:
            indexed.append((int(m.group(1)), c))
    if indexed:
        return sorted(indexed, key=lambda t: t[0])
    return [(k + 1, c) for k, c in enumerate(sorted(tops, key=lambda c: c.name))]


def read_gds_levels(
    path: str | Path,
    *,
    process: Process,
    shape: tuple[int, int],
    pitch: float,
    n_levels: int | None = None,
    level_tables: np.ndarray | None = None,
    origin: tuple[float, float] | None = None,
    skip_outside: bool = False,
) -> np.ndarray:
    """Rebuild the level maps of every design layer (top cell) in a layout file.

    Args:
        path: ``.gds`` or ``.oas`` file written by :mod:`optodesign.export.gds` (or any file
            using the same layers and pixel grid).
        process: the process the file was made for (layer map, units, structure).
        shape: ``(ny, nx)`` pixels per layer.
        pitch: pixel pitch, metres.
        n_levels: levels of the design (per-level / print processes need it; binary etch
            and pillars know it). Default: from ``level_tables`` or the process.
        level_tables: complex ``(L,)`` or ``(K, L)`` design level tables; for pillars they map
            atoms back to design levels (default: level k = atom k).
        origin: lower-left corner of pixel (0, 0), metres; default :func:`layout_origin`.
        skip_outside: ignore geometry wholly outside the pixel area (a fab's dummy fill, a
            moved marker: ``verify --allow-edited``) instead of refusing it.

    Returns:
        int16 ``(K, ny, nx)``: one level map per top cell, ordered by the ``_L<k>`` suffix of
        the cell names (else by name).

    Raises:
        UserError: unreadable file, no top cell, none of the expected layers, geometry off the
            pixel area, pixels covered by no level or by two, unknown pillar cells.
    """
    path = Path(path)
    g = process.gds
    ny, nx = int(shape[0]), int(shape[1])
    if n_levels is None:
        if level_tables is not None:
            n_levels = int(np.asarray(level_tables).shape[-1])
        else:
            n_levels = process.fixed_n_levels
    if n_levels is None:
        raise UserError("n_levels: needed to read a per-level layout (pass n_levels)")
    lib = read_library(path, unit=g.unit)
    if origin is None:
        origin = layout_origin((ny, nx), pitch, g.precision)
    p_user = pitch_in_db(pitch, g.precision) * g.precision / g.unit
    x0u, y0u = origin[0] / g.unit, origin[1] / g.unit
    grid = (ny, nx, x0u, y0u, p_user)
    out = np.empty((0, ny, nx), dtype=np.int16)
    maps = []
    tables = None if level_tables is None else np.asarray(level_tables, dtype=np.complex128)
    structure = process.structure
    mask_layers, site_layers = structure.read_layers(n_levels)
    for k, (_, cell) in enumerate(_top_cells(lib, path)):
        table = None
        if tables is not None:
            table = tables if tables.ndim == 1 else tables[min(k, tables.shape[0] - 1)]
        covers = (_read_masks(cell, path, process, grid, mask_layers, skip_outside)
                  if mask_layers else [])
        sites = None
        for layer in site_layers:
            sites = _read_sites(cell, path, grid, layer, unit=g.unit, skip_outside=skip_outside)
        maps.append(structure.decode(covers, sites, shape=(ny, nx), n_levels=n_levels,
                                     level_table=table, where=f"{path}: cell {cell.name}"))
    if maps:
        out = np.stack(maps).astype(np.int16)
    return out


# ---------------------------------------------------------------------------- masks
def _read_masks(cell: gdstk.Cell, path: Path, process: Process, grid: PixelGrid,
                layers: tuple[tuple[int, int], ...],
                skip_outside: bool = False) -> list[np.ndarray]:
    """How many polygons of each mask layer cover each pixel centre."""
    covers = []
    found = False
    for layer, datatype in layers:
        polys = _without_marks(cell.get_polygons(layer=layer, datatype=datatype), grid,
                               all_outside=skip_outside)
        found |= bool(polys)
        covers.append(rasterize_polygons(polys, grid, where=f"{path} layer {layer}/{datatype}"))
    if not found:
        present = sorted({(p.layer, p.datatype) for p in cell.get_polygons()})
        raise UserError(
            f"{path}: cell {cell.name}: none of the expected layers "
            f"{', '.join(f'{a}/{b}' for a, b in layers)} of process {process.name!r} "
            f"(found {', '.join(f'{a}/{b}' for a, b in present) or 'no polygons'})"
        )
    return covers


def _without_marks(polys: list[gdstk.Polygon], grid: PixelGrid, *,
                   all_outside: bool = False) -> list[gdstk.Polygon]:
    """``polys`` without the alignment crosses the writer puts on every mask layer: 12-vertex
    polygons wholly outside the pixel area (any other polygon there stays, and is refused),
    or, with ``all_outside``, without every polygon wholly outside it."""
    if not polys:
        return polys
    ny, nx, x0, y0, p = grid
    xmin, xmax, ymin, ymax, counts, _ = _polygon_arrays(polys)
    outside = ((xmax <= x0) | (xmin >= x0 + nx * p) | (ymax <= y0) | (ymin >= y0 + ny * p))
    cross = outside if all_outside else (counts == 12) & outside
    return [q for q, drop in zip(polys, cross) if not drop]


def _polygon_arrays(polys: list[gdstk.Polygon]) -> tuple[np.ndarray, ...]:
    """Bounding boxes, vertex counts and areas of polygons (vectorised over all vertices)."""
    pts = [p.points for p in polys]
    counts = np.fromiter((len(q) for q in pts), dtype=np.int64, count=len(pts))
    allp = np.concatenate(pts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    xmin = np.minimum.reduceat(allp[:, 0], starts)
    xmax = np.maximum.reduceat(allp[:, 0], starts)
    ymin = np.minimum.reduceat(allp[:, 1], starts)
    ymax = np.maximum.reduceat(allp[:, 1], starts)
    # shoelace area per polygon: sum x_i y_{i+1} - x_{i+1} y_i within each polygon
    nxt = np.arange(allp.shape[0]) + 1
    ends = starts + counts
    nxt[ends - 1] = starts
    cross = allp[:, 0] * allp[nxt, 1] - allp[nxt, 0] * allp[:, 1]
    area = np.abs(np.add.reduceat(cross, starts)) / 2
    return xmin, xmax, ymin, ymax, counts, area


def rasterize_polygons(
    polys: list[gdstk.Polygon], grid: PixelGrid, *,
    where: str = "layout",
) -> np.ndarray:
    """How many polygons cover each pixel centre, int32 ``(ny, nx)``.

    Args:
        polys: gdstk polygons in user units.
        grid: ``(ny, nx, x0, y0, pitch)``, origin and pitch in user units.
        where: file/layer named in errors.
    """
    ny, nx, x0, y0, p = grid
    cover = np.zeros((ny, nx), dtype=np.int32)
    if not polys:
        return cover
    xmin, xmax, ymin, ymax, counts, area = _polygon_arrays(polys)
    c0 = np.rint((xmin - x0) / p).astype(np.int64)
    c1 = np.rint((xmax - x0) / p).astype(np.int64)
    r0 = np.rint((ymin - y0) / p).astype(np.int64)
    r1 = np.rint((ymax - y0) / p).astype(np.int64)
    bad = (c0 < 0) | (r0 < 0) | (c1 > nx) | (r1 > ny)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"{where}: polygon at x {xmin[i]:g}..{xmax[i]:g}, y {ymin[i]:g}..{ymax[i]:g} "
            f"(user units) lies outside the {ny}x{nx} pixel area; wrong shape or pitch?"
        )
    bbox_area = (xmax - xmin) * (ymax - ymin)
    is_rect = (counts == 4) & np.isclose(area, bbox_area, rtol=1e-9, atol=1e-12)
    keep = is_rect & (c1 > c0) & (r1 > r0)
    if keep.any():
        d = np.zeros((ny + 1) * (nx + 1), dtype=np.int64)
        w = nx + 1
        rr0, rr1, cc0, cc1 = r0[keep], r1[keep], c0[keep], c1[keep]
        size = d.size
        d += np.bincount(rr0 * w + cc0, minlength=size)
        d -= np.bincount(rr0 * w + cc1, minlength=size)
        d -= np.bincount(rr1 * w + cc0, minlength=size)
        d += np.bincount(rr1 * w + cc1, minlength=size)
        cover += d.reshape(ny + 1, nx + 1).cumsum(0).cumsum(1)[:ny, :nx].astype(np.int32)
    others = np.flatnonzero(~is_rect)
    if others.size:
        from matplotlib.path import Path as MplPath

        for i in others:
            ra, rb = max(int(math.floor((ymin[i] - y0) / p)), 0), min(r1[i] + 1, ny)
            ca, cb = max(int(math.floor((xmin[i] - x0) / p)), 0), min(c1[i] + 1, nx)
            if rb <= ra or cb <= ca:
                continue
            yy, xx = np.mgrid[ra:rb, ca:cb]
            centres = np.stack(((xx.ravel() + 0.5) * p + x0, (yy.ravel() + 0.5) * p + y0), 1)
            inside = MplPath(polys[i].points).contains_points(centres)
            cover[ra:rb, ca:cb] += inside.reshape(rb - ra, cb - ca).astype(np.int32)
    return cover


# ---------------------------------------------------------------------------- sites
def _read_sites(cell: gdstk.Cell, path: Path, grid: PixelGrid, layer: tuple[int, int], *,
                unit: float, skip_outside: bool = False) -> SiteReadout:
    """The cells placed at lattice sites (references, repetitions expanded) and the polygons
    drawn there directly: the site and polygon area (metres²) of each."""
    ny, nx, x0, y0, p = grid
    lay, datatype = layer
    positions: list[np.ndarray] = []
    areas: list[np.ndarray] = []
    names: list[str] = []
    refs = cell.references
    cell_area: dict[str, float] = {}
    for target in {id(r.cell): r.cell for r in refs}.values() if refs else ():
        if isinstance(target, str) or target is None:
            raise UserError(f"{path}: reference to a cell missing from the file")
        polys = target.get_polygons(layer=lay, datatype=datatype)
        if len(polys) != 1:
            raise UserError(
                f"{path}: cell {target.name}: expected one pillar polygon on layer "
                f"{lay}/{datatype}, found {len(polys)}"
            )
        cell_area[target.name] = polys[0].area()
    if refs:
        if any(r.magnification != 1 for r in refs):
            raise UserError(f"{path}: magnified pillar references; cannot read pillar sizes")
        # vectorised over references: one origin and one area each, repetitions expanded
        origins = np.array([r.origin for r in refs], dtype=np.float64).reshape(-1, 2)
        ref_area = np.fromiter((cell_area[r.cell_name] for r in refs), dtype=np.float64,
                               count=len(refs))
        reps = np.fromiter((r.repetition.size for r in refs), dtype=np.int64, count=len(refs))
        plain = reps <= 1
        positions.append(origins[plain])
        areas.append(ref_area[plain])
        names.extend(f"cell {refs[i].cell_name}" for i in np.flatnonzero(plain))
        for i in np.flatnonzero(~plain):
            offs = np.asarray(refs[i].repetition.get_offsets(), dtype=np.float64) + origins[i]
            positions.append(offs)
            areas.append(np.full(offs.shape[0], ref_area[i]))
            names.extend([f"cell {refs[i].cell_name}"] * offs.shape[0])
    direct = _without_marks(cell.get_polygons(layer=lay, datatype=datatype, depth=0), grid,
                            all_outside=skip_outside)
    if direct:
        xmin, xmax, ymin, ymax, _, area = _polygon_arrays(direct)
        positions.append(np.stack(((xmin + xmax) / 2, (ymin + ymax) / 2), axis=1))
        areas.append(area)
        names.extend(["polygon"] * len(direct))
    if not positions:
        e = np.zeros(0, dtype=np.int64)
        return SiteReadout(e, e, np.zeros(0), ())
    pos = np.concatenate(positions)
    fc = (pos[:, 0] - x0) / p - 0.5
    fr = (pos[:, 1] - y0) / p - 0.5
    c, r = np.rint(fc).astype(np.int64), np.rint(fr).astype(np.int64)
    off = (np.abs(fc - c) > 0.25) | (np.abs(fr - r) > 0.25)
    out = (c < 0) | (r < 0) | (c >= nx) | (r >= ny)
    all_areas, all_names = np.concatenate(areas), names
    if skip_outside and out.any():  # a fab's dummy fill around the array
        keep = ~out
        r, c, off, out = r[keep], c[keep], off[keep], out[keep]
        all_areas = all_areas[keep]
        all_names = [n for n, k in zip(names, keep) if k]
    if (off | out).any():
        i = int(np.flatnonzero(off | out)[0])
        raise UserError(
            f"{path}: pillar at ({pos[i, 0]:g}, {pos[i, 1]:g}) (user units) is "
            f"{'outside the pixel area' if out[i] else 'off the lattice'}"
        )
    flat = r * nx + c
    if np.unique(flat).size != flat.size:
        raise UserError(f"{path}: two pillars on one lattice site")
    return SiteReadout(r, c, all_areas * unit**2, tuple(all_names))

"""Read a layer's height map back from its STL file (the solid of :mod:`optodesign.export.stl`).

The file alone is the source: binary STL in millimetres (ASCII STL is accepted too), vertices
merged by position as any slicer does, checked to be one closed (watertight) surface, then
the top surface is sampled at the pixel centres of the design grid.

Sampling: every upward-facing horizontal triangle is scan-converted along the pixel-centre
rows (vectorised; a centre on a shared edge belongs to both triangles, which carry the same
height), and each pixel takes the highest top that covers its centre. Heights are measured
from the lowest point of the mesh (the underside of the base plate, ``z = 0`` as written).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import trimesh

from ..errors import UserError
from ..grid import Grid

__all__ = ["read_stl_heights", "load_stl", "stl_units"]

log = logging.getLogger(__name__)

MM_PER_M = 1e3
#: file units per metre of the units an optodesign STL header can name
UNITS_PER_M = {"mm": 1e3, "um": 1e6}
_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attr", "<u2")])
# scan-conversion work per chunk (triangle-row pairs), to bound memory on big layers
_CHUNK = 2_000_000


def stl_units(path: str | os.PathLike[str]) -> str:
    """The unit named in an optodesign STL header (``units: um``); ``mm`` for any other file
    (ASCII STL, other writers: millimetres, as slicers assume)."""
    try:
        with open(path, "rb") as f:
            head = f.read(80)
    except OSError:
        return "mm"
    m = re.search(rb"units: (\w+)", head)
    unit = m.group(1).decode("ascii") if m else "mm"
    return unit if unit in UNITS_PER_M else "mm"


def load_stl(path: str | os.PathLike[str]) -> trimesh.Trimesh:
    """Load an STL file as one mesh with vertices merged by position (file units, mm).

    Raises:
        UserError: the file is missing, unreadable, truncated or not an STL, holds no
            triangles or non-finite coordinates, or is not watertight.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{p}: STL file not found") from None
    except OSError as e:
        raise UserError(f"{p}: cannot read STL file ({e.strerror or e})") from None
    tris = _parse_binary(data)
    if tris is None:
        if data[:5].lower() == b"solid":
            tris = _parse_ascii(data, p)
        else:
            n = int(np.frombuffer(data[80:84], "<u4")[0]) if len(data) >= 84 else -1
            what = f"{len(data)} bytes" + (f", header says {n} triangles" if n >= 0 else "")
            raise UserError(f"{p}: not a valid STL file (truncated or corrupt: {what})")
    if tris.shape[0] == 0:
        raise UserError(f"{p}: STL file holds no triangles")
    if not np.all(np.isfinite(tris)):
        raise UserError(f"{p}: STL file holds non-finite coordinates")
    n = tris.shape[0]
    mesh = trimesh.Trimesh(
        vertices=tris.reshape(-1, 3).astype(np.float64),
        faces=np.arange(3 * n).reshape(n, 3),
        process=True,
    )
    if not mesh.is_watertight:
        raise UserError(f"{p}: STL mesh is not watertight (open or non-manifold edges)")
    return mesh


def _parse_binary(data: bytes) -> np.ndarray | None:
    if len(data) < 84:
        return None
    n = int(np.frombuffer(data[80:84], "<u4")[0])
    if len(data) != 84 + 50 * n:
        return None
    rec = np.frombuffer(data, dtype=_STL_RECORD, count=n, offset=84)
    return rec["vertices"]


def _parse_ascii(data: bytes, p: Path) -> np.ndarray:
    import io

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type="stl", process=False)
    except Exception as e:  # trimesh raises many kinds on a broken file
        raise UserError(f"{p}: not a valid ASCII STL file ({type(e).__name__})") from None
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_mesh() if loaded.geometry else None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise UserError(f"{p}: not a valid ASCII STL file (no triangles)")
    return np.asarray(loaded.triangles, dtype=np.float64)


def read_stl_heights(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, int],
    pitch: float,
    base: float | None = None,
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Height map of a layer's STL, sampled at the pixel centres of its grid.

    Args:
        path: binary (or ASCII) STL as written by :func:`optodesign.export.stl.write_stl`,
            in the unit its header names (:func:`stl_units`: millimetres unless ``um``).
        shape: ``(ny, nx)`` pixels of the layer.
        pitch: pixel pitch in metres.
        base: base plate thickness in metres. ``None`` reads it from the file: the lowest top
            surface over any pixel is taken as the top of the plate, i.e. the lowest pixel is
            assumed to have height 0 (true for level maps whose level 0 has height 0).
        offset: ``(x, y)`` shift of the part in metres, as given to the writer.

    Returns:
        ``(ny, nx)`` float64 heights in metres above the base plate; row ``i`` along +y,
        column ``j`` along +x. Float32 STL coordinates limit the precision to about
        ``6e-8`` of the part's height (0.1 nm for a 1.5 mm part).

    Raises:
        UserError: missing or corrupt file, a mesh that is not watertight, a part whose
            footprint does not match ``shape`` x ``pitch`` at ``offset``, or pixel centres
            that no top surface covers.
    """
    try:
        grid = Grid(tuple(shape), pitch)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise UserError(f"shape/pitch: {e}") from None
    if base is not None and not (math.isfinite(base) and base > 0):
        raise UserError(f"base: must be a finite thickness > 0 in metres, got {base!r}")
    try:
        ox, oy = (float(v) for v in offset)
    except (TypeError, ValueError):
        raise UserError(f"offset: expected (x, y) in metres, got {offset!r}") from None
    mesh = load_stl(path)
    unit = stl_units(path)
    scale = UNITS_PER_M[unit]
    p = pitch * scale
    xc = (grid.x() + ox) * scale
    yc = (grid.y() + oy) * scale
    ny, nx = grid.shape

    lo, hi = mesh.bounds
    want_lo = np.array([xc[0] - p / 2, yc[0] - p / 2])
    want_hi = np.array([xc[-1] + p / 2, yc[-1] + p / 2])
    tol = 1e-3 * p + 1e-6 * float(np.max(np.abs(np.r_[want_lo, want_hi])))
    if np.any(np.abs(lo[:2] - want_lo) > tol) or np.any(np.abs(hi[:2] - want_hi) > tol):
        raise UserError(
            f"{os.fspath(path)}: STL footprint x {lo[0]:.6g}..{hi[0]:.6g} {unit}, y "
            f"{lo[1]:.6g}..{hi[1]:.6g} {unit} does not match {ny}x{nx} pixels at pitch "
            f"{pitch:.6g} m (x {want_lo[0]:.6g}..{want_hi[0]:.6g} {unit}, y "
            f"{want_lo[1]:.6g}..{want_hi[1]:.6g} {unit})"
        )

    tri = mesh.triangles  # (F, 3, 3) float64, mm
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(nrm, axis=1)
    up = nrm[:, 2] > 0.999 * np.maximum(area2, 1e-300)
    tri = tri[up]
    top = np.full(ny * nx, -np.inf)
    _scan(tri, xc, yc, p, top)
    missing = ~np.isfinite(top)
    if np.any(missing):
        i, j = np.unravel_index(int(np.argmax(missing)), (ny, nx))
        raise UserError(
            f"{os.fspath(path)}: {int(missing.sum())} pixel centres (first ({i}, {j})) lie "
            "under no top surface; not a height-map solid on this grid"
        )
    top = top.reshape(ny, nx) - lo[2]
    base_mm = float(top.min()) if base is None else base * scale
    log.debug("read %s: base %.6g %s, top %.6g..%.6g", path, base_mm, unit, top.min(),
              top.max())
    return (top - base_mm) / scale


def _scan(tri: np.ndarray, xc: np.ndarray, yc: np.ndarray, p: float, out: np.ndarray) -> None:
    """Scan-convert horizontal triangles (mm) onto pixel centres; ``out`` keeps the maximum."""
    ny, nx = yc.size, xc.size
    eps = 1e-6
    y = tri[:, :, 1]
    i_lo = np.clip(np.ceil((y.min(axis=1) - yc[0]) / p - eps), 0, ny).astype(np.int64)
    i_hi = np.clip(np.floor((y.max(axis=1) - yc[0]) / p + eps), -1, ny - 1).astype(np.int64)
    counts = np.maximum(i_hi - i_lo + 1, 0)
    z = tri[:, :, 2].mean(axis=1)
    csum = np.cumsum(counts)
    start = 0
    while start < tri.shape[0]:
        base = csum[start - 1] if start else 0
        stop = int(np.searchsorted(csum, base + _CHUNK, side="right"))
        stop = max(stop, start + 1)
        sl = slice(start, stop)
        c = counts[sl]
        t = np.repeat(np.arange(start, stop), c)
        row = i_lo[t] + (np.arange(t.size) - np.repeat(np.cumsum(c) - c, c))
        yy = yc[row]
        v = tri[t]  # (K, 3, 3)
        xa, ya = v[:, :, 0], v[:, :, 1]
        xb, yb = np.roll(xa, -1, axis=1), np.roll(ya, -1, axis=1)
        dy = yb - ya
        ymin, ymax = np.minimum(ya, yb), np.maximum(ya, yb)
        ok = (dy != 0) & (yy[:, None] >= ymin - eps * p) & (yy[:, None] <= ymax + eps * p)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.clip((yy[:, None] - ya) / dy, 0.0, 1.0)
        xs = xa + frac * (xb - xa)
        xl = np.where(ok, xs, np.inf).min(axis=1)
        xr = np.where(ok, xs, -np.inf).max(axis=1)
        j0 = np.clip(np.ceil((xl - xc[0]) / p - eps), 0, nx).astype(np.int64)
        j1 = np.clip(np.floor((xr - xc[0]) / p + eps), -1, nx - 1).astype(np.int64)
        n = np.maximum(j1 - j0 + 1, 0)
        k = np.repeat(np.arange(t.size), n)
        col = j0[k] + (np.arange(k.size) - np.repeat(np.cumsum(n) - n, n))
        np.maximum.at(out, row[k] * nx + col, z[t[k]])
        start = stop

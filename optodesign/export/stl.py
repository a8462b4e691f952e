"""Watertight STL solids from height maps (one solid per layer), and a spacer frame.

Units: metres in; the mesh and the file are in **millimetres** by default (what slicers
expect of a printed part), or in **micrometres** (``units="um"``: what two-photon printing
software such as Nanoscribe DeScribe expects, so a 100 µm part is not read as 100 mm or
offered a rescale). The unit is written in the 80-byte header (``units: mm`` / ``units: um``),
where :func:`optodesign.verify.stl_reader.stl_units` reads it back, and in the manifest.

The solid of one layer is a base plate from ``z = 0`` to ``z = base`` with, on top of every
pixel ``(i, j)``, a column up to ``z = base + heights[i, j]``. Array row ``i`` runs along
``+y`` and column ``j`` along ``+x``; pixel centres are the design grid's
(:meth:`optodesign.grid.Grid.x`, :meth:`~optodesign.grid.Grid.y`: the centre of pixel
``(ny // 2, nx // 2)`` at 0) plus ``offset``.

How the mesh is built (all vectorised with numpy; no Python loop per pixel):

* **Top faces.** Pixels of one height are merged into rectangles (runs along a row, merged
  across rows when the run repeats exactly). A rectangle keeps only the boundary vertices that
  a neighbouring face uses: pixel corners where heights meet in an L, T, X or pinch pattern
  (a wall ends or turns there) or where another rectangle has a corner. Earcut-style
  triangulation drops such collinear vertices and opens cracks, so each rectangle is
  triangulated as a *double fan*: its boundary is split into two monotone chains from the
  bottom-left to the top-right corner, the first chain is fanned from the first vertex of the
  second and the second from the last vertex of the first. With ``k`` boundary vertices this
  gives ``k - 2`` triangles, none degenerate, and no extra centre vertex.
* **Walls.** Every pixel edge with different heights on its sides carries a vertical wall,
  facing the lower side. Each vertical side of a wall is split at every height that meets on
  that vertical line (the tops of the up to four pixels around the corner), so walls and tops
  share every edge (no T-junction cracks). Consecutive wall edges along a straight step merge
  into one wall. A wall is triangulated like a rectangle whose extra vertices lie on its two
  vertical sides.
* **Pinch corners.** Where the two diagonal pixels at a corner are both higher than the other
  two, four wall faces would share one vertical edge (non-manifold). Between the higher of the
  two low tops and the lower of the two high tops the two high columns would touch along a
  line. The mesher separates them: the vertex at the lower high top is duplicated, and each
  copy is moved by ``eps`` along x and y towards the centre of its high pixel. This carves
  slivers of about ``eps * pitch * dz`` in all from the two high columns (``dz``: the pinched
  height range), so the relative volume error is about ``(eps / pitch) * dz / t`` times the
  fraction of pinched corners (``t``: mean thickness, plate included); a checkerboard, where
  every corner is a pinch, of 0.1 mm steps on 0.4 mm pixels and a 1 mm plate loses 6.5e-6.
  ``eps = max(1e-4 * pitch, 4 float32 ulps of the largest coordinate, 1e-7 mm)`` so the two
  copies stay distinct after the float32 rounding of STL and the vertex merging of readers.
* **Precision.** Top heights are snapped to a 1e-7 mm (0.1 nm) grid and then to float32, so
  two heights that a float32 file cannot tell apart become one level (and stay watertight).

The result is one closed, consistently wound, genus-0 solid: trimesh reports
``is_watertight``, ``is_winding_consistent``, ``is_volume`` and Euler number 2, also after
the written file is read back and vertices are merged by position.

References:
    Triangulation of monotone chains: M. de Berg, O. Cheong, M. van Kreveld, M. Overmars,
    *Computational Geometry*, 3rd ed., ch. 3 (Springer, 2008), doi:10.1007/978-3-540-77974-2.
    Binary STL: 3D Systems, *StereoLithography Interface Specification* (1989).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable

import numpy as np
import trimesh

from ..errors import UserError
from ..fileio import atomic_path
from ..raster import runs

__all__ = [
    "heightmap_mesh",
    "naive_heightmap_mesh",
    "write_stl",
    "spacer_frame",
    "plate_holder",
    "holder_dimensions",
    "STL_HEADER",
    "STL_UNITS",
    "Z_SNAP_MM",
    "stl_header",
]

log = logging.getLogger(__name__)

MM_PER_M = 1e3
#: Top heights are snapped to this grid (mm) before float32 rounding.
Z_SNAP_MM = 1e-7
#: file units per metre of the units an STL can be written in
STL_UNITS = {"mm": 1e3, "um": 1e6}
#: The fixed 80-byte header text of every binary STL written here in mm (no timestamp).
STL_HEADER = b"optodesign binary STL; units: mm"


def stl_header(units: str) -> bytes:
    """The fixed header text of an STL in ``units`` (:data:`STL_UNITS`)."""
    return f"optodesign binary STL; units: {units}".encode("ascii")


def _scale(units: str) -> float:
    if units not in STL_UNITS:
        raise UserError(f"stl units: must be one of {', '.join(STL_UNITS)}, got {units!r}")
    return STL_UNITS[units]

# Corner slots: the four pixels around corner (a, b) of the padded height array T, in cyclic
# order: s0 = T[a, b] (-x, -y), s1 = T[a, b+1] (+x, -y), s2 = T[a+1, b+1] (+x, +y),
# s3 = T[a+1, b] (-x, +y). Corner (a, b) lies at x = (b - nx/2) * pitch, y = (a - ny/2) * pitch.
_SLOT_DIR = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


# ----------------------------------------------------------------------------- validation


def _check_pitch_base(pitch: float, base: float | None) -> tuple[float, float | None]:
    pitch = float(pitch)
    if not (math.isfinite(pitch) and pitch > 0):
        raise UserError(f"pitch: must be a finite length > 0 in metres, got {pitch!r}")
    if base is not None:
        base = float(base)
        if not (math.isfinite(base) and base > 0):
            raise UserError(f"base: must be a finite thickness > 0 in metres, got {base!r}")
    return pitch, base


def _check_heights(heights: np.ndarray) -> np.ndarray:
    h = np.asarray(heights, dtype=np.float64)
    if h.ndim != 2 or min(h.shape) < 1:
        raise UserError(f"heights: expected a non-empty (ny, nx) array, got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise UserError("heights: contains NaN or infinite values")
    if h.min() < 0:
        raise UserError(f"heights: must be >= 0 metres above the base plate, min is {h.min():.6g}")
    return h


def _check_offset(offset: tuple[float, float]) -> tuple[float, float]:
    try:
        ox, oy = (float(v) for v in offset)
    except (TypeError, ValueError):
        raise UserError(f"offset: expected (x, y) in metres, got {offset!r}") from None
    if not (math.isfinite(ox) and math.isfinite(oy)):
        raise UserError(f"offset: must be finite, got {offset!r}")
    return ox, oy


def _snap_mm(z_mm: np.ndarray, scale: float = MM_PER_M) -> np.ndarray:
    """Snap heights (file units, ``scale`` per metre) to the Z_SNAP_MM grid, then to float32
    (returned as float64)."""
    step = Z_SNAP_MM * scale / MM_PER_M
    return (np.round(z_mm / step) * step).astype(np.float32).astype(np.float64)


def _corner_edges(n: int, pitch: float, offset: float, scale: float = MM_PER_M) -> np.ndarray:
    """Pixel-edge coordinates (file units) of an axis with ``n`` pixels, shape ``(n + 1,)``:
    the centre of pixel ``n // 2`` at ``offset`` (:class:`optodesign.grid.Grid`)."""
    return ((np.arange(n + 1) - n // 2 - 0.5) * pitch + offset) * scale


def _pinch_eps(pitch_mm: float, max_abs_mm: float, scale: float = MM_PER_M) -> float:
    ulp = float(np.spacing(np.float32(max_abs_mm)))
    eps = max(1e-4 * pitch_mm, 4.0 * ulp, 1e-7 * scale / MM_PER_M)
    if eps > 0.02 * pitch_mm:
        raise UserError(
            f"pitch: {pitch_mm / scale:.6g} m is too small against coordinates up to "
            f"{max_abs_mm / scale:.6g} m for float32 STL coordinates (move the part nearer "
            "the origin or use fewer pixels)"
        )
    return eps


# ----------------------------------------------------------------------------- helpers


def _ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[r]`` items per owner r: (owner index, position 0..count-1) per item."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(owner.size, dtype=np.int64) - starts[owner]
    return owner, pos


def _rectangles(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge equal-level pixels into rectangles: row runs, merged down the rows while the
    run below has exactly the same columns and level.

    Args:
        levels: ``(ny, nx)`` integer level ids.

    Returns:
        ``rects`` ``(R, 4)`` int64 rows ``(i0, i1, j0, j1)`` (pixel rows ``i0..i1-1``, columns
        ``j0..j1-1``) and ``labels`` ``(ny, nx)`` the rectangle id of every pixel.
    """
    ny, nx = levels.shape
    rows, j0, j1, lev = runs(levels)  # row-major: runs in reading order
    n_run = rows.size
    run_of = np.repeat(np.arange(n_run), j1 - j0).reshape(ny, nx)  # run id of every pixel
    # the run above that holds column j0 continues into this one if it is the same run
    above = np.full(n_run, -1, dtype=np.int64)
    has = rows > 0
    above[has] = run_of[rows[has] - 1, j0[has]]
    ah = above[has]
    cont = np.zeros(n_run, dtype=bool)
    cont[has] = (j0[ah] == j0[has]) & (j1[ah] == j1[has]) & (lev[ah] == lev[has])
    root = np.where(cont, above, np.arange(n_run))
    while True:  # pointer jumping: log2(ny) passes
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    is_root = ~cont
    rect_of_root = np.cumsum(is_root) - 1
    run_rect = rect_of_root[root]
    height = np.bincount(run_rect)
    r0 = np.nonzero(is_root)[0]
    rects = np.stack([rows[r0], rows[r0] + height, j0[r0], j1[r0]], axis=1)
    labels = run_rect[run_of]
    return rects, labels


def _double_fan(
    rects: np.ndarray,
    needed: np.ndarray,
    vertex: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Triangulate axis-aligned rectangles through all their needed boundary corners.

    Args:
        rects: ``(R, 4)`` rows ``(i0, i1, j0, j1)`` in pixels; corners run over
            ``a in i0..i1``, ``b in j0..j1``.
        needed: ``(ny + 1, nx + 1)`` bool, corners that must be boundary vertices (the four
            corners of every rectangle must be True).
        vertex: ``vertex(a, b, slot)`` -> vertex ids, where ``slot`` is a corner slot of a
            pixel of the rectangle at that corner.

    Returns:
        ``(F, 3)`` int64 faces, counter-clockwise seen from +z (x right, y up).
    """
    i0, i1, j0, j1 = rects.T
    h = i1 - i0
    w = j1 - j0

    n = rects.shape[0]

    def seq(parts: list[tuple[np.ndarray, Callable, Callable, int]]):
        # parts: (counts per rect, a(owner, pos), b(owner, pos), slot) segments in chain order;
        # element k of a rect's chain goes to offset[rect] + k, so no sort is needed
        lens = np.zeros(n, dtype=np.int64)
        for counts, *_ in parts:
            lens += counts
        offset = np.cumsum(lens) - lens
        total = int(lens.sum())
        a = np.empty(total, dtype=np.int64)
        b = np.empty(total, dtype=np.int64)
        s = np.empty(total, dtype=np.int64)
        done = np.zeros(n, dtype=np.int64)
        for counts, fa, fb, slot in parts:
            o, p = _ranges(counts)
            pos = offset[o] + done[o] + p
            a[pos] = fa(o, p)
            b[pos] = fb(o, p)
            s[pos] = slot
            done += counts
        owner = np.repeat(np.arange(n), lens)
        keep = needed[a, b]
        return owner[keep], vertex(a[keep], b[keep], s[keep])

    one = np.ones(rects.shape[0], dtype=np.int64)
    # chain A: BL, left side upwards (to TL), top side rightwards (before TR)
    oa, va = seq(
        [
            (one, lambda o, p: i0[o], lambda o, p: j0[o], 2),
            (h, lambda o, p: i0[o] + 1 + p, lambda o, p: j0[o], 1),
            (w - 1, lambda o, p: i1[o], lambda o, p: j0[o] + 1 + p, 0),
        ]
    )
    # chain B: bottom side rightwards (after BL, to BR), right side upwards (to TR)
    ob, vb = seq(
        [
            (w, lambda o, p: i0[o], lambda o, p: j0[o] + 1 + p, 3),
            (h, lambda o, p: i0[o] + 1 + p, lambda o, p: j1[o], 0),
        ]
    )
    first_b = np.searchsorted(ob, np.arange(n), side="left")
    last_a = np.searchsorted(oa, np.arange(n), side="right") - 1
    apex_b = vb[first_b]  # first vertex of chain B (after BL)
    apex_a = va[last_a]  # last vertex of chain A (TL or a top-side vertex)
    same_a = oa[1:] == oa[:-1]
    fan1 = np.stack([va[:-1][same_a], apex_b[oa[:-1][same_a]], va[1:][same_a]], axis=1)
    same_b = ob[1:] == ob[:-1]
    fan2 = np.stack([apex_a[ob[:-1][same_b]], vb[:-1][same_b], vb[1:][same_b]], axis=1)
    # the last triangle of fan 2 ends at TR, which chain B holds; fan 1 starts at BL
    return np.concatenate([fan1, fan2])


# ----------------------------------------------------------------------------- the mesher


def heightmap_mesh(
    heights: np.ndarray,
    *,
    pitch: float,
    base: float,
    offset: tuple[float, float] = (0.0, 0.0),
    units: str = "mm",
) -> trimesh.Trimesh:
    """One watertight solid (mm, or ``units``) for a height map on a base plate.

    Args:
        heights: ``(ny, nx)`` float, metres, >= 0: material thickness above the base plate at
            each pixel. Row ``i`` runs along +y, column ``j`` along +x.
        pitch: pixel pitch in metres (square pixels).
        base: base plate thickness in metres (> 0).
        offset: ``(x, y)`` shift of the whole part in metres; pixel centres are
            ``Grid(shape, pitch).x() + offset[0]`` and ``.y() + offset[1]``.
        units: ``mm`` or ``um`` (:data:`STL_UNITS`): the mesh's coordinates.

    Returns:
        A ``trimesh.Trimesh`` in ``units`` (millimetres by default): plate from ``z = 0``
        to ``z = base``, pixel
        ``(i, j)`` top at ``z = base + heights[i, j]``, outward normals, genus 0. Its volume
        equals ``sum(pitch**2 * (base + heights))`` up to the pinch slivers (module
        docstring) and the 0.1 nm / float32 snapping of top heights.

    Raises:
        UserError: non-finite or negative heights, pitch or base <= 0.
    """
    h = _check_heights(heights)
    pitch, base_f = _check_pitch_base(pitch, base)
    assert base_f is not None
    ox, oy = _check_offset(offset)
    ny, nx = h.shape
    scale = _scale(units)
    pitch_mm = pitch * scale  # file units (mm unless units says otherwise)
    xe = _corner_edges(nx, pitch, ox, scale)
    ye = _corner_edges(ny, pitch, oy, scale)
    eps = _pinch_eps(pitch_mm, max(abs(xe[0]), abs(xe[-1]), abs(ye[0]), abs(ye[-1])), scale)

    tops = _snap_mm((base_f + h) * scale, scale)
    uniq, lev = np.unique(tops, return_inverse=True)
    lev = lev.reshape(ny, nx).astype(np.int64)
    if uniq[0] <= 0:
        raise UserError("base: too thin to be represented in the STL (must be > 1e-10 m)")

    T = np.zeros((ny + 2, nx + 2))
    T[1:-1, 1:-1] = tops
    # S[a, b, s]: height of slot s at corner (a, b); shape (ny+1, nx+1, 4)
    S = np.stack([T[:-1, :-1], T[:-1, 1:], T[1:, 1:], T[1:, :-1]], axis=-1)
    nc = (ny + 1) * (nx + 1)
    ncol = nx + 1

    # canonical slot: the first slot with the same height at that corner
    canon = np.broadcast_to(np.arange(4), S.shape).copy()
    for s in (3, 2, 1):
        for t in range(s - 1, -1, -1):
            same = S[..., t] == S[..., s]
            canon[..., s] = np.where(same, t, canon[..., s])
    cid = np.arange(ny + 1)[:, None] * ncol + np.arange(ncol)[None, :]
    vbase = cid[..., None] * 4 + canon  # vertex id of (corner, slot height)

    # pinch corners: the diagonal pair (0, 2) or (1, 3) both above the other pair
    pA = np.minimum(S[..., 0], S[..., 2]) > np.maximum(S[..., 1], S[..., 3])
    pB = np.minimum(S[..., 1], S[..., 3]) > np.maximum(S[..., 0], S[..., 2])
    pinch = pA | pB
    zhi = np.where(pA, np.minimum(S[..., 0], S[..., 2]), np.minimum(S[..., 1], S[..., 3]))
    pa, pb = np.nonzero(pinch)
    n_pinch = pa.size
    # pinch number p has two vertex copies, id 4 * nc + 2 * p + m, for its high slots:
    # m = 0 for slot 0 or 1, m = 1 for slot 2 or 3
    pinch_index = np.full((ny + 1, nx + 1), -1, dtype=np.int64)
    pinch_index[pa, pb] = np.arange(n_pinch)
    copy_slot0 = np.where(pA[pa, pb], 0, 1)  # high slot of copy m = 0; copy m = 1 is +2
    log.debug(
        "heightmap_mesh: %d x %d pixels, %d levels, %d pinch corners", ny, nx, uniq.size, n_pinch
    )

    # vertex used by the top face of the pixel in slot s at a corner
    vtop = vbase.copy()
    if n_pinch:
        for m in (0, 1):
            k = copy_slot0 + 2 * m
            hit = S[pa, pb, k] == zhi[pa, pb]
            vtop[pa[hit], pb[hit], k[hit]] = 4 * nc + 2 * np.arange(n_pinch)[hit] + m

    # ---- top faces
    rects, labels = _rectangles(lev)
    Lp = np.full((ny + 2, nx + 2), -1, dtype=np.int64)
    Lp[1:-1, 1:-1] = labels
    l0, l1, l2, l3 = Lp[:-1, :-1], Lp[:-1, 1:], Lp[1:, 1:], Lp[1:, :-1]
    plain = (
        ((l0 == l1) & (l1 == l2) & (l2 == l3))
        | ((l0 == l1) & (l2 == l3) & (l0 != l2))
        | ((l0 == l3) & (l1 == l2) & (l0 != l1))
    )
    # A corner needs a vertex unless its four pixels lie in one rectangle or in two split by a
    # straight line (then no face has a corner there: a straight wall step, if any, runs
    # through as one wall). Equal labels imply equal heights, so every corner where heights
    # meet in an L, T, X or pinch pattern is needed, and so is every rectangle corner; the
    # outside ring (label -1, height 0) makes all rim corners where heights change needed.
    needed = ~plain
    top_faces = _double_fan(rects, needed, lambda a, b, s: vtop[a, b, s])

    # ---- bottom face (z = 0), wound to face -z
    ring_slot = np.argmin(S, axis=-1)
    bottom = _double_fan(
        np.array([[0, ny, 0, nx]]),
        needed,
        lambda a, b, s: vbase[a, b, ring_slot[a, b]],
    )[:, ::-1]

    # ---- walls
    wall_faces = _walls(T, S, vbase, needed, pinch_index, zhi, nc)

    faces = np.concatenate([top_faces, bottom, wall_faces]).astype(np.int64)

    # ---- vertices: decode ids, keep only the referenced ones
    n_ids = 4 * nc + 2 * n_pinch
    used = np.zeros(n_ids, dtype=bool)
    used[faces.ravel()] = True
    ids = np.nonzero(used)[0]
    remap = np.cumsum(used) - 1
    faces = remap[faces]
    verts = np.empty((ids.size, 3))
    reg = ids < 4 * nc
    rid = ids[reg]
    c, s = rid // 4, rid % 4
    a, b = c // ncol, c % ncol
    verts[reg, 0] = xe[b]
    verts[reg, 1] = ye[a]
    verts[reg, 2] = S[a, b, s]
    if n_pinch:
        pid = ids[~reg] - 4 * nc
        p, m = pid // 2, pid % 2
        k = copy_slot0[p] + 2 * m
        verts[~reg, 0] = xe[pb[p]] + eps * _SLOT_DIR[k, 0]
        verts[~reg, 1] = ye[pa[p]] + eps * _SLOT_DIR[k, 1]
        verts[~reg, 2] = zhi[pa[p], pb[p]]
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
    mesh.units = units
    return mesh


def _runs(wall: np.ndarray, inner_needed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Maximal runs of walled edges along the last axis that may be one wall.

    Args:
        wall: ``(lines, edges)`` bool, edge carries a wall.
        inner_needed: ``(lines, edges)`` bool, the corner *before* edge ``k`` is needed
            (column 0 is ignored).

    Returns:
        ``(line, first_edge, last_edge)`` int arrays, one entry per run.
    """
    cont = np.zeros_like(wall)
    cont[:, 1:] = wall[:, 1:] & wall[:, :-1] & ~inner_needed[:, 1:]
    line, k = np.nonzero(wall)
    start = ~cont[line, k]
    first = np.nonzero(start)[0]
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1] = line.size - 1
    return line[first], k[first], k[last]


def _walls(
    T: np.ndarray,
    S: np.ndarray,
    vbase: np.ndarray,
    needed: np.ndarray,
    pinch_index: np.ndarray,
    zhi: np.ndarray,
    nc: int,
) -> np.ndarray:
    """Faces of all vertical walls (see module docstring), facing the lower pixel.

    Consecutive wall edges on one line are one wall when the corners between them are not
    needed (a straight step with the same two heights on either side and no rectangle corner).
    """
    ncol = S.shape[1]
    small = 4 * nc + pinch_index.size * 2 < 2**31 - 1  # int32 ids halve the memory traffic
    # distinct heights at every corner, ascending, with their vertex ids, padded with +inf
    Sf = S.reshape(-1, 4)
    order = np.argsort(Sf, axis=1, kind="stable")
    Ds = np.take_along_axis(Sf, order, axis=1)
    Is = np.take_along_axis(vbase.reshape(-1, 4), order, axis=1)
    dup = np.zeros(Ds.shape, dtype=bool)
    dup[:, 1:] = Ds[:, 1:] == Ds[:, :-1]
    order = np.argsort(dup, axis=1, kind="stable")
    D = np.where(
        np.take_along_axis(dup, order, axis=1), np.inf, np.take_along_axis(Ds, order, axis=1)
    )
    DI = np.take_along_axis(Is, order, axis=1).astype(np.int32 if small else np.int64)
    pidx = pinch_index.ravel()
    zhi_f = zhi.ravel()
    parts = []
    # x-neighbours: pixels T[r + 1, q] (left) and T[r + 1, q + 1] (right), edge r in 0..ny-1
    # from corner (r, q) to (r + 1, q), q in 0..nx. A run from edge r0 to r1 goes from
    # P = corner (r0, q) (slots: left 3, right 2) to Q = corner (r1 + 1, q) (left 0, right 1);
    # Q - P = +y, so the (P, Q) wall faces +x: the right pixel is the "front".
    wall_x = T[1:-1, :-1] != T[1:-1, 1:]
    q, r0, r1 = _runs(wall_x.T, needed[:-1, :].T)
    parts.append((r0, q, 2, 3, r1 + 1, q, 1, 0, T[r0 + 1, q + 1], T[r0 + 1, q]))
    # y-neighbours: T[r, q + 1] (lower y) and T[r + 1, q + 1], edge q in 0..nx-1 from corner
    # (r, q) to (r, q + 1), r in 0..ny. A run from q0 to q1 goes from P = corner (r, q0)
    # (lower 1, upper 2) to Q = corner (r, q1 + 1) (lower 0, upper 3); Q - P = +x, so the
    # (P, Q) wall faces -y: the lower-y pixel is the "front".
    wall_y = T[:-1, 1:-1] != T[1:, 1:-1]
    r, q0, q1 = _runs(wall_y, needed[:, :-1])
    parts.append((r, q0, 1, 2, r, q1 + 1, 0, 3, T[r, q0 + 1], T[r + 1, q0 + 1]))

    out = []
    # tuples: corner P (a, b, front slot, back slot), corner Q (same), front and back heights
    for aP, bP, fP, bkP, aQ, bQ, fQ, bkQ, z_front, z_back in parts:
        # "front" is the side the (P, Q) wall faces; if the front pixel is the higher one,
        # swap P and Q so the wall faces the lower pixel
        swap = z_front > z_back
        lo = np.minimum(z_front, z_back)
        hi = np.maximum(z_front, z_back)
        # slot of the high pixel at P and at Q
        hiP = np.where(swap, fP, bkP)
        hiQ = np.where(swap, fQ, bkQ)
        sideP, nP = _wall_side(aP * ncol + bP, hiP, lo, hi, D, DI, pidx, zhi_f, nc)
        sideQ, nQ = _wall_side(aQ * ncol + bQ, hiQ, lo, hi, D, DI, pidx, zhi_f, nc)
        L = np.where(swap[:, None], sideQ, sideP)
        R = np.where(swap[:, None], sideP, sideQ)
        nL = np.where(swap, nQ, nP)
        nR = np.where(swap, nP, nQ)
        topL = np.take_along_axis(L, (nL - 1)[:, None], axis=1)
        # fan 1: (L[k], R[0], L[k + 1]) for k < nL - 1; fan 2: (top L, R[k], R[k + 1])
        tri = np.empty((lo.size, 6, 3), dtype=L.dtype)
        tri[:, :3, 0] = L[:, :3]
        tri[:, :3, 1] = R[:, :1]
        tri[:, :3, 2] = L[:, 1:]
        tri[:, 3:, 0] = topL
        tri[:, 3:, 1] = R[:, :3]
        tri[:, 3:, 2] = R[:, 1:]
        k = np.arange(3)
        keep = np.concatenate([k < (nL - 1)[:, None], k < (nR - 1)[:, None]], axis=1)
        out.append(tri[keep])
    return np.concatenate(out)


def _wall_side(
    c: np.ndarray,
    hi_slot: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    D: np.ndarray,
    DI: np.ndarray,
    pinch_index: np.ndarray,
    zhi: np.ndarray,
    nc: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids up one vertical side of walls, at every corner height in ``[lo, hi]``.

    Args:
        c: ``(W,)`` flat corner index of this side of each wall.
        hi_slot: ``(W,)`` corner slot of the wall's higher pixel.
        lo, hi: ``(W,)`` bottom and top of each wall (mm).
        D, DI: ``(corners, 4)`` distinct heights at each corner, ascending, padded with +inf,
            and their vertex ids.
        pinch_index, zhi: flat per-corner pinch number (-1: none) and lower high top.

    Returns:
        ``(ids (W, 4) ascending in height, padded; count (W,))``.
    """
    d = D[c]
    first = (d < lo[:, None]).sum(axis=1)
    count = (d <= hi[:, None]).sum(axis=1) - first
    cols = np.minimum(first[:, None] + np.arange(4), 3)
    ids = np.take_along_axis(DI[c], cols, axis=1)
    pidx = pinch_index[c]
    is_p = pidx >= 0
    if np.any(is_p):
        # at a pinch corner the vertex at the lower high top is the copy of this wall's high
        # pixel: copy m = 0 belongs to slot 0 or 1, m = 1 to slot 2 or 3
        w = np.nonzero(is_p)[0]
        z = np.take_along_axis(d[w], cols[w], axis=1)
        copy_id = (4 * nc + 2 * pidx[w] + (hi_slot[w] >= 2)).astype(ids.dtype)
        ids[w] = np.where(z == zhi[c[w]][:, None], copy_id[:, None], ids[w])
    return ids, count


# ----------------------------------------------------------------------------- baseline


def naive_heightmap_mesh(heights: np.ndarray, *, pitch: float, base: float) -> trimesh.Trimesh:
    """The baseline: two triangles per pixel top, two per wall pixel edge, unmerged (mm).

    Each pixel's top is its own quad, each pixel edge with different heights its own wall quad
    from one pixel's top to the other's (outer walls from ``z = 0``), and the bottom is one
    quad. This is what a straightforward height-map-to-STL converter writes; it is *not*
    watertight when more than two heights meet at a corner (T-junctions), and it is kept only
    to measure :func:`heightmap_mesh` against (``benchmarks/export_stl.py``).

    Args:
        heights: ``(ny, nx)`` float, metres, >= 0 above the base plate.
        pitch: pixel pitch in metres.
        base: base plate thickness in metres.
    """
    h = _check_heights(heights)
    pitch, base_f = _check_pitch_base(pitch, base)
    assert base_f is not None
    ny, nx = h.shape
    xe = _corner_edges(nx, pitch, 0.0)
    ye = _corner_edges(ny, pitch, 0.0)
    tops = (base_f + h) * MM_PER_M
    # per-pixel corner vertices: id = 4 * (i * nx + j) + k, k = 0: (x0, y0), 1: (x1, y0),
    # 2: (x1, y1), 3: (x0, y1)
    ii, jj = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    vx = np.stack([xe[jj], xe[jj + 1], xe[jj + 1], xe[jj]], axis=1)
    vy = np.stack([ye[ii], ye[ii], ye[ii + 1], ye[ii + 1]], axis=1)
    vz = np.repeat(tops.ravel()[:, None], 4, axis=1)
    verts = np.stack([vx.ravel(), vy.ravel(), vz.ravel()], axis=1)
    nb = verts.shape[0]
    corners = np.array(
        [[xe[0], ye[0], 0.0], [xe[-1], ye[0], 0.0], [xe[-1], ye[-1], 0.0], [xe[0], ye[-1], 0.0]]
    )
    # bottom boundary vertices at z = 0 (outer walls), one per pixel corner on the rim
    verts = np.concatenate([verts, corners])
    pid = (np.arange(ny * nx) * 4)[:, None]
    faces = [np.concatenate([pid + [0, 1, 2], pid + [0, 2, 3]])]
    faces.append(np.array([[nb + 0, nb + 2, nb + 1], [nb + 0, nb + 3, nb + 2]]))
    P = (np.arange(ny)[:, None] * nx + np.arange(nx)[None, :]) * 4
    # interior x-walls between (i, j) and (i, j + 1): facing the lower pixel
    dif = tops[:, :-1] != tops[:, 1:]
    pl, pr = P[:, :-1][dif], P[:, 1:][dif]
    lq = np.stack([pl + 1, pl + 2, pr + 3, pr + 0], axis=1)  # (x1,y0,hl) (x1,y1,hl) ...
    faces.append(_quads(lq, tops[:, :-1][dif] < tops[:, 1:][dif]))
    dif = tops[:-1, :] != tops[1:, :]
    pd, pu = P[:-1, :][dif], P[1:, :][dif]
    lq = np.stack([pd + 3, pd + 2, pu + 1, pu + 0], axis=1)
    faces.append(_quads(lq, tops[:-1, :][dif] > tops[1:, :][dif]))
    # outer walls: new bottom vertices per rim edge (unmerged, like the tops); each rim edge
    # (va -> vb) runs counter-clockwise seen from +z, so the wall faces outwards
    rim_v, rim_f = [], []
    n0 = verts.shape[0]
    for va, vb in (
        (P[0, :] + 0, P[0, :] + 1),  # y = min
        (P[:, -1] + 1, P[:, -1] + 2),  # x = max
        (P[-1, :] + 2, P[-1, :] + 3),  # y = max
        (P[:, 0] + 3, P[:, 0] + 0),  # x = min
    ):
        bot = np.stack([verts[va], verts[vb]], axis=1)
        bot[..., 2] = 0.0
        rim_v.append(bot.reshape(-1, 3))
        ba = n0 + 2 * np.arange(va.size)
        rim_f.append(np.stack([ba, ba + 1, vb], axis=1))
        rim_f.append(np.stack([ba, vb, va], axis=1))
        n0 += 2 * va.size
    verts = np.concatenate([verts] + rim_v)
    faces.extend(rim_f)
    mesh = trimesh.Trimesh(vertices=verts, faces=np.concatenate(faces), process=False)
    mesh.units = "mm"
    return mesh


def _quads(q: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Two triangles per quad ``(v0, v1, v2, v3)``, reversed where ``flip``."""
    q = np.where(flip[:, None], q[:, ::-1], q)
    return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])


# ----------------------------------------------------------------------------- files


def write_stl(mesh: trimesh.Trimesh, path: str | os.PathLike[str]) -> None:
    """Write ``mesh`` as a binary STL (coordinates as they are, in ``mesh.units``: mm unless
    it says ``um``), atomically.

    The 80-byte header is the fixed text :func:`stl_header` of the mesh's units (no
    timestamp; :data:`STL_HEADER` for mm), so the same mesh
    always gives the same bytes. The file is either the complete new one or not there.

    Raises:
        UserError: the path cannot be written (missing permission, a file where a folder
            should be, a folder in the way).
    """
    from trimesh.exchange.stl import export_stl

    if len(mesh.faces) == 0:
        raise UserError(f"{os.fspath(path)}: refusing to write an STL with no triangles")
    data = export_stl(mesh)
    units = mesh.units if mesh.units in STL_UNITS else "mm"
    data = stl_header(units).ljust(80, b"\0") + data[80:]
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise UserError(
            f"cannot write STL {os.fspath(path)}: {e.strerror or e.__class__.__name__}"
        ) from e
    log.debug("wrote %s: %d triangles, %d bytes", path, len(mesh.faces), len(data))


def _ring_solid(loops: list[tuple[float, float, float]], units: str,
                centre: tuple[float, float] = (0.0, 0.0)) -> trimesh.Trimesh:
    """A closed ring around the z axis swept from a cross-section: ``loops`` are axis-aligned
    rectangles ``(half_x, half_y, z)`` (file units) visited around the cross-section polygon;
    consecutive loops (and the last and first) are joined by four quads. Watertight, genus 1,
    outward normals."""
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    verts = np.concatenate([np.c_[square * [hx, hy], np.full(4, z)] for hx, hy, z in loops])
    verts[:, 0] += centre[0]
    verts[:, 1] += centre[1]
    faces = []
    n_loops = len(loops)
    for i in range(n_loops):
        a, b = 4 * i, 4 * ((i + 1) % n_loops)
        for k in range(4):
            n = (k + 1) % 4
            faces += [[a + k, a + n, b + n], [a + k, b + n, b + k]]
    faces_a = np.array(faces)
    tri = verts[faces_a]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    if signed < 0:
        faces_a = faces_a[:, ::-1]
    mesh = trimesh.Trimesh(vertices=verts, faces=faces_a, process=False)
    mesh.units = units
    return mesh


def _widths(name: str, v: object) -> tuple[float, float]:
    try:
        wx, wy = (float(t) for t in v)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise UserError(f"{name}: expected (width_x, width_y) in metres, got {v!r}") from None
    if not (math.isfinite(wx) and math.isfinite(wy) and wx > 0 and wy > 0):
        raise UserError(f"{name}: widths must be finite and > 0 metres, got {v!r}")
    return wx, wy


def _length(name: str, v: float) -> float:
    v = float(v)
    if not (math.isfinite(v) and v > 0):
        raise UserError(f"{name}: must be a finite length > 0 in metres, got {v!r}")
    return v


def spacer_frame(
    *, outer: tuple[float, float], inner: tuple[float, float], height: float,
    units: str = "mm",
) -> trimesh.Trimesh:
    """A rectangular ring (mm, or ``units``): a plain frame ``height`` tall.

    Centred on the optical axis like :func:`heightmap_mesh`, from ``z = 0`` to ``z = height``;
    watertight, genus 1 (Euler number 0), 32 triangles. It cannot hold a plate whose size is
    the aperture (nothing to rest on): :func:`plate_holder` is the holder with a ledge that
    ``optodesign export --spacer`` writes.

    Args:
        outer: ``(width_x, width_y)`` outer size in metres.
        inner: ``(width_x, width_y)`` size of the clear aperture in metres, smaller than outer.
        height: ring height in metres (> 0).

    Raises:
        UserError: sizes not positive, or the aperture not inside the outer size.
    """
    (ox, oy), (ix, iy) = _widths("outer", outer), _widths("inner", inner)
    height = _length("height", height)
    if not (ix < ox and iy < oy):
        raise UserError(
            f"inner: aperture {ix:.6g} x {iy:.6g} m must be smaller than outer "
            f"{ox:.6g} x {oy:.6g} m in both directions"
        )
    f = _scale(units)
    ox, oy, ix, iy = (v * f / 2 for v in (ox, oy, ix, iy))  # half widths, file units
    hz = height * f
    return _ring_solid([(ox, oy, 0.0), (ox, oy, hz), (ix, iy, hz), (ix, iy, 0.0)], units)


def holder_dimensions(plate: tuple[float, float], *, pitch: float) -> dict[str, float]:
    """Default holder dimensions for plates of ``plate`` (metres) made of ``pitch`` pixels:
    ``clearance`` (gap around a plate in its pocket: a quarter pixel), ``ledge`` (how far the
    ledge reaches under the plate: one pixel, at least 2 % of the plate), ``ledge_thickness``
    (two pixels, at least 5 % of the plate) and ``rim`` (the wall: 10 % of the plate, at least
    five pixels)."""
    w = max(plate)
    return {"clearance": 0.25 * pitch, "ledge": max(pitch, 0.02 * w),
            "ledge_thickness": max(2 * pitch, 0.05 * w), "rim": max(0.1 * w, 5 * pitch)}


def plate_holder(
    *, plate: tuple[float, float], height: float, plate_thickness: float,
    clearance: float, ledge: float, ledge_thickness: float, rim: float,
    centre: tuple[float, float] = (0.0, 0.0), units: str = "mm",
) -> trimesh.Trimesh:
    """A printable holder that keeps two plates ``height`` apart, base bottom to base bottom.

    Holders stack: holder ``k-(k+1)`` stands on the table (``k = 1``) or on the top of holder
    ``(k-1)-k``. Its **pocket** (open at the bottom, ``plate + 2 clearance`` wide,
    ``height - ledge_thickness`` tall) surrounds plate ``k``, which lies on the table or on
    the ledge below; its **ledge** at the top (opening ``plate - 2 ledge``) carries plate
    ``k+1``, base down, at ``z = height``. Plates of ``plate_thickness`` (base plate and relief)
    must fit under the ledge: ``height >= plate_thickness + ledge_thickness``. Cross-section::

        z = height        ______                ______
                         |      |___ ledge ____|      |
                         | wall |   pocket     | wall |
        z = 0            |______|  (plate k)   |______|

    Args:
        plate: ``(width_x, width_y)`` of a plate, metres.
        height: design distance between the two plates, metres.
        plate_thickness: thickness of the plate held in the pocket, metres.
        clearance, ledge, ledge_thickness, rim: metres (:func:`holder_dimensions`).
        centre: ``(x, y)`` of the plates' footprint centre, metres.
        units: ``mm`` or ``um``.

    Returns:
        A watertight genus-1 solid (48 triangles) from ``z = 0`` to ``z = height``.

    Raises:
        UserError: a size not positive, a ledge wider than half the plate, or plates that
            do not fit under the ledge (``height`` too small).
    """
    wx, wy = _widths("plate", plate)
    height = _length("height", height)
    t = _length("plate_thickness", plate_thickness)
    c, lw, lt, rim = (_length(n, v) for n, v in (("clearance", clearance), ("ledge", ledge),
                                                 ("ledge_thickness", ledge_thickness),
                                                 ("rim", rim)))
    if not 2 * lw < min(wx, wy):
        raise UserError(f"ledge: {lw:.6g} m on each side leaves no opening in a "
                        f"{wx:.6g} x {wy:.6g} m plate")
    if height < t + lt:
        raise UserError(f"height: the plates are {height:.6g} m apart, less than a plate "
                        f"({t:.6g} m) and the ledge ({lt:.6g} m) above it")
    f = _scale(units)
    px, py = (wx / 2 + c) * f, (wy / 2 + c) * f          # pocket half widths
    ox, oy = px + rim * f, py + rim * f                  # outer
    ix, iy = (wx / 2 - lw) * f, (wy / 2 - lw) * f        # ledge opening
    hz, zl = height * f, (height - lt) * f
    return _ring_solid([(ox, oy, 0.0), (ox, oy, hz), (ix, iy, hz), (ix, iy, zl),
                        (px, py, zl), (px, py, 0.0)], units,
                       centre=(centre[0] * f, centre[1] * f))

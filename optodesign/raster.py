"""Raster helpers on integer label maps and height maps (pure numpy).

One rule for "runs": a run is a maximal stretch of equal labels along a row (or a column),
cut by the array edge, so a run touching the edge counts with its length inside the array.
:func:`narrow_runs` may let one ``background`` label continue outside the array (a mask
shop's rule for the unexposed field). The design-rule primitives (narrow runs, isolated
pixels, diagonal necks, steep walls) live here once: :mod:`optodesign.fabrules` applies them for
the DRC (:mod:`optodesign.export.drc`), training and refinement; the layout and STL writers
use the runs.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["decimate_cells", "runs", "narrow_runs", "isolated_pixels", "diagonal_necks",
           "aspect_ratio_runs", "dilate_heights"]


def runs(labels: np.ndarray, *, axis: int = 1) -> tuple[np.ndarray, ...]:
    """Maximal runs of equal labels along ``axis`` (1: rows, 0: columns), in reading order.

    Args:
        labels: ``(n_lines, n)`` integer map (``axis=1``), or ``(n, n_lines)`` (``axis=0``).

    Returns:
        ``(line, start, stop, label)`` int64 arrays; ``stop`` is exclusive. For ``axis=1``
        ``line`` is the row and start/stop are columns; for ``axis=0`` the reverse. The runs
        of each line cover it exactly, in order.
    """
    lab = np.asarray(labels)
    if axis == 0:
        lab = lab.T
    n_lines, n = lab.shape
    b = np.ones((n_lines, n + 1), dtype=bool)
    b[:, 1:n] = lab[:, 1:] != lab[:, :-1]
    ll, cc = np.nonzero(b)
    same = ll[1:] == ll[:-1]
    line = ll[:-1][same].astype(np.int64)
    start = cc[:-1][same].astype(np.int64)
    stop = cc[1:][same].astype(np.int64)
    return line, start, stop, lab[line, start].astype(np.int64)


def narrow_runs(labels: np.ndarray, n_min: int, *, background: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs narrower than ``n_min`` pixels along rows and columns.

    Args:
        labels: integer ``(ny, nx)`` map.
        n_min: smallest allowed run, pixels (<= 1: nothing is narrow).
        background: a label that continues outside the array (its runs touching the edge are
            not counted).

    Returns:
        ``(rows, cols, widths)`` of the first pixel of each narrow run (row runs, then
        column runs).
    """
    rows, cols, widths = [], [], []
    if n_min <= 1:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e
    n_along = {1: labels.shape[1], 0: labels.shape[0]}
    for axis in (1, 0):
        line, start, stop, lab = runs(labels, axis=axis)
        width = stop - start
        bad = width < n_min
        if background is not None:
            edge = (start == 0) | (stop == n_along[axis])
            bad &= ~(edge & (lab == background))
        if axis == 1:
            rows.append(line[bad])
            cols.append(start[bad])
        else:
            rows.append(start[bad])
            cols.append(line[bad])
        widths.append(width[bad])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(widths)


def isolated_pixels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose 4 neighbours (inside the array) all have another label; ``(rows, cols)``.

    A pixel with no neighbour of its level is an island one pixel wide. Pixels on the edge
    need only their in-array neighbours to differ.
    """
    lab = np.asarray(labels)
    iso = np.ones(lab.shape, dtype=bool)
    iso[1:, :] &= lab[1:, :] != lab[:-1, :]
    iso[:-1, :] &= lab[:-1, :] != lab[1:, :]
    iso[:, 1:] &= lab[:, 1:] != lab[:, :-1]
    iso[:, :-1] &= lab[:, :-1] != lab[:, 1:]
    if lab.size == 1:
        iso[:] = False
    r, c = np.nonzero(iso)
    return r.astype(np.int64), c.astype(np.int64)


def diagonal_necks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corner-only contacts: in a 2×2 window ``[[a, b], [c, d]]``, a diagonal pair of one
    label (``a == d`` or ``b == c``) whose two other pixels both have another label.

    Returns:
        ``(rows, cols, label)``: the shared corner is the lower-left corner of pixel
        ``(rows, cols)`` (i.e. between pixels ``(r-1, c-1)``, ``(r-1, c)``, ``(r, c-1)``,
        ``(r, c)``), and the label that necks there.
    """
    lab = np.asarray(labels)
    a, b = lab[:-1, :-1], lab[:-1, 1:]
    c, d = lab[1:, :-1], lab[1:, 1:]
    main = (a == d) & (b != a) & (c != a)  # a-d touch only at the corner
    anti = (b == c) & (a != b) & (d != b)  # b-c touch only at the corner
    rows, cols, labs = [], [], []
    for m, src in ((main, a), (anti, b)):
        r, cc = np.nonzero(m)
        rows.append(r + 1)
        cols.append(cc + 1)
        labs.append(src[r, cc])
    return (np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64),
            np.concatenate(labs).astype(np.int64))


def aspect_ratio_runs(heights: np.ndarray, labels: np.ndarray, *, pitch: float,
                      max_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walls and trenches steeper than ``max_ratio`` (height / width).

    Along rows and columns, every run of one label with neighbours on both sides has a wall
    height ``h − max(h_left, h_right)`` (when > 0) or a trench depth
    ``min(h_left, h_right) − h`` (when > 0); its ratio to the run width ``w·pitch`` is checked.

    Returns:
        ``(rows, cols, ratios)`` of the first pixel of each violating run.
    """
    rows, cols, ratios = [], [], []
    h_map = np.asarray(heights, dtype=np.float64)
    if not math.isfinite(max_ratio):
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0)
    for axis in (1, 0):
        h = h_map if axis == 1 else h_map.T
        line, start, stop, _ = runs(labels, axis=axis)
        inner = (start > 0) & (stop < h.shape[1])
        line, start, stop = line[inner], start[inner], stop[inner]
        hc = h[line, start]
        hl = h[line, start - 1]
        hr = h[line, stop]
        wall = hc - np.maximum(hl, hr)
        trench = np.minimum(hl, hr) - hc
        rel = np.maximum(np.maximum(wall, trench), 0.0) / ((stop - start) * pitch)
        bad = rel > max_ratio * (1 + 1e-9)
        if axis == 1:
            rows.append(line[bad])
            cols.append(start[bad])
        else:
            rows.append(start[bad])
            cols.append(line[bad])
        ratios.append(rel[bad])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(ratios)


def dilate_heights(h: np.ndarray, *, bias: float, pitch: float, oversample: int) -> np.ndarray:
    """Line-width bias on an oversampled height map.

    Args:
        h: ``(ny, nx)`` heights, metres.
        bias: metres per edge; > 0 grows raised regions (grayscale dilation), < 0 shrinks
            them (erosion). Rounded to the sub-pixel ``pitch / oversample``.
        pitch: metres. oversample: sub-pixels per pixel per axis.

    Returns:
        ``(ny·M, nx·M)`` heights on the sub-pixel grid (``M = oversample``); outside the
        array the edge pixels continue (no artificial edge).
    """
    from scipy import ndimage

    m = int(oversample)
    fine = np.repeat(np.repeat(h, m, axis=0), m, axis=1)
    r = int(round(abs(bias) * m / pitch))
    if r == 0:
        return fine
    size = (2 * r + 1, 2 * r + 1)
    if bias > 0:
        return ndimage.grey_dilation(fine, size=size, mode="nearest")
    return ndimage.grey_erosion(fine, size=size, mode="nearest")


def decimate_cells(a: np.ndarray, q: int) -> np.ndarray:
    """A drawing of flat-topped cells ``(..., Y, X)`` on ``q × q`` times finer samples, as
    the samples of a ``q`` times coarser drawing with the same band-limited content.

    The fine cells' exact spectrum (``sinc`` of each cell) is kept inside the coarse grid's
    Nyquist zone and divided by the coarse cells' ``sinc`` (the coarse drawing is read as
    cells, :func:`optodesign.optics.cells.cell_band_limit`), then sampled at the coarse cells'
    centres; the window is zero-padded twice (opaque outside). A drawing whose edges lie on
    the coarse grid comes back as its coarse drawing; an edge between coarse samples (a
    sub-sample line-width bias) keeps its position, which a covered-fraction mix loses.
    """
    q = int(q)
    *lead, Y, X = a.shape
    if Y % q or X % q:
        raise ValueError(f"decimate_cells: {q} does not divide {Y}x{X}")
    ly, lx = 2 * Y, 2 * X
    spec = np.fft.fft2(a, s=(ly, lx))
    out_axes = []
    for n in (ly, lx):
        nu = np.fft.fftfreq(n)  # cycles per fine sample
        k = np.rint(np.fft.fftfreq(n) * n).astype(np.int64)
        zone = (k >= -(n // q) // 2) & (k < (n // q) - (n // q) // 2)  # the coarse bins
        factor = np.where(zone, np.sinc(nu) / np.where(zone, np.sinc(nu * q), 1)
                          * np.exp(1j * np.pi * nu * (q - 1)), 0)
        out_axes.append((k % (n // q), zone, factor))
    (iy, zy, fy), (ix, zx, fx) = out_axes
    spec = spec * fy[:, None] * fx[None, :]
    coarse = np.zeros((*lead, ly // q, lx // q), dtype=np.complex128)
    sub = spec[..., zy, :][..., zx]
    coarse[..., iy[zy][:, None], ix[zx][None, :]] = sub
    return np.fft.ifft2(coarse)[..., :Y // q, :X // q] / (q * q)

"""Raster helpers on integer label maps and height maps (pure numpy).

One rule for "runs": a run is a maximal stretch of equal labels along a row (or a column),
cut by the array edge, so a run touching the edge counts with its length inside the array.
:func:`narrow_runs` may let one ``background`` label continue outside the array (a mask
shop's rule for the unexposed field). The DRC (:mod:`optodesign.export.drc`), the layout and
STL writers and refine's minimum-feature rule (:mod:`optodesign.refine.solvers`) all use it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["runs", "narrow_runs", "dilate_heights"]


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

"""The design rules of refinement: no move may create a run of one level shorter than
``min_feature`` pixels along x or y (the DRC's rule for a level map,
:func:`optodesign.raster.narrow_runs`), and, with a process's rules
(:class:`optodesign.fabrules.Deck`, the DRC's own implementation), no move may add a violation
of any of them: a DRC-clean design stays clean."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..fabrules import Deck
from ..raster import narrow_runs, runs

__all__ = ["satisfies_min_feature", "change_allowed", "neighbour_pairs"]


def satisfies_min_feature(levels: np.ndarray, min_feature: int) -> bool:
    """Every run of one level along rows (x) and columns (y) is at least ``min_feature`` px.

    The DRC's rule for a level map (:func:`optodesign.raster.narrow_runs` without a
    background): runs touching the array edge count with their length inside the array.

    Args:
        levels: integer ``(ny, nx)`` or ``(K, ny, nx)`` level maps.
        min_feature: smallest allowed run, pixels (<= 1: always satisfied).
    """
    lv = np.asarray(levels)
    if lv.ndim < 2:
        raise UserError(f"levels: expected (ny, nx) or (K, ny, nx), got shape {lv.shape}")
    if min_feature <= 1:
        return True
    return all(narrow_runs(m, min_feature)[0].size == 0
               for m in lv.reshape(-1, *lv.shape[-2:]))


def _runs(line: np.ndarray) -> set[tuple[int, int, int]]:
    """The maximal runs ``(start, stop, level)`` of a 1-D line (:func:`optodesign.raster.runs`)."""
    if line.size == 0:
        return set()
    _, start, stop, label = runs(line[None, :])
    return set(zip(start.tolist(), stop.tolist(), label.tolist(), strict=True))


def _line_creates_short(old: np.ndarray, pos: np.ndarray, vals: np.ndarray, mf: int) -> bool:
    """Would setting ``old[pos] = vals`` create a run shorter than ``mf`` in this 1-D line?

    Only a window of ``mf`` pixels around the changes is examined: a changed run reaching the
    window's inner edge is at least ``mf`` long, and runs outside it do not change.
    """
    n = old.size
    w0, w1 = max(0, int(pos.min()) - mf), min(n, int(pos.max()) + mf + 1)
    o = old[w0:w1]
    new = o.copy()
    new[pos - w0] = vals
    return any(b - a < mf for a, b, _ in _runs(new) - _runs(o))


def change_allowed(levels: np.ndarray, ys: np.ndarray, xs: np.ndarray, new: np.ndarray | int,
                   min_feature: int, deck: Deck | None = None) -> bool:
    """True when setting ``levels[ys, xs] = new`` creates no run shorter than ``min_feature``.

    A run is created when it differs (start, stop or level) from every run before the change,
    along a row or a column through a changed pixel. Runs that were already short and are not
    touched stay (the rule never makes a design worse; it does not repair it).

    Args:
        levels: integer ``(ny, nx)`` level map of one layer (not modified).
        ys, xs: int ``(S,)`` distinct pixel coordinates.
        new: new level per pixel (``(S,)`` or a scalar).
        min_feature: pixels; <= 1 allows everything.
        deck: a process's rules for this layer: the change must also add no violation of
            them (:meth:`optodesign.fabrules.Deck.keeps`).
    """
    if deck is not None and not deck.keeps(levels, ys, xs, new):
        return False
    if min_feature <= 1:
        return True
    ys = np.asarray(ys, dtype=np.int64).ravel()
    xs = np.asarray(xs, dtype=np.int64).ravel()
    vals = np.broadcast_to(np.asarray(new, dtype=levels.dtype), ys.shape)
    for y in np.unique(ys):
        sel = ys == y
        if _line_creates_short(levels[y], xs[sel], vals[sel], min_feature):
            return False
    for x in np.unique(xs):
        sel = xs == x
        if _line_creates_short(levels[:, x], ys[sel], vals[sel], min_feature):
            return False
    return True


def neighbour_pairs(levels: np.ndarray, corners: np.ndarray, fixed: np.ndarray,
                    allowed: np.ndarray, min_feature: int, deck: Deck
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs a rule-keeping search tries besides single pixels: each corner ``(y, x)`` with
    the pixel right of it and the one below it (both free), set to one allowed level that
    neither has, when :func:`change_allowed` allows it.

    Under a process's rules a single changed pixel is often an island or a corner contact the
    rules refuse, where two side by side are not (on a DRC-clean 64² hologram of
    ``fused-silica-etch4``, 29 % of single changes keep the rules, 58 % of pairs), so a search
    by single changes stalls early (docs/refine.md).

    Returns:
        ``(owner (M,), pixels (M, 2), new (M, 2))``: the index of each pair's corner in
        ``corners``, flat pixel indices ``y * nx + x`` and levels.
    """
    ny, nx = levels.shape
    owners, pixs, news = [], [], []
    for i, (y, x) in enumerate(np.asarray(corners).tolist()):
        if fixed[y, x]:
            continue
        for y1, x1 in ((y, x + 1), (y + 1, x)):
            if y1 >= ny or x1 >= nx or fixed[y1, x1]:
                continue
            ys, xs = np.array([y, y1]), np.array([x, x1])
            for v in allowed.tolist():
                # a pair with one pixel at v already is a single change
                if (levels[ys, xs] == v).any() or not change_allowed(levels, ys, xs, v,
                                                                     min_feature, deck):
                    continue
                owners.append(i)
                pixs.append((y * nx + x, y1 * nx + x1))
                news.append((v, v))
    return (np.asarray(owners, dtype=np.int64),
            np.asarray(pixs, dtype=np.int64).reshape(-1, 2),
            np.asarray(news, dtype=np.int64).reshape(-1, 2))

"""Design rules of a process on level maps: the one implementation that checks them (the DRC,
:mod:`optodesign.export.drc`), keeps a refinement inside them (:mod:`optodesign.refine`) and
makes a trained design satisfy them (training with ``[fabrication] process``).

A :class:`Deck` is a process's rules for one layer (its pitch and level table): the raster rules
of :mod:`optodesign.raster` on the label maps the process draws (the level map, or each binary
mask of a multi-mask etch), and the rules a pillar process decides per level.

:meth:`Deck.legalize` turns any level map into one that passes every raster rule that is not
``ignore`` (errors *and* warnings): local repairs that change few pixels, then, if any violation
survives, the running-bond super-pixel layout of :func:`brick_layout`, which satisfies every
raster rule by construction (see its docstring for the proof).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .raster import aspect_ratio_runs, diagonal_necks, isolated_pixels, narrow_runs

__all__ = ["Deck", "brick_layout", "brick_size"]


@dataclass(frozen=True)
class Deck:
    """A process's design rules for one layer.

    Attributes:
        structure: the process's :class:`~optodesign.process.structure.Structure` (its
            ``rule_maps``: which label maps the raster rules check).
        rules: the process's :class:`~optodesign.process.spec.Rules`.
        pitch: metres. level_table: complex ``(L,)``.
        heights: ``(L,)`` relief height of each level (aspect ratio), metres.
        n_min: the minimum feature in pixels (``ceil(min_feature / pitch)``, >= 1).
        bad_levels: levels a per-level rule refuses (a pillar below the minimum feature).
        process: the process name (for messages).
    """

    structure: Any
    rules: Any
    pitch: float
    level_table: np.ndarray
    heights: np.ndarray
    n_min: int
    bad_levels: np.ndarray
    process: str = ""

    @classmethod
    def of(cls, process: Any, *, pitch: float, level_table: np.ndarray, layer: int = 1) -> Deck:
        """The deck of ``process`` (a :class:`~optodesign.process.Process`) at ``pitch`` for a
        layer with ``level_table``."""
        table = np.asarray(level_table, dtype=np.complex128)
        structure, rules = process.structure, process.rules
        failures = structure.level_rule_failures(table, rules, layer=layer)
        bad = (np.unique(np.concatenate([f.bad_levels for f in failures])).astype(np.int64)
               if failures else np.zeros(0, dtype=np.int64))
        return cls(structure=structure, rules=rules, pitch=float(pitch), level_table=table,
                   heights=np.asarray(structure.level_values(table), dtype=np.float64),
                   n_min=max(1, math.ceil(rules.min_feature / pitch - 1e-9)),
                   bad_levels=bad, process=getattr(process, "name", ""))

    # ------------------------------------------------------------------ checking
    @property
    def n_levels(self) -> int:
        return int(self.level_table.shape[0])

    def maps(self, levels: np.ndarray) -> list[Any]:
        """The label maps the raster rules check
        (:class:`~optodesign.process.structure.RuleMap`)."""
        return self.structure.rule_maps(np.asarray(levels).astype(np.int64), self.n_levels)

    def checks_isolated(self) -> bool:
        return self.rules.isolated_pixels != "ignore"

    def checks_necks(self) -> bool:
        return self.rules.diagonal_necks != "ignore"

    def raster(self, levels: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
        """Every raster violation of a level map, per rule (what the DRC reports).

        Returns:
            ``min_feature``: ``(rows, cols, widths, map index)``; ``aspect_ratio``:
            ``(rows, cols, ratios)``; ``isolated_pixels``: ``(rows, cols)`` (when checked);
            ``diagonal_necks``: ``(rows, cols, map index)`` of the shared corners, one per
            corner and map (when checked). Empty when the process draws no label map.
        """
        lv = np.asarray(levels).astype(np.int64)
        maps = self.maps(lv)
        if not maps:
            return {}
        out: dict[str, tuple[np.ndarray, ...]] = {}
        parts = []
        for j, m in enumerate(maps):
            r, c, w = narrow_runs(m.labels, self.n_min, background=m.background)
            parts.append((r, c, w, np.full(r.size, j, dtype=np.int64)))
        out["min_feature"] = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
        out["aspect_ratio"] = aspect_ratio_runs(self.heights[lv], lv, pitch=self.pitch,
                                                max_ratio=self.rules.max_aspect_ratio)
        if self.checks_isolated():
            out["isolated_pixels"] = isolated_pixels(lv)
        if self.checks_necks():
            ny, nx = lv.shape
            keys = []
            for j, m in enumerate(maps):
                r, c, lab = diagonal_necks(m.labels)
                if m.polygon_label is not None:
                    keep = lab == m.polygon_label
                    r, c = r[keep], c[keep]
                keys.append((j * (ny + 1) + r) * (nx + 1) + c)
            key = np.unique(np.concatenate(keys))
            c = key % (nx + 1)
            rest = key // (nx + 1)
            out["diagonal_necks"] = (rest % (ny + 1), c, rest // (ny + 1))
        return out

    def count(self, levels: np.ndarray) -> int:
        """Violations of every checked raster rule (errors and warnings) plus pixels at a
        refused level: 0 means the layer passes the DRC without a warning."""
        lv = np.asarray(levels)
        n = int(np.isin(lv, self.bad_levels).sum()) if self.bad_levels.size else 0
        return n + sum(int(v[0].size) for v in self.raster(lv).values())

    def keeps(self, levels: np.ndarray, ys: np.ndarray, xs: np.ndarray,
              new: np.ndarray | int) -> bool:
        """True when setting ``levels[ys, xs] = new`` adds no violation (refine's rule: a
        clean design stays clean, a dirty one never gets worse).

        Counted exactly on a window around the changes with a margin of
        :func:`brick_size` + 1 px: every run through a changed pixel is either whole inside it
        or longer than the minimum feature and the aspect-ratio width, and the pixel rules
        (isolated pixels, necks) reach one pixel; what lies farther does not change.
        """
        ys = np.asarray(ys, dtype=np.int64).ravel()
        xs = np.asarray(xs, dtype=np.int64).ravel()
        if ys.size == 0:
            return True
        lv = np.asarray(levels)
        m = brick_size(self) + 1
        y0, y1 = max(0, int(ys.min()) - m), min(lv.shape[0], int(ys.max()) + m + 1)
        x0, x1 = max(0, int(xs.min()) - m), min(lv.shape[1], int(xs.max()) + m + 1)
        win = lv[y0:y1, x0:x1].astype(np.int64)
        after = win.copy()
        after[ys - y0, xs - x0] = new
        return self.count(after) <= self.count(win)

    def bad_pixels(self, levels: np.ndarray) -> np.ndarray:
        """bool ``(ny, nx)``: pixels taking part in a violation (a narrow run's pixels, an
        isolated pixel, the four pixels around a neck's corner, a steep run's first pixel)."""
        lv = np.asarray(levels).astype(np.int64)
        ny, nx = lv.shape
        bad = np.zeros((ny, nx), dtype=bool)
        if self.bad_levels.size:
            bad |= np.isin(lv, self.bad_levels)
        v = self.raster(lv)
        if not v:
            return bad
        r, c, w, _ = v["min_feature"]
        # a narrow run starts at (r, c); mark its first pixel and the next w-1 along x or y
        # (the direction is unknown here: mark both, bounded by the array)
        for k in range(int(w.max()) if w.size else 0):
            keep = k < w
            bad[r[keep], np.minimum(c[keep] + k, nx - 1)] = True
            bad[np.minimum(r[keep] + k, ny - 1), c[keep]] = True
        r, c, _ = v["aspect_ratio"]
        bad[r, c] = True
        if "isolated_pixels" in v:
            r, c = v["isolated_pixels"]
            bad[r, c] = True
        if "diagonal_necks" in v:
            r, c, _ = v["diagonal_necks"]
            for dr in (-1, 0):
                for dc in (-1, 0):
                    bad[r + dr, c + dc] = True
        return bad

    def label_matrices(self) -> list[tuple[np.ndarray, int | None]]:
        """Per label map, the 0/1 ``(L, C)`` matrix of the label each level has there, and
        the label whose necks count (:class:`optodesign.quantize.constraints.SoftRules`)."""
        probe = np.arange(self.n_levels, dtype=np.int64)[None, :]
        out = []
        for m in self.maps(probe):
            lab = np.asarray(m.labels)[0]
            M = np.zeros((self.n_levels, int(lab.max()) + 1))
            M[np.arange(self.n_levels), lab] = 1.0
            out.append((M, m.polygon_label))
        return out

    # ------------------------------------------------------------------ legalizing
    def legalize(self, levels: np.ndarray, *, rounds: int = 12) -> np.ndarray:
        """A level map that passes every checked rule, close to ``levels``.

        Refused levels go to the nearest allowed level (complex distance). Then, for up to
        ``rounds`` rounds, every pixel in a violation takes the level most common among its
        neighbours (4-neighbours count twice, diagonal ones once; the pixels of one of four
        interleaved sub-lattices at a time, so no two changed pixels are neighbours). What
        survives goes to :func:`brick_layout` (correct by construction).

        Args:
            levels: int ``(ny, nx)`` level map of one layer (not modified).

        Returns:
            int64 ``(ny, nx)``; ``self.count(result) == 0``.
        """
        lv = np.asarray(levels).astype(np.int64).copy()
        if self.bad_levels.size:
            lv = self._allowed_levels(lv)
        if not self.maps(lv):
            return lv
        for _ in range(rounds):
            bad = self.bad_pixels(lv)
            if not bad.any():
                return lv
            for py in (0, 1):
                for px in (0, 1):
                    sel = bad.copy()
                    sel[1 - py::2, :] = False
                    sel[:, 1 - px::2] = False
                    if sel.any():
                        lv[sel] = _neighbour_vote(lv, self.n_levels)[sel]
                bad = self.bad_pixels(lv) if (py, px) != (1, 1) else bad
        lv = self._greedy(lv)
        if self.count(lv) == 0:
            return lv
        return brick_layout(lv, brick_size(self), n_levels=self.n_levels)

    def _greedy(self, lv: np.ndarray, *, passes: int = 4, radius: int = 3) -> np.ndarray:
        """Pixel by pixel where violations remain: the level (of all allowed ones) with the
        fewest violations in the window of ``radius`` px around the pixel, if it has fewer
        than the present level."""
        ny, nx = lv.shape
        allowed = np.setdiff1d(np.arange(self.n_levels), self.bad_levels)
        for _ in range(passes):
            ys, xs = np.nonzero(self.bad_pixels(lv))
            if ys.size == 0:
                break
            for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
                y0, y1 = max(0, y - radius), min(ny, y + radius + 1)
                x0, x1 = max(0, x - radius), min(nx, x + radius + 1)
                win = lv[y0:y1, x0:x1].copy()
                best, best_n = lv[y, x], self.count(win)
                for k in allowed:
                    if k == lv[y, x]:
                        continue
                    win[y - y0, x - x0] = k
                    n = self.count(win)
                    if n < best_n:
                        best, best_n = k, n
                lv[y, x] = best
        return lv

    def _allowed_levels(self, lv: np.ndarray) -> np.ndarray:
        allowed = np.setdiff1d(np.arange(self.n_levels), self.bad_levels)
        if allowed.size == 0:
            raise ValueError(f"process {self.process}: every level breaks a design rule")
        t = self.level_table
        nearest = allowed[np.argmin(np.abs(t[:, None] - t[None, allowed]), axis=1)]
        return nearest[lv]


def _neighbour_vote(lv: np.ndarray, n_levels: int) -> np.ndarray:
    """The level most common among each pixel's neighbours (4-neighbours weight 2, diagonal
    ones 1; ties: the pixel's own level when tied, else the lowest level)."""
    ny, nx = lv.shape
    pad = np.pad(lv, 1, mode="edge")
    votes = np.zeros((n_levels, ny, nx), dtype=np.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            w = 2.0 if dy == 0 or dx == 0 else 1.0
            nb = pad[1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx]
            for k in range(n_levels):
                votes[k] += w * (nb == k)
    own = np.take_along_axis(votes, lv[None], 0)[0]
    best = votes.argmax(0)
    return np.where(own >= votes.max(0), lv, best)


def brick_size(deck: Deck) -> int:
    """The smallest brick :func:`brick_layout` needs for ``deck``: at least 2 px, the minimum
    feature, and wide enough that the tallest wall (the height range) keeps the aspect ratio."""
    s = max(2, deck.n_min)
    ar = deck.rules.max_aspect_ratio
    if math.isfinite(ar) and deck.heights.size:
        span = float(np.ptp(deck.heights))
        s = max(s, math.ceil(span / (ar * deck.pitch) - 1e-9))
    return s


def brick_layout(levels: np.ndarray, size: int, *, n_levels: int) -> np.ndarray:
    """Super-pixels in a running-bond (brick) layout: each ``size`` x ``size`` brick takes its
    most common level; alternate rows of bricks are shifted by ``size // 2``.

    Why it passes every raster rule of a thin process (``size >= 2``, the minimum feature and
    the aspect-ratio width of :func:`brick_size`):

    * **no diagonal necks**: a neck needs a 2x2 window whose four pixels lie in four different
      bricks meeting at one corner; brick columns of adjacent rows are offset by
      ``size // 2`` (never a multiple of ``size``), so at most three bricks meet at a point
      and every window has two pixels of one brick side by side or one above the other;
    * **minimum feature**: along a row a run is a union of whole bricks, along a column a union
      of whole brick rows, each at least ``size`` px (partial bricks at the array edges are
      merged into their neighbour: edge bricks are ``size`` to ``2 size - 1`` px); this holds
      for the level map and for any map of a function of the level (a binary mask);
    * **no isolated pixels**: every pixel shares its brick (>= 2 x 2) with a neighbour;
    * **aspect ratio**: every run is at least ``size`` px wide, and no wall is taller than the
      height range.

    Args:
        levels: int ``(ny, nx)``. size: brick edge, pixels (>= 2).

    Returns:
        int64 ``(ny, nx)``.
    """
    lv = np.asarray(levels).astype(np.int64)
    ny, nx = lv.shape
    s = int(size)
    if s < 2:
        raise ValueError("brick_layout: size must be >= 2")
    out = np.empty_like(lv)
    row_edges = _edges(ny, s, 0)
    for i, (y0, y1) in enumerate(zip(row_edges[:-1], row_edges[1:], strict=True)):
        col_edges = _edges(nx, s, (s // 2) * (i % 2))
        for x0, x1 in zip(col_edges[:-1], col_edges[1:], strict=True):
            block = lv[y0:y1, x0:x1]
            out[y0:y1, x0:x1] = np.bincount(block.ravel(), minlength=n_levels).argmax()
    return out


def _edges(n: int, s: int, offset: int) -> list[int]:
    """Brick boundaries along an axis of ``n`` px: ``offset + k s``, dropping any that would
    leave a piece narrower than ``s`` at either end (the piece joins its neighbour)."""
    cuts = [c for c in range(offset, n, s) if s <= c <= n - s]
    return [0, *cuts, n] if n > 0 else [0]

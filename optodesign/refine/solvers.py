"""Discrete refinement of quantized level maps: direct binary search and simulated annealing.

After quantization-aware training the design is a set of integer level maps; refining them is
a combinatorial problem over ``L^(free pixels)`` states (Li et al., "Quantum-Classical Hybrid
Quantized Neural Network", 2025, cast low-bit training as such a constrained binary problem
for an Ising machine). Two solvers work on the exact hard-quantized task loss of
:class:`~optodesign.refine.objective.Objective`:

* :func:`direct_binary_search` (DBS; Seldowitz, Allebach & Sweeney, Appl. Opt. 26, 2788
  (1987), doi:10.1364/AO.26.002788): visit pixels (or blocks) in random order, try every other
  allowed level, keep a change only if the loss falls. Candidates of a batch of positions are
  scored together; when several improve, their union is tried once (kept only if it improves
  too), else the best single change is kept. ``batch=1`` is the classic sequential DBS.
* :func:`simulated_annealing` (Kirkpatrick, Gelatt & Vecchi, Science 220, 671 (1983),
  doi:10.1126/science.220.4598.671): Metropolis (or heat-bath) over random level changes with
  a geometric temperature schedule, a batch of proposals scored at once, accepted proposals
  applied together (and the joint move itself passed through Metropolis). It returns the best
  design seen, never a worse one than the input.

Why annealing and not simulated bifurcation (Goto et al., Sci. Adv. 5, eaav2372 (2019)) as
the Ising-style solver: bifurcation machines minimise a quadratic (Ising) energy, and these
losses are not quadratic in the level variables (intensity is quadratic in the field, the
losses are quartic and normalised); an Ising model of them would need the loss Hessian over all
pixel pairs, ``(ny·nx)²`` entries per layer, rebuilt as the design moves. Annealing uses the
exact loss and the same batched scoring as DBS.

Hard constraints, for both: levels stay in the allowed set (``0..L−1``, or the free levels of
a binary layer), pixels of ``fixed_mask`` never change, and a change that would create a run
of one level shorter than ``min_feature`` pixels along x or y is never made (see
:func:`~optodesign.refine.rules.change_allowed`; if the input satisfies
:func:`~optodesign.refine.rules.satisfies_min_feature`, so does the
output). Every loss the solvers compare is the exact loss of that candidate design (an exact
incremental update, not a linearisation), and the returned design's loss (recomputed from
scratch) never exceeds the input's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import UserError
from .objective import LayerState, Objective, check_seed
from .rules import change_allowed, neighbour_pairs

if TYPE_CHECKING:
    from ..fabrules import Deck

log = logging.getLogger(__name__)

__all__ = [
    "Method",
    "RefineResult",
    "refine",
    "direct_binary_search",
    "simulated_annealing",
]

Method = Literal["dbs", "anneal"]
METHODS: tuple[str, ...] = ("dbs", "anneal")
#: progress callback: (candidate evaluations since the last call, current loss)
Progress = Callable[[int, float], None]


@dataclass(frozen=True)
class RefineResult:
    """Outcome of one refinement.

    Attributes:
        method: "dbs" or "anneal".
        levels: int16 ``(K, ny, nx)``: the refined level maps.
        loss_before: exact loss of the input levels.
        loss_after: exact loss of ``levels`` (``<= loss_before``).
        evaluations: candidate designs scored.
        accepted: changes kept (single or joint moves).
        wall_time: seconds.
        history: ``(evaluations, current loss, best loss)`` after every batch.
        converged: DBS only: a whole pass over every position found no improving change.
    """

    method: str
    levels: np.ndarray
    loss_before: float
    loss_after: float
    evaluations: int
    accepted: int
    wall_time: float
    history: tuple[tuple[int, float, float], ...]
    converged: bool = False


# ---------------------------------------------------------------------------- search core
class _Search:
    """State shared by both solvers: level maps, positions, budget, constraints, history."""

    def __init__(self, objective: Objective, levels: np.ndarray, *, method: str,
                 budget: int | None, seconds: float | None, min_feature: int,
                 fixed_mask: np.ndarray | None, allowed_levels: Sequence[int] | None,
                 block: int | None, batch: int | None, chunk: int | None,
                 layers: Sequence[int] | None, seed: int, progress: Progress | None,
                 decks: Sequence[Deck] | None = None) -> None:
        self.t0 = time.perf_counter()
        self.obj = objective
        self.method = method
        lv = np.asarray(levels)
        if lv.ndim == 2:
            lv = lv[None]
        K = objective.n_layers
        if lv.shape != (K, *objective.shape):
            raise UserError(f"levels: shape {lv.shape} does not match the design "
                            f"({K}, {objective.shape[0]}, {objective.shape[1]})")
        self.levels = lv.astype(np.int64).copy()
        self.input_levels = lv.astype(np.int16).copy()
        if budget is None and seconds is None:
            raise UserError("budget: give a number of evaluations or a time limit in seconds")
        if budget is not None and budget < 0:
            raise UserError(f"budget: must be >= 0 evaluations, got {budget}")
        if seconds is not None and not seconds > 0:
            raise UserError(f"seconds: must be > 0, got {seconds}")
        self.budget, self.seconds = budget, seconds
        if min_feature < 1:
            raise UserError(f"min_feature: must be >= 1 pixel, got {min_feature}")
        self.mf = int(min_feature)
        if decks is not None and len(decks) != K:
            raise UserError(f"decks: {len(decks)} for {K} layers")
        self.decks = list(decks) if decks is not None else [None] * K
        n_levels = objective.tables.shape[1]
        allowed = tuple(range(n_levels)) if allowed_levels is None else tuple(
            sorted({int(a) for a in allowed_levels}))
        if not allowed or min(allowed) < 0 or max(allowed) >= n_levels:
            raise UserError(f"allowed_levels: must lie in 0..{n_levels - 1}, got {allowed}")
        self.allowed = np.asarray(allowed, dtype=np.int64)
        fixed = np.zeros(self.levels.shape, bool) if fixed_mask is None else np.asarray(
            fixed_mask, dtype=bool)
        if fixed.shape != self.levels.shape:
            raise UserError(f"fixed_mask: shape {fixed.shape} != levels {self.levels.shape}")
        self.fixed = fixed
        b = int(block) if block is not None else self.mf
        if b < 1 or b > min(objective.shape):
            raise UserError(f"block: must lie in 1..{min(objective.shape)} pixels, got {b}")
        self.block = b
        default_batch = 256 if objective.device.type == "cuda" else 32
        self.batch = int(batch) if batch is not None else default_batch
        if self.batch < 1:
            raise UserError(f"batch: must be >= 1, got {self.batch}")
        self.layers = list(range(K)) if layers is None else [int(k) for k in layers]
        if any(not 0 <= k < K for k in self.layers):
            raise UserError(f"layers: must lie in 0..{K - 1}, got {self.layers}")
        self.rng = np.random.default_rng(check_seed(seed))
        ny, nx = objective.shape
        self.nx = nx
        # top-left corners of blocks with at least one free pixel, per layer
        self.positions: dict[int, np.ndarray] = {}
        for k in self.layers:
            free = ~self.fixed[k]
            cs = np.cumsum(np.cumsum(np.pad(free, ((1, 0), (1, 0))), 0), 1)
            cnt = cs[b:, b:] - cs[:-b, b:] - cs[b:, :-b] + cs[:-b, :-b]
            yy, xx = np.nonzero(cnt > 0)
            if yy.size:
                self.positions[k] = np.stack([yy, xx], 1)
        self.layers = [k for k in self.layers if k in self.positions]
        self.order = {k: self.rng.permutation(len(p)) for k, p in self.positions.items()}
        self.cursor = dict.fromkeys(self.positions, 0)
        self.chunk = int(chunk) if chunk else 0
        self.progress = progress
        self.evaluations = 0
        self.accepted = 0
        self.history: list[tuple[int, float, float]] = []
        self.state: LayerState | None = None
        self.loss_before = objective.loss(self.levels)

    # ---------------------------------------------------------------- budget
    def fraction(self) -> float:
        """How much of the budget is spent, 0..1 (the larger of evaluations and time)."""
        f = 0.0
        if self.budget is not None:
            f = self.evaluations / max(self.budget, 1)
        if self.seconds is not None:
            f = max(f, (time.perf_counter() - self.t0) / self.seconds)
        return min(f, 1.0)

    def left(self) -> int:
        if self.budget is None:
            return 1 << 60
        return self.budget - self.evaluations

    def done(self) -> bool:
        return not self.layers or self.left() <= 0 or (
            self.seconds is not None and time.perf_counter() - self.t0 >= self.seconds)

    def count(self, n: int) -> None:
        self.evaluations += n
        if self.progress is not None and n:
            assert self.state is not None
            self.progress(n, self.state.loss)

    # ---------------------------------------------------------------- layers, positions
    def layer_visits(self) -> int:
        return self.chunk or max(self.batch, max(len(p) for p in self.positions.values()) // 4)

    def enter(self, k: int) -> LayerState:
        """Fresh state of layer ``k`` (also resets drift of the incremental updates)."""
        self.state = self.obj.state(self.levels, k)
        return self.state

    def next_positions(self, k: int, n: int) -> np.ndarray:
        """The next ``n`` block corners of layer ``k`` in its random order (reshuffled after
        each pass)."""
        out = []
        total = len(self.positions[k])
        while n > 0:
            c = self.cursor[k]
            if c >= total:
                self.order[k] = self.rng.permutation(total)
                c = self.cursor[k] = 0
            take = min(n, total - c)
            out.append(self.order[k][c:c + take])
            self.cursor[k] = c + take
            n -= take
        return self.positions[k][np.concatenate(out)]

    # ---------------------------------------------------------------- candidates
    def candidates(self, k: int, corners: np.ndarray, choose: Literal["all", "random"]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Level changes at block corners ``(n, 2)``.

        ``choose="all"`` proposes every other allowed level per corner, ``"random"`` one.
        Returns ``(owner (M,), pixels (M, S), new (M, S))``: the corner each candidate belongs
        to, flat pixel indices and levels (padding slots repeat the first pixel at its current
        level, which changes nothing). Candidates breaking the rules are left out. Single
        pixels under a process's rules (``decks``) with ``"all"`` also propose pairs
        (:func:`~optodesign.refine.rules.neighbour_pairs`).
        """
        lv, b, nx = self.levels[k], self.block, self.nx
        if b == 1:
            ys, xs = corners[:, 0], corners[:, 1]
            old = lv[ys, xs]
            if choose == "all":
                new = np.broadcast_to(self.allowed, (len(ys), len(self.allowed)))
                owner = np.broadcast_to(np.arange(len(ys))[:, None], new.shape)
                keep = new != old[:, None]
                owner, new = owner[keep], new[keep]
            else:
                options = self.allowed[None, :] != old[:, None]
                n_opt = options.sum(1)
                ok = n_opt > 0
                pick = (self.rng.random(len(ys)) * np.maximum(n_opt, 1)).astype(np.int64)
                idx = np.argmax(np.cumsum(options, 1) > pick[:, None], axis=1)
                owner = np.flatnonzero(ok)
                new = self.allowed[idx[ok]]
            pix = ys[owner] * nx + xs[owner]
            if self.mf > 1 or self.decks[k] is not None:
                good = np.array([change_allowed(lv, np.array([p // nx]), np.array([p % nx]), v,
                                                self.mf, self.decks[k])
                                 for p, v in zip(pix, new, strict=True)], bool)
                owner, pix, new = owner[good], pix[good], new[good]
            new = np.asarray(new)
            if choose == "all" and self.decks[k] is not None:  # + pairs; singles padded
                po, pp, pn = neighbour_pairs(lv, corners, self.fixed[k], self.allowed, self.mf,
                                             self.decks[k])
                return (np.concatenate([owner, po]), np.concatenate([np.stack([pix, pix], 1), pp]),
                        np.concatenate([np.stack([new, lv.reshape(-1)[pix]], 1), pn]))
            return owner, pix[:, None], new[:, None]
        owners, pixs, news = [], [], []
        dy, dx = np.mgrid[0:b, 0:b]
        dy, dx = dy.ravel(), dx.ravel()
        for i, (y0, x0) in enumerate(corners):
            ys, xs = y0 + dy, x0 + dx
            free = ~self.fixed[k, ys, xs]
            ys, xs = ys[free], xs[free]
            old = lv[ys, xs]
            if choose == "all":
                levels = self.allowed
            else:
                levels = self.allowed[[int(self.rng.integers(len(self.allowed)))]]
            for v in levels:
                ch = old != v
                if not ch.any():
                    continue
                cy, cx = ys[ch], xs[ch]
                if not change_allowed(lv, cy, cx, v, self.mf, self.decks[k]):
                    continue
                p = np.full(b * b, cy[0] * nx + cx[0])
                nv = np.full(b * b, old[ch][0])
                p[:ch.sum()] = cy * nx + cx
                nv[:ch.sum()] = v
                owners.append(i)
                pixs.append(p)
                news.append(nv)
        if not owners:
            e = np.zeros((0, b * b), np.int64)
            return np.zeros(0, np.int64), e, e
        return np.asarray(owners), np.stack(pixs), np.stack(news)

    def changed(self, k: int, pix: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The real changes of one candidate row (padding dropped)."""
        lv = self.levels[k].reshape(-1)
        keep = lv[pix] != new
        return pix[keep], new[keep]

    def apply(self, k: int, picks: Sequence[tuple[np.ndarray, np.ndarray]]) -> int:
        """Apply candidate changes in order (each re-checked against the rules on the map as it
        is then), as one update of the state. Returns how many were applied."""
        assert self.state is not None
        lv = self.levels[k]
        flat = lv.reshape(-1)
        original = flat.copy()
        applied = 0
        for pix, new in picks:
            pix, new = self.changed(k, pix, new)
            if pix.size == 0:
                continue
            if (self.mf > 1 or self.decks[k] is not None) and not change_allowed(
                    lv, pix // self.nx, pix % self.nx, new, self.mf, self.decks[k]):
                continue
            flat[pix] = new
            applied += 1
        diff = np.flatnonzero(flat != original)
        if diff.size:
            # the state's transmissions still hold the original levels at these pixels
            self.obj.apply(self.state, diff, flat[diff])
        return applied

    def record(self, best: float) -> None:
        assert self.state is not None
        self.history.append((self.evaluations, self.state.loss, best))

    def finish(self, levels: np.ndarray, converged: bool = False) -> RefineResult:
        out = levels.astype(np.int16)
        after = self.obj.loss(out)
        if after > self.loss_before:
            # float noise of the incremental updates: never hand back a worse design
            log.warning("refine: result loss %.6g exceeds the input's %.6g; returning the input",
                        after, self.loss_before)
            out, after = self.input_levels.copy(), self.loss_before
        return RefineResult(self.method, out, self.loss_before, after, self.evaluations,
                            self.accepted, time.perf_counter() - self.t0, tuple(self.history),
                            converged)


def _tol(loss: float) -> float:
    """Smallest loss decrease that counts (guards against float32 noise)."""
    return 1e-6 * abs(loss) + 1e-12


# ---------------------------------------------------------------------------- DBS
def direct_binary_search(objective: Objective, levels: np.ndarray, *, budget: int | None = 1000,
                         seconds: float | None = None, min_feature: int = 1,
                         fixed_mask: np.ndarray | None = None,
                         allowed_levels: Sequence[int] | None = None, block: int | None = None,
                         batch: int | None = None, chunk: int | None = None,
                         layers: Sequence[int] | None = None, joint: bool = True, seed: int = 0,
                         progress: Progress | None = None,
                         decks: Sequence[Deck] | None = None) -> RefineResult:
    """Direct binary search (Seldowitz, Allebach & Sweeney 1987, doi:10.1364/AO.26.002788).

    Visits block corners of each layer in random order (``chunk`` corners per visit of a
    layer, layers in turn), scores every other allowed level for a ``batch`` of corners at
    once, and keeps a change only when the exact loss falls. With several improving corners
    in a batch and ``joint=True`` their union is tried first (one more evaluation).

    Args:
        objective: the loss (see :class:`~optodesign.refine.objective.Objective`).
        levels: int ``(K, ny, nx)`` start level maps (not modified).
        budget: candidate evaluations (None: only the time limit).
        seconds: wall-time limit (None: only the evaluation budget).
        min_feature: design rule, pixels: no change may create a shorter run in x or y.
        fixed_mask: bool ``(K, ny, nx)``: pixels that never change.
        allowed_levels: levels a pixel may take (default all).
        block: side of the square block one candidate sets to one level, pixels (default
            ``min_feature``).
        batch: corners scored per call (default 32 on CPU, 256 on CUDA); 1 = classic DBS.
        chunk: corners per visit of a layer before moving to the next (default a quarter of
            the layer).
        layers: 0-based layers to refine (default all).
        joint: try the union of a batch's improving changes.
        seed: random order.
        progress: called with (evaluations done, current loss) after each scoring call.
        decks: per layer, a process's design rules no change may break further
            (:meth:`optodesign.fabrules.Deck.keeps`; a DRC-clean input stays clean).

    Returns:
        :class:`RefineResult`; stops early (``converged``) when a full pass over every
        position of every layer found nothing to improve.
    """
    s = _Search(objective, levels, method="dbs", budget=budget, seconds=seconds,
                min_feature=min_feature, fixed_mask=fixed_mask, allowed_levels=allowed_levels,
                block=block, batch=batch, chunk=chunk, layers=layers, seed=seed,
                progress=progress, decks=decks)
    quiet = {k: 0 for k in s.layers}  # corners visited since the layer last improved
    converged = False
    li = 0
    while not s.done():
        k = s.layers[li % len(s.layers)]
        li += 1
        state = s.enter(k)
        visits = s.layer_visits()
        while visits > 0 and not s.done():
            corners = s.next_positions(k, min(s.batch, visits))
            visits -= len(corners)
            quiet[k] += len(corners)
            owner, pix, new = s.candidates(k, corners, "all")
            if len(owner) > s.left():
                owner, pix, new = owner[:s.left()], pix[:s.left()], new[:s.left()]
            if len(owner):
                losses = objective.candidate_losses(state, pix, new).cpu().numpy()
                s.count(len(owner))
                cur = state.loss
                best_of: dict[int, int] = {}
                for i, o in enumerate(owner):
                    if o not in best_of or losses[i] < losses[best_of[o]]:
                        best_of[o] = i
                good = sorted((i for i in best_of.values() if losses[i] < cur - _tol(cur)),
                              key=lambda i: losses[i])
                if good:
                    done = False
                    if joint and len(good) > 1 and s.left() > 0:
                        snap, lv_snap = state.snapshot(), s.levels[k].copy()
                        s.apply(k, [(pix[i], new[i]) for i in good])
                        s.count(1)
                        if state.loss < cur - _tol(cur):
                            done = True
                        else:
                            state.restore(snap)
                            s.levels[k] = lv_snap
                    if not done:
                        s.apply(k, [(pix[good[0]], new[good[0]])])
                    s.accepted += 1
                    quiet[k] = 0
            s.record(state.loss)
        if all(quiet[j] >= len(s.positions[j]) for j in s.layers):
            converged = True
            break
    return s.finish(s.levels, converged)


# ---------------------------------------------------------------------------- annealing
def simulated_annealing(objective: Objective, levels: np.ndarray, *, budget: int | None = 1000,
                        seconds: float | None = None, min_feature: int = 1,
                        fixed_mask: np.ndarray | None = None,
                        allowed_levels: Sequence[int] | None = None, block: int | None = None,
                        batch: int | None = None, chunk: int | None = None,
                        layers: Sequence[int] | None = None,
                        rule: Literal["heat-bath", "metropolis"] = "metropolis",
                        t_start: float | None = None, accept_start: float = 0.05,
                        t_ratio: float = 1e-3, seed: int = 0,
                        progress: Progress | None = None,
                        decks: Sequence[Deck] | None = None) -> RefineResult:
    """Simulated annealing over level changes (Kirkpatrick et al. 1983,
    doi:10.1126/science.220.4598.671), batched, returning the best design seen.

    Each step draws a ``batch`` of block corners (in a random order that covers the layer)
    and scores level changes there against the current design, all in one call:

    * ``rule="heat-bath"`` (the Gibbs sampler of Potts models, Geman & Geman 1984,
      doi:10.1109/TPAMI.1984.4767596): every allowed level of each corner is scored and one
      is drawn with probability ``∝ exp(−Δ/T)`` (the current level has ``Δ = 0``). At
      ``T → 0`` this is exactly a DBS step, so the schedule ends in DBS.
    * ``rule="metropolis"`` (default; measured better per evaluation than heat-bath, see
      docs/refine.md): one random other level per corner, accepted with probability
      ``min(1, exp(−Δ/T))``.

    The chosen changes are applied together; the joint move is kept by the Metropolis rule
    on its exact Δ (else only the best single change, when it improves). ``T`` falls
    geometrically from ``t_start`` to ``t_start · t_ratio`` over the budget (evaluations or
    seconds, whichever runs out first).

    Args:
        objective, levels, budget, seconds, min_feature, fixed_mask, allowed_levels, block,
            batch, chunk, layers, seed, progress, decks: as :func:`direct_binary_search`.
        rule: "heat-bath" or "metropolis" (see above).
        t_start: start temperature, in loss units; None: chosen from the first batch so that
            the median uphill change is accepted with probability ``accept_start``.
        accept_start: see ``t_start``.
        t_ratio: final / start temperature.

    Returns:
        :class:`RefineResult` of the best design seen (its loss never exceeds the input's).
    """
    if rule not in ("heat-bath", "metropolis"):
        raise UserError(f"rule: must be 'heat-bath' or 'metropolis', got {rule!r}")
    if not 0 < accept_start < 1:
        raise UserError(f"accept_start: must lie in (0, 1), got {accept_start}")
    if not 0 < t_ratio <= 1:
        raise UserError(f"t_ratio: must lie in (0, 1], got {t_ratio}")
    if t_start is not None and not t_start > 0:
        raise UserError(f"t_start: must be > 0 (loss units), got {t_start}")
    s = _Search(objective, levels, method="anneal", budget=budget, seconds=seconds,
                min_feature=min_feature, fixed_mask=fixed_mask, allowed_levels=allowed_levels,
                block=block, batch=batch, chunk=chunk, layers=layers, seed=seed,
                progress=progress, decks=decks)
    best_loss = s.loss_before
    best_levels = s.levels.copy()
    best_is_current = False  # current levels equal the best but best_levels is stale
    t0 = t_start
    li = 0
    while not s.done():
        k = s.layers[li % len(s.layers)]
        li += 1
        state = s.enter(k)
        visits = s.layer_visits()
        while visits > 0 and not s.done():
            corners = s.next_positions(k, min(s.batch, visits))
            visits -= len(corners)
            owner, pix, new = s.candidates(k, corners,
                                           "all" if rule == "heat-bath" else "random")
            room = max(1, s.left() - 1)  # keep one evaluation for the joint move
            if len(owner) > room:
                owner, pix, new = owner[:room], pix[:room], new[:room]
            if not len(owner):
                continue
            losses = objective.candidate_losses(state, pix, new).cpu().numpy().astype(np.float64)
            s.count(len(owner))
            cur = state.loss
            delta = losses - cur
            if t0 is None:
                up = delta[delta > _tol(cur)]
                if up.size:
                    t0 = float(np.median(up)) / math.log(1 / accept_start)
            temp = (t0 or 0.0) * t_ratio ** s.fraction()
            if rule == "heat-bath":
                picks = _heat_bath(owner, delta, temp, _tol(cur), s.rng)
            else:
                with np.errstate(over="ignore", divide="ignore"):
                    p = np.exp(-np.maximum(delta, 0) / temp) if temp > 0 else 0 * delta
                ok = (delta < -_tol(cur)) | (s.rng.random(delta.size) < p)
                picks = np.flatnonzero(ok)
            if picks.size:
                picks = picks[np.argsort(delta[picks], kind="stable")]
                if best_is_current:
                    best_levels = s.levels.copy()
                    best_is_current = False
                snap, lv_snap = state.snapshot(), s.levels[k].copy()
                s.apply(k, [(pix[i], new[i]) for i in picks])
                if picks.size > 1:
                    s.count(1)
                dj = state.loss - cur
                keep = dj < -_tol(cur) or (temp > 0 and s.rng.random() < math.exp(
                    -max(dj, 0.0) / temp))
                if not keep:
                    state.restore(snap)
                    s.levels[k] = lv_snap
                    if delta[picks[0]] < -_tol(cur) and picks.size > 1:
                        s.apply(k, [(pix[picks[0]], new[picks[0]])])
                        keep = True
                if keep:
                    s.accepted += 1
                if state.loss < best_loss - _tol(best_loss):
                    best_loss = state.loss
                    best_is_current = True
            s.record(best_loss)
    if best_is_current:
        best_levels = s.levels.copy()
    return s.finish(best_levels)


def _heat_bath(owner: np.ndarray, delta: np.ndarray, temp: float, tol: float,
               rng: np.random.Generator) -> np.ndarray:
    """Per corner, draw the current level (Δ = 0) or one of its candidates with probability
    ``∝ exp(−Δ/T)`` (``T = 0``: the best, if it improves by more than ``tol``); returns the
    indices of the candidates drawn."""
    picks = []
    bounds = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        e = np.concatenate(([0.0], delta[a:b]))
        if temp > 0:
            w = np.exp(-(e - e.min()) / temp)
            c = int(np.searchsorted(np.cumsum(w), rng.random() * w.sum(), side="right"))
            c = min(c, e.size - 1)
        else:
            c = int(np.argmin(e))
            if e[c] >= -tol:
                c = 0
        if c > 0:
            picks.append(a + c - 1)
    return np.asarray(picks, dtype=np.int64)


# ---------------------------------------------------------------------------- dispatch
def refine(objective: Objective, levels: np.ndarray, *, method: Method = "dbs",
           **options: object) -> RefineResult:
    """Refine ``levels`` with ``method`` ("dbs" or "anneal"); options as the solver's."""
    if method == "dbs":
        return direct_binary_search(objective, levels, **options)  # type: ignore[arg-type]
    if method == "anneal":
        return simulated_annealing(objective, levels, **options)  # type: ignore[arg-type]
    raise UserError(f"method: {method!r} is not one of {', '.join(METHODS)}")

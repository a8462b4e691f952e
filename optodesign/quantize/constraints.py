"""Fabrication constraints as quantizer layers: a length scale before any quantizer, and a
legalizer after it.

:class:`Constrained` wraps any quantizer of the registry (phase, binary or complex family) and
changes only what it sees and what it returns:

``raw → length scale → inner quantizer → legalizer``

Length scale (one of):

``filter``
    The density filter of topology optimisation (Bruns & Tortorelli, Comput. Methods Appl.
    Mech. Eng. 190, 3443 (2001); Bourdin, Int. J. Numer. Meth. Eng. 50, 2143 (2001)): every
    raw value is replaced by a cone-weighted mean ``w(r) = max(0, R − r)`` over a disk of radius
    ``R`` pixels, so no feature of the filtered map is much narrower than ``R``. The projection
    that follows it in topology optimisation (Guest, Prévost & Belytschko, Int. J. Numer.
    Meth. Eng. 61, 238 (2004); Wang, Lazarov & Sigmund, Struct. Multidisc. Optim. 43, 767
    (2011)) is the quantizer itself: PSQ's soft staircase, the binary sigmoid or the joint
    soft assignment, whose temperature rises over the epochs exactly as the projection's
    sharpness β does. Phases are averaged on the circle (the mean of ``exp(i·raw)``); complex
    raw weights (Re, Im) are averaged as they are.
``superpixel``
    Raw values are averaged over ``size`` x ``size`` blocks (circular mean for phases) and every
    pixel of a block takes the block's value: the design is drawn on a coarser grid. The
    ``brick`` layout shifts alternate block rows by ``size // 2`` (a running bond), which has no
    four blocks meeting at a corner and therefore no diagonal necks
    (:func:`optodesign.fabrules.brick_layout`).

Legalizer: a function ``levels (ny, nx) → levels`` that makes the hard level map pass the
process's design rules (:meth:`optodesign.fabrules.Deck.legalize`, given by the trainer: this
package does not know processes). :meth:`Constrained.indices` returns the legalized map, so the
Design, its metrics and the exported files are one design; during training the pixels the
legalizer changed at the start of an epoch are held at their legal level with a
straight-through correction, so the optimiser sees (and adapts to) the legal design.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import Quantizer

__all__ = ["Constrained", "cone_kernel", "filter_raw", "superpixel_raw"]

Legalizer = Callable[[np.ndarray], np.ndarray]


def cone_kernel(radius: float) -> np.ndarray:
    """Normalised cone weights ``max(0, R − r)`` on a ``(2⌈R⌉ − 1)``-wide square."""
    n = max(0, math.ceil(radius) - 1)
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1]
    w = np.maximum(0.0, radius - np.hypot(yy, xx))
    return w / w.sum()


def _conv_same(x: Tensor, kernel: Tensor) -> Tensor:
    """``(..., ny, nx)`` convolved with a centred odd kernel; edges replicate (no artificial
    boundary at the aperture edge)."""
    shape = x.shape
    k = kernel.shape[-1] // 2
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.pad(y, (k, k, k, k), mode="replicate")
    return F.conv2d(y, kernel[None, None].to(y)).reshape(shape)


def _phase_mean(raw: Tensor, op: Callable[[Tensor], Tensor]) -> Tensor:
    """A linear averaging ``op`` applied on the circle: the angle of the mean of
    ``exp(i·raw)``, in [0, 2π)."""
    c, s = op(torch.cos(raw)), op(torch.sin(raw))
    return torch.remainder(torch.atan2(s, c), 2 * math.pi)


def _complex_apply(raw: Tensor, op: Callable[[Tensor], Tensor]) -> Tensor:
    """``op`` on the Re and Im channels of a ``(..., ny, nx, 2)`` raw tensor."""
    return torch.stack([op(raw[..., 0]), op(raw[..., 1])], dim=-1)


def filter_raw(raw: Tensor, radius: float, *, raw_kind: str) -> Tensor:
    """The cone filter of radius ``radius`` px on raw weights (phases on the circle)."""
    if radius <= 1:
        return raw
    kernel = torch.as_tensor(cone_kernel(radius), dtype=raw.dtype, device=raw.device)

    def op(x: Tensor) -> Tensor:
        return _conv_same(x, kernel)

    if raw_kind == "complex":
        return _complex_apply(raw, op)
    return _phase_mean(raw, op)


def _block_index(n: int, size: int, offset: int) -> np.ndarray:
    """Block number of each of ``n`` pixels (blocks of ``size`` starting at ``offset``;
    pieces narrower than ``size`` at the ends join their neighbour)."""
    cuts = [c for c in range(offset, n, size) if size <= c <= n - size]
    edges = np.array([0, *cuts, n])
    return np.searchsorted(edges, np.arange(n), side="right") - 1


def superpixel_labels(shape: tuple[int, int], size: int, layout: str) -> np.ndarray:
    """int ``(ny, nx)``: the super-pixel each pixel belongs to (``grid`` or ``brick``)."""
    ny, nx = shape
    rows = _block_index(ny, size, 0)
    lab = np.empty((ny, nx), dtype=np.int64)
    n_cols = nx + 1
    for r in range(int(rows.max()) + 1):
        offset = (size // 2) * (r % 2) if layout == "brick" else 0
        cols = _block_index(nx, size, offset)
        lab[rows == r] = r * n_cols + cols[None, :]
    _, inv = np.unique(lab, return_inverse=True)
    return inv.reshape(ny, nx)


def superpixel_raw(raw: Tensor, labels: Tensor, *, raw_kind: str) -> Tensor:
    """Block means of raw weights over super-pixel ``labels`` (phases on the circle)."""
    n = int(labels.max()) + 1
    flat = labels.reshape(-1)
    counts = torch.bincount(flat, minlength=n).to(raw.dtype)

    def op(x: Tensor) -> Tensor:
        lead = x.shape[:-2]
        xf = x.reshape(-1, flat.numel())
        sums = torch.zeros(xf.shape[0], n, dtype=x.dtype, device=x.device)
        sums = sums.index_add(1, flat, xf)
        return (sums / counts)[:, flat].reshape(*lead, *x.shape[-2:])

    if raw_kind == "complex":
        return _complex_apply(raw, op)
    return _phase_mean(raw, op)


class Constrained(Quantizer):
    """A quantizer behind a length-scale layer and in front of a legalizer (module docstring).

    Args:
        inner: any quantizer (:func:`optodesign.quantize.registry.build_quantizer`).
        kind: ``"none"``, ``"filter"`` or ``"superpixel"``.
        radius: filter radius, pixels (> 1 filters).
        size: super-pixel edge, pixels (>= 1). layout: ``"grid"`` or ``"brick"``.
        legalize: ``levels -> levels`` (per layer), or None.
    """

    def __init__(self, inner: Quantizer, *, kind: str = "none", radius: float = 2.0,
                 size: int = 2, layout: str = "brick", legalize: Legalizer | None = None,
                 rules: SoftRules | None = None, weight: float = 0.0,
                 sharpness: float = 8.0) -> None:
        super().__init__()
        if kind not in ("none", "filter", "superpixel"):
            raise ConfigError(f"constraint: unknown {kind!r} (allowed: none, filter, superpixel)")
        if not (math.isfinite(radius) and radius >= 1):
            raise ConfigError(f"radius: must be >= 1 pixel, got {radius!r}")
        if isinstance(size, bool) or int(size) != size or size < 1:
            raise ConfigError(f"size: must be an integer >= 1 pixel, got {size!r}")
        if layout not in ("grid", "brick"):
            raise ConfigError(f"layout: must be grid or brick, got {layout!r}")
        self.inner = inner
        self.raw_kind = inner.raw_kind
        self.kind, self.radius, self.size, self.layout = kind, float(radius), int(size), layout
        self._legalize = legalize
        self._labels: Tensor | None = None
        self._held: tuple[Tensor, Tensor] | None = None  # (mask, legal level) of this epoch
        self._stale = True
        self.rules, self.weight, self.sharpness = rules, float(weight), float(sharpness)
        self._penalty: Tensor | None = None

    def soft_levels(self, x: Tensor) -> Tensor:
        """``(L, ny, nx)`` probabilities of each level: a softmax of ``−s·d²/Δ²`` over the
        distances ``d`` of the (pre-mapped) raw value to the levels (on the circle for
        phases, in the complex plane for complex weights), ``Δ`` the smallest level gap."""
        table = self.table().detach().to(x.device)
        if self.raw_kind == "complex":
            z = torch.complex(x[..., 0], x[..., 1])
            d2 = (z[None] - table.to(z.dtype)[:, None, None]).abs() ** 2
            gap2 = ((table[:, None] - table[None]).abs() ** 2 + 1e9 * torch.eye(
                table.numel(), device=x.device)).min()
        else:
            phi = torch.angle(table).to(x.dtype)
            diff = torch.remainder(x[None] - phi[:, None, None] + math.pi, 2 * math.pi) - math.pi
            d2 = diff ** 2
            g = torch.remainder(phi[:, None] - phi[None] + math.pi, 2 * math.pi) - math.pi
            gap2 = (g ** 2 + 1e9 * torch.eye(phi.numel(), device=x.device)).min()
        return torch.softmax(-self.sharpness * d2 / gap2.clamp_min(1e-12), dim=0)

    # ------------------------------------------------------------------ the length scale
    def pre(self, raw: Tensor) -> Tensor:
        """The raw weights the inner quantizer sees (filtered or block-averaged)."""
        if self.kind == "filter":
            return filter_raw(raw, self.radius, raw_kind=self.raw_kind)
        if self.kind == "superpixel" and self.size > 1:
            shape = tuple(raw.shape[-3:-1] if self.raw_kind == "complex" else raw.shape[-2:])
            if self._labels is None or tuple(self._labels.shape) != shape \
                    or self._labels.device != raw.device:
                self._labels = torch.as_tensor(
                    superpixel_labels(shape, self.size, self.layout), device=raw.device)
            return superpixel_raw(raw, self._labels, raw_kind=self.raw_kind)
        return raw

    # ------------------------------------------------------------------ quantizer protocol
    def table(self) -> Tensor:
        return self.inner.table()

    def init_raw(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        return self.inner.init_raw(shape, generator=generator, dtype=dtype)

    def prepare(self, raw: Tensor) -> Tensor:
        return self.inner.prepare(raw)

    def set_progress(self, epoch: int, n_epochs: int) -> None:
        self.inner.set_progress(epoch, n_epochs)
        self._stale = True

    def regularization(self) -> Tensor:
        return self.inner.regularization()

    def rule_penalty(self) -> Tensor | None:
        """The soft rule count of the last training forward (None: no penalty); read once
        (the trainer weights it by ``[fabrication] penalty`` relative to the loss)."""
        p, self._penalty = self._penalty, None
        return p

    def legal(self, idx: Tensor) -> Tensor:
        """The legalized level map of ``(ny, nx)`` indices (unchanged without a legalizer)."""
        if self._legalize is None:
            return idx
        out = self._legalize(idx.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(out), dtype=idx.dtype, device=idx.device)

    def indices(self, raw: Tensor) -> Tensor:
        return self.legal(self.inner.indices(self.pre(raw)))

    def forward(self, raw: Tensor) -> Tensor:
        x = self.pre(raw)
        t = self.inner(x)
        if self.rules is not None and self.weight > 0 and self.training:
            self._penalty = self.rules(self.soft_levels(x))
        if self._legalize is None or not self.training:
            return t
        if self._stale:  # once per epoch: which pixels the legalizer moves, and where to
            with torch.no_grad():
                idx = self.inner.indices(x)
                legal = self.legal(idx)
                self._held = (legal != idx, legal)
            self._stale = False
        assert self._held is not None
        mask, legal = self._held
        if not bool(mask.any()):
            return t
        target = self.table().to(device=t.device, dtype=t.dtype)[legal]
        # straight-through: the value of the legal level where the legalizer moved a pixel,
        # the inner quantizer's gradient
        return torch.where(mask, target + (t - t.detach()), t)

    def describe(self) -> dict[str, Any]:
        d = dict(self.inner.describe())
        c: dict[str, Any] = {"kind": self.kind, "legalized": self._legalize is not None}
        if self.kind == "filter":
            c["radius_px"] = self.radius
        elif self.kind == "superpixel":
            c.update(size_px=self.size, layout=self.layout)
        d["constraint"] = c
        return d


class SoftRules:
    """A differentiable count of the raster design rules (isolated pixels, diagonal necks)
    on soft level probabilities ``P (L, ny, nx)``: the expected number of violations per
    pixel if every pixel took level ``k`` with probability ``P_k`` independently.

    Args:
        maps: per label map the process draws, ``(M, polygon_label)``: ``M`` is the 0/1
            ``(L, C)`` matrix of which label each level has in that map (identity for the
            level map; the bit of each level for a binary mask), ``polygon_label`` the label
            whose necks count (None: every label).
        isolated: count isolated pixels (of the level map). necks: count diagonal necks.
    """

    def __init__(self, maps: list[tuple[np.ndarray, int | None]], *, isolated: bool,
                 necks: bool) -> None:
        self.maps = [(torch.as_tensor(np.asarray(m, dtype=np.float32)), p) for m, p in maps]
        self.isolated, self.necks = bool(isolated), bool(necks)

    def __call__(self, P: Tensor) -> Tensor:
        ny, nx = P.shape[-2:]
        total = P.new_zeros(())
        if self.isolated:
            Q = F.pad(P, (1, 1, 1, 1))  # outside the array: no level (differs from all)
            same = 1.0 - Q
            iso = P * same[..., :-2, 1:-1] * same[..., 2:, 1:-1] * same[..., 1:-1, :-2] \
                * same[..., 1:-1, 2:]
            total = total + iso.sum()
        if self.necks:
            for M, p in self.maps:
                Q = torch.einsum("lc,l...->c...", M.to(P), P)
                if p is not None:
                    Q = Q[p:p + 1]
                a, b = Q[..., :-1, :-1], Q[..., :-1, 1:]
                c, d = Q[..., 1:, :-1], Q[..., 1:, 1:]
                total = total + (a * d * (1 - b) * (1 - c) + b * c * (1 - a) * (1 - d)).sum()
        return total / (ny * nx)

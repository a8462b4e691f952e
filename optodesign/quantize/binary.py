"""1-bit phase layers with one learned phase step per layer, and pixels fixed by physics.

After Eamaz et al., "Physics-Inspired Binary Neural Networks", arXiv:2502.01908: a binary
layer stores one bit per pixel and one global scale, here the phase step ``α`` (radians) of
the "1" level. Pixels that physics decides (see :mod:`.structural`) are fixed and store no bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Quantizer
from .levels import TWO_PI, circular_distance

__all__ = ["BinaryQuantizer", "stored_bits_per_pixel"]


class BinaryQuantizer(Quantizer):
    """Two phase levels ``{0, α}`` with ``α`` one learned scalar per layer (init ``π``).

    Rule (chosen to fit the phase-raw interface: ``init_raw`` draws uniform phases and
    ``prepare`` wraps them to ``[0, 2π)``, which would make a sign rule all ones): a pixel is
    ``b = 1`` when its wrapped phase is closer on the circle to ``α`` than to 0, else ``b = 0``.
    Forward: ``exp(i·(α·b + (u − sg(u))))`` with ``u`` the wrapped raw phase and ``sg`` stop-
    gradient, i.e. value ``exp(iα b)`` exactly, gradient identity w.r.t. ``raw`` (straight-
    through) and ``∂phase/∂α = b``.

    With ``soft=True`` (the default) the training path is instead a progressive sigmoid in the
    spirit of PSQ (QuATON, arXiv:2310.03049): the wrap-aware sigmoid staircase over the two
    levels {0, α} (see ``_soft_phase``), with ``T`` rising linearly over the epochs from
    ``t_start`` to ``t_end`` (in 1/rad; defaults 2/Δ and 64/Δ with ``Δ = min(α, 2π − α)`` at
    init), so the forward is periodic, differentiable in ``raw`` and ``α``, and hardens to
    ``exp(iα b)``. A
    straight-through binary (``soft=False``) must jump π to flip a pixel, which the gradient
    at the hard point does not predict: on the benchmark D2NN it stayed at chance.

    Fixed pixels (``fixed_mask`` True) take level ``fixed_level`` (0 or 1) or, with
    ``opaque=True``, transmit 0: then ``table()`` has a third entry ``0`` and fixed pixels index
    it. Fixed pixels never change with ``raw`` and pass it no gradient.

    Args:
        alpha_init: initial phase step α, radians (default π).
        fixed_mask: bool ``(ny, nx)``, True where the pixel is fixed by physics; None = none.
        fixed_level: level (0 or 1) of fixed pixels when not opaque.
        opaque: fixed pixels transmit 0 (absorber) instead of a phase level.
        learn_alpha: make α an ``nn.Parameter`` (default) or a fixed buffer.
        soft: progressive-sigmoid training path (default) instead of straight-through.
        t_start, t_end: temperatures of the soft path (1/rad); None = 2/Δ and 64/Δ.
    """

    raw_kind = "phase"

    def __init__(self, *, alpha_init: float = math.pi,
                 fixed_mask: np.ndarray | Tensor | None = None, fixed_level: int = 0,
                 opaque: bool = False, learn_alpha: bool = True, soft: bool = True,
                 t_start: float | None = None, t_end: float | None = None) -> None:
        super().__init__()
        if not (isinstance(alpha_init, (int, float)) and math.isfinite(alpha_init)
                and 0 < alpha_init < TWO_PI):
            raise ConfigError(f"alpha_init: must be a phase in (0, 2π) radians, got {alpha_init!r}")
        if fixed_level not in (0, 1) or isinstance(fixed_level, bool):
            raise ConfigError(f"fixed_level: must be 0 or 1, got {fixed_level!r}")
        self.alpha_init = float(alpha_init)
        self.fixed_level = int(fixed_level)
        self.soft = bool(soft)
        delta = min(self.alpha_init, TWO_PI - self.alpha_init)
        self.t_start = float(t_start) if t_start is not None else 2.0 / delta
        self.t_end = float(t_end) if t_end is not None else 64.0 / delta
        for name, value in (("t_start", self.t_start), ("t_end", self.t_end)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be a temperature > 0 (1/rad), got {value!r}")
        self.epoch, self.n_epochs = 0, 1
        self.opaque = bool(opaque)
        alpha = torch.tensor(self.alpha_init)
        if learn_alpha:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)
        mask = None
        if fixed_mask is not None:
            mask = torch.as_tensor(np.asarray(fixed_mask))
            if mask.dtype != torch.bool or mask.ndim != 2:
                raise ConfigError(
                    "fixed_mask: expected a bool (ny, nx) array, "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
        self.register_buffer("fixed_mask", mask)

    def table(self) -> Tensor:
        """``[1, exp(iα)]`` (+ ``0`` when opaque), complex, ``(2,)`` or ``(3,)``."""
        one = torch.ones((), dtype=self.alpha.dtype, device=self.alpha.device)
        levels = [torch.polar(one, 0 * self.alpha), torch.polar(one, self.alpha)]
        if self.opaque:
            levels.append(torch.polar(0 * one, 0 * self.alpha))
        return torch.stack(levels)

    def _bits(self, raw: Tensor) -> Tensor:
        u = torch.remainder(raw.detach(), TWO_PI)
        a = self.alpha.detach().to(raw.dtype)
        return (circular_distance(u, a) < circular_distance(u, 0.0)).to(torch.int64)

    def indices(self, raw: Tensor) -> Tensor:
        idx = self._bits(raw)
        if self.fixed_mask is not None:
            fixed = 2 if self.opaque else self.fixed_level
            idx = torch.where(self.fixed_mask.to(raw.device), fixed, idx)
        return idx

    def set_progress(self, epoch: int, n_epochs: int) -> None:
        self.epoch, self.n_epochs = int(epoch), max(1, int(n_epochs))

    def temperature(self) -> float:
        """Soft-path temperature (1/rad): linear from t_start to t_end over the epochs."""
        p = min(1.0, self.epoch / max(1, self.n_epochs - 1))
        return self.t_start + p * (self.t_end - self.t_start)

    @staticmethod
    def _soft_phase(u: Tensor, alpha: Tensor, t: float) -> Tensor:
        """PSQ staircase over the two levels {0, α} of the circle: steps of height α at α/2 and
        2π − α at π + α/2 (plus the tails of neighbouring periods), so the phase rises
        monotonically from 0 to 2π ≡ 0 and the transmission is periodic; differentiable in α."""
        reach = 16.0 / t  # beyond this a step's tail is < e^-16
        # α is read back once per call (not once per step below): on a GPU each read waits
        # for the device
        a = float(alpha.detach())
        steps = ((alpha, alpha / 2, a / 2), (TWO_PI - alpha, math.pi + alpha / 2,
                                             math.pi + a / 2))
        out = torch.zeros_like(u)
        n_max = int(math.ceil(reach / TWO_PI)) + 1
        for n in range(-n_max, n_max + 1):
            for gap, mid, mid_host in steps:
                c = mid + TWO_PI * n
                if not -reach <= mid_host + TWO_PI * n <= TWO_PI + reach:
                    continue
                out = out + gap * (torch.sigmoid(t * (u - c)) - (1.0 if n < 0 else 0.0))
        return out

    def forward(self, raw: Tensor) -> Tensor:
        u = torch.remainder(raw, TWO_PI)
        alpha = self.alpha.to(raw.dtype)
        if self.soft:
            q = self._soft_phase(u, alpha, self.temperature())
        else:
            q = alpha * self._bits(raw).to(raw.dtype) + (u - u.detach())
        out = torch.polar(torch.ones_like(q), q)
        if self.fixed_mask is None:
            return out
        fixed = self.table().to(dtype=out.dtype, device=out.device)[
            2 if self.opaque else self.fixed_level]
        return torch.where(self.fixed_mask.to(raw.device), fixed, out)

    def hard(self, raw: Tensor) -> Tensor:
        """``table()[indices(raw)]`` in ``raw``'s complex dtype (complex64 for float32)."""
        t = self.table().to(device=raw.device)
        t = t.to(torch.complex128 if raw.dtype == torch.float64 else torch.complex64)
        return t[self.indices(raw)]

    def describe(self) -> dict[str, Any]:
        return {"method": "binary", "alpha": float(self.alpha.detach()),
                "alpha_init": self.alpha_init, "fixed_level": self.fixed_level,
                "opaque": self.opaque, "soft": self.soft, "t_start": self.t_start,
                "t_end": self.t_end,
                "bits_per_pixel": stored_bits_per_pixel(
                    None if self.fixed_mask is None else self.fixed_mask.cpu().numpy())}


def stored_bits_per_pixel(mask: np.ndarray | None) -> float:
    """Bits stored per pixel of a binary layer: the fraction of free pixels × 1 bit.

    Args:
        mask: bool array (any shape, e.g. ``(ny, nx)`` or ``(K, ny, nx)``), True = fixed pixel
            (stores no bit); None = no fixed pixels.

    Returns:
        bits per pixel in ``[0, 1]``.
    """
    if mask is None:
        return 1.0
    m = np.asarray(mask, dtype=bool)
    return float(1.0 - m.mean()) if m.size else 1.0

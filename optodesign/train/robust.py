"""Error-aware training: ``[fabrication] errors = FILE`` trains under sampled fabrication errors.

The error file is the one verify reads (:func:`optodesign.variation.spec.load_errors`: the same
names, units and magnitudes). Every training step draws ``samples`` realisations of the
errors, scaled by a curriculum (0 → ``strength`` over the first ``ramp`` fraction of the
epochs), scores each with the task loss and optimises a statistic of them: ``mean``, or
``p5`` (the mean of the worst 5 % of the samples, at least one: the conditional value at risk
whose limit is verify's 5th-percentile gate).

THIN TORCH STAND-IN. The other developer (issue #12) is rewriting
:mod:`optodesign.variation` as batched torch models that verify applies. Until those land,
:class:`ErrorSampler` applies the current error model here, on the layers' transmissions, for
a thin relief (phase ``φ = 2π (n − 1) h / λ``), and is to be REPLACED by the variation models
(one implementation) when they do:

* ``height_sigma`` / ``height_scale`` / ``height_scale_sigma`` / ``height_offset``: phase
  errors ``2π (n − 1) Δh / λ`` (per pixel, or proportional to the height);
* ``index_error`` / ``index_sigma``: the phase scaled by ``(n + Δn − 1) / (n − 1)``;
* ``wavelength_shift``: the phase scaled by ``λ / (λ + Δλ)``;
* ``misalignment``: each layer shifted by a whole number of pixels drawn from ``N(0, σ)``;
* ``linewidth_bias``: raised regions grown (or shrunk) by the fraction ``bias / pitch`` of a
  one-pixel grey dilation (erosion) of the phase map;
* ``rotation`` and ``spacing_sigma`` are not applied here (verify applies them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ErrorSampler", "Robust", "aggregate"]

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class Robust:
    """``[fabrication]`` error-aware training settings.

    Attributes:
        errors: the errors file (verify's format).
        samples: error realisations per step. strength: the magnitudes' scale at full
        curriculum. ramp: fraction of the epochs over which the scale rises from 0.
        statistic: ``mean`` or ``p5``.
    """

    errors: str
    samples: int = 4
    strength: float = 1.0
    ramp: float = 0.5
    statistic: str = "mean"

    def scale(self, epoch: int, n_epochs: int) -> float:
        """The curriculum: ``strength · min(1, (epoch + 1) / (ramp · n_epochs))``."""
        if self.ramp <= 0:
            return self.strength
        return self.strength * min(1.0, (epoch + 1) / max(1.0, self.ramp * n_epochs))


def aggregate(losses: Tensor, statistic: str) -> Tensor:
    """``mean`` of the per-sample losses, or ``p5``: the mean of the worst 5 % (>= 1)."""
    if statistic == "mean":
        return losses.mean()
    k = max(1, math.ceil(0.05 * losses.numel()))
    return torch.topk(losses, k).values.mean()


class ErrorSampler:
    """Draws fabricated realisations of the layers' transmissions (THIN STAND-IN, module
    docstring).

    Args:
        model: an :class:`optodesign.variation.spec.ErrorModel` (SI units, rotation degrees).
        n: the relief's refractive index; wavelength, pitch: metres.
        seed: base seed; each call draws from ``(seed, step)``.
    """

    def __init__(self, model: object, *, n: float, wavelength: float, pitch: float,
                 seed: int = 0) -> None:
        self.m = model
        self.n, self.wavelength, self.pitch, self.seed = float(n), float(wavelength), \
            float(pitch), int(seed)

    def _g(self, step: int, sample: int) -> torch.Generator:
        return torch.Generator().manual_seed(hash((self.seed, step, sample)) & 0x7FFFFFFF)

    def sample(self, ts: list[Tensor], *, scale: float, step: int, sample: int) -> list[Tensor]:
        """One realisation of every layer ``(ny, nx)`` complex, errors scaled by ``scale``."""
        m, g = self.m, self._g(step, sample)
        k = TWO_PI * (self.n - 1.0) / self.wavelength  # phase per metre of height
        out = []
        for t in ts:
            amp = t.abs()
            phi = torch.remainder(torch.angle(t), TWO_PI)
            dphi = torch.zeros_like(phi)
            height = phi / k
            factor = 1.0
            z = float(torch.randn((), generator=g))
            factor *= 1.0 + scale * (m.height_scale + m.height_scale_sigma * z)
            dn = scale * (m.index_error + m.index_sigma * float(torch.randn((), generator=g)))
            factor *= (self.n - 1.0 + dn) / (self.n - 1.0)
            if m.wavelength_shift:
                factor *= self.wavelength / (self.wavelength + scale * m.wavelength_shift)
            dphi = dphi + (factor - 1.0) * phi + k * scale * m.height_offset
            if m.height_sigma:
                noise = torch.randn(phi.shape, generator=g).to(phi.device)
                dphi = dphi + k * scale * m.height_sigma * noise
            if m.linewidth_bias:
                frac = min(1.0, abs(scale * m.linewidth_bias) / self.pitch)
                h4 = height[None, None]
                grown = (F.max_pool2d(h4, 3, 1, 1) if m.linewidth_bias > 0
                         else -F.max_pool2d(-h4, 3, 1, 1))[0, 0]
                dphi = dphi + k * frac * (grown - height)
            u = torch.polar(amp, phi + dphi)
            if m.misalignment:
                sy, sx = (int(round(float(torch.randn((), generator=g)) * scale
                                    * m.misalignment / self.pitch)) for _ in range(2))
                if sy or sx:
                    u = torch.roll(u, shifts=(sy, sx), dims=(-2, -1))
            out.append(u)
        return out

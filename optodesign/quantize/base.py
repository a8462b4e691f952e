"""The quantizer interface shared by every phase and complex quantizer.

A quantizer turns a layer's raw learnable parameter into the layer's complex transmission.
It owns the level table (the only transmissions the fab can make) and, where the method has
them, learnable quantizer parameters (a learnable temperature, a learned codebook). It never
owns the raw layer parameter: the model does.

Raw parameters:
    phase quantizers      real tensor ``(..., ny, nx)``, radians.
    complex quantizers    real tensor ``(..., ny, nx, 2)`` holding (Re, Im).

Paths:
    ``forward(raw)``    training path (soft / straight-through / full precision, per the
                        current schedule), complex transmission ``(..., ny, nx)``.
    ``indices(raw)``    hard level index per pixel, int64 ``(..., ny, nx)``.
    ``hard(raw)``       ``table[indices(raw)]``: what evaluation and export always use.

Schedules are a pure function of the epoch (``set_progress``), so a resumed run is identical
to an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Quantizer"]


class Quantizer(nn.Module):
    """Base class. Subclasses implement ``forward``, ``indices``, ``table`` and ``init_raw``."""

    #: "phase" (raw is a real phase map) or "complex" (raw has a trailing (Re, Im) axis).
    raw_kind: str = "phase"

    def table(self) -> Tensor:
        """Complex transmission of each level, shape ``(L,)`` (complex64 or complex128)."""
        raise NotImplementedError

    @property
    def n_levels(self) -> int:
        return int(self.table().shape[0])

    def forward(self, raw: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def indices(self, raw: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def hard(self, raw: Tensor) -> Tensor:
        """Hard-quantized complex transmission, same shape as ``forward``'s output."""
        t = self.table()
        idx = self.indices(raw)
        return t.to(device=idx.device)[idx]

    def init_raw(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        """A fresh raw parameter for a layer of ``shape == (ny, nx)`` (uniform random phase)."""
        phase = torch.rand(shape, generator=generator, dtype=dtype) * (2 * torch.pi)
        if self.raw_kind == "phase":
            return phase
        return torch.stack((torch.cos(phase), torch.sin(phase)), dim=-1)

    def pre(self, raw: Tensor) -> Tensor:
        """The raw weights the levels are read from: ``raw`` itself, or ``raw`` after a
        fabrication constraint's length scale (:mod:`.constraints`); the full-precision path
        of training reads them too."""
        return raw

    def prepare(self, raw: Tensor) -> Tensor:
        """Map raw values into the quantizer's domain before QAT starts (phases wrapped to
        [0, 2π)); called by the trainer at the start of quantization-aware training."""
        if self.raw_kind == "phase":
            return torch.remainder(raw, 2 * torch.pi)
        return raw

    def set_progress(self, epoch: int, n_epochs: int) -> None:
        """Set schedule state for ``epoch`` (0-based) of ``n_epochs``. Default: nothing."""

    def regularization(self) -> Tensor:
        """Scalar added to the loss (LT's temperature regulariser); zero by default."""
        return torch.zeros(())

    def describe(self) -> dict[str, Any]:
        """JSON-able description for ``design.json``."""
        return {"method": type(self).__name__}

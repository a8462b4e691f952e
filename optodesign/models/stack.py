"""The learnable part of a multi-layer diffractive element: raw parameters + quantizers."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..quantize.base import Quantizer

__all__ = ["DiffractiveStack"]

Mode = Literal["train", "hard"]


class DiffractiveStack(nn.Module):
    """K layers of ``shape`` pixels; layer i's transmission is ``quantizers[i](raw[i])``.

    Holds only learnable parameters (the raw maps and the quantizers' own parameters); the
    physics lives in :func:`optodesign.models.functional.forward_stack`.
    """

    def __init__(self, quantizers: list[Quantizer], shape: tuple[int, int], *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.quantizers = nn.ModuleList(quantizers)
        self.raw = nn.ParameterList(
            [nn.Parameter(q.init_raw(self.shape, generator=generator)) for q in quantizers]
        )

    def __len__(self) -> int:
        return len(self.raw)

    def transmissions(self, mode: Mode = "train") -> list[Tensor]:
        """Complex ``(ny, nx)`` transmission per layer: training path or hard levels."""
        if mode == "hard":
            return [q.hard(r) for q, r in zip(self.quantizers, self.raw)]
        return [q(r) for q, r in zip(self.quantizers, self.raw)]

    @torch.no_grad()
    def prepare(self) -> None:
        """Wrap raw phases into the quantizers' domain (called when QAT starts)."""
        for q, r in zip(self.quantizers, self.raw):
            r.copy_(q.prepare(r))

    def set_progress(self, epoch: int, n_epochs: int) -> None:
        for q in self.quantizers:
            q.set_progress(epoch, n_epochs)

    def regularization(self) -> Tensor:
        # a quantizer's 0-d CPU zero is added as a scalar: copying it to the GPU would
        # synchronise host and device once per layer and step
        return sum((q.regularization() for q in self.quantizers),
                   torch.zeros((), device=self.raw[0].device))

    @torch.no_grad()
    def levels(self) -> np.ndarray:
        """Hard level index maps ``(K, ny, nx)`` int16."""
        return np.stack([q.indices(r).cpu().numpy() for q, r in zip(self.quantizers, self.raw)]
                        ).astype(np.int16)

    @torch.no_grad()
    def level_tables(self) -> np.ndarray:
        """Complex level tables ``(K, L)`` complex128."""
        return np.stack([q.table().detach().cpu().numpy().astype(np.complex128)
                         for q in self.quantizers])

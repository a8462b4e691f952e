"""Beam splitter: a unit plane wave split into an array of equal spots.

The loss trades efficiency (energy in the spot boxes) against uniformity (the spots' std /
mean); the metrics are the efficiency and the uniformity ``1 − (max − min)/(max + min)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import Box, Prepared, Task, TaskSetup, box_membership, read_boxes, read_number

if TYPE_CHECKING:
    from torch import Tensor

    from ..train.config import Config

__all__ = ["Splitter", "SplitterSetup"]


@dataclass(frozen=True)
class SplitterSetup(TaskSetup):
    """Attributes:
        spot_boxes: one box ``(y0, x0, h, w)`` per spot on the output plane (pixels).
        uniformity_weight: weight of the std/mean term of the loss.
    """

    name: ClassVar[str] = "splitter"

    spot_boxes: tuple[Box, ...]
    uniformity_weight: float = 1.0

    v1_extra_keys: ClassVar[tuple[str, ...]] = ("spot_boxes",)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> SplitterSetup:
        return cls(read_boxes(data.get("spot_boxes"), "setup.spot_boxes", shape=shape,
                              required=True),
                   read_number(data.get("uniformity_weight", 1.0), "setup.uniformity_weight",
                               positive=False))

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> SplitterSetup:
        """Format 1 kept the boxes in ``extra.spot_boxes``."""
        extra = meta.get("extra", {}) if isinstance(meta.get("extra"), dict) else {}
        return cls(read_boxes(extra.get("spot_boxes"), "extra.spot_boxes", shape=shape,
                              required=True))


class Splitter(Task):
    """An array of equal spots under unit plane-wave illumination."""

    setup_type = SplitterSetup
    name = setup_type.name
    loss_kind = "splitter (-efficiency + std/mean)"
    primary_metric = "uniformity"
    metric_names = ("uniformity", "efficiency")
    default_drop: ClassVar[dict[str, float]] = {"uniformity": 0.05, "efficiency": 0.02}
    default_target_kind = "spots"

    setup: SplitterSetup

    @classmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        from ..data.targets import spot_array, spot_boxes

        t, shape = cfg.target, (cfg.optics.size, cfg.optics.size)
        boxes = spot_boxes(shape, t.spots, t.spacing, t.spot_size)
        return Prepared(SplitterSetup(tuple(tuple(b) for b in boxes)),  # type: ignore[misc]
                        spot_array(shape, t.spots, t.spacing, t.spot_size))

    def boxes(self) -> list[list[int]]:
        return [list(b) for b in self.setup.spot_boxes]

    def observed(self) -> np.ndarray:
        return box_membership(self.boxes(), self.shape)[0]

    def read(self, intensity: Tensor) -> Tensor:
        """Spot energies / incident energy ``(..., B, C)``."""
        from ..models.functional import detector_energies

        return detector_energies(intensity, self.setup.spot_boxes) / self.incident

    def read_observed(self, intensity: Tensor) -> Tensor:
        import torch

        member = self.tensor("member", lambda: torch.as_tensor(
            box_membership(self.boxes(), self.shape)[1], device=self.device))
        return (intensity @ member) / self.incident

    def loss_of(self, reading: Tensor, labels: Tensor | None = None) -> Tensor:
        """−(efficiency) + w · (std / mean) of the spot energies: ``(..., B, C)`` ->
        ``(...)``."""
        e = reading
        spread = e.std(-1) / e.mean(-1).clamp_min(1e-20)
        return (-e.sum(-1) + self.setup.uniformity_weight * spread).mean(-1)

    def metrics(self, intensity: Tensor) -> dict[str, Any]:
        """Efficiency (spot energy / incident) and uniformity 1 − (max − min)/(max + min)."""
        from ..models.functional import detector_energies

        n = len(self.setup.spot_boxes)
        e = detector_energies(intensity, self.setup.spot_boxes).reshape(-1, n)[0] / self.incident
        hi, lo = e.max().item(), e.min().item()
        return {"efficiency": e.sum().item(), "uniformity": 1 - (hi - lo) / max(hi + lo, 1e-30)}

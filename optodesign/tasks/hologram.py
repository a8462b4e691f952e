"""Hologram: a unit plane wave in, a target intensity pattern out (text, an image, spots).

The loss is the mean squared error between the best-scaled output intensity and the target
(maximum 1), so it ignores the overall power; the metrics are the PSNR at that scale and the
diffraction efficiency into the target's support.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import Prepared, SetupError, Task, TaskSetup

if TYPE_CHECKING:
    from torch import Tensor

    from ..train.config import Config

__all__ = ["Hologram", "HologramSetup"]


@dataclass(frozen=True)
class HologramSetup(TaskSetup):
    """No fields: the target intensity is the design's ``target`` array (design.npz)."""

    name: ClassVar[str] = "hologram"

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> HologramSetup:
        return cls()

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> HologramSetup:
        return cls()

    def check(self, *, shape: tuple[int, int], target: np.ndarray | None) -> None:
        super().check(shape=shape, target=target)
        if target is None:
            raise SetupError("target: a hologram needs its target array")


def fit_scale(intensity: Tensor, target: Tensor) -> Tensor:
    """Least-squares scale s minimising ||s I − T||² over the last axis (so the loss ignores
    power): ``(..., P)`` -> ``(..., 1)``."""
    num = (intensity * target).sum(-1, keepdim=True)
    den = (intensity * intensity).sum(-1, keepdim=True).clamp_min(1e-30)
    return num / den


class Hologram(Task):
    """A target intensity pattern under unit plane-wave illumination."""

    setup_type = HologramSetup
    name = setup_type.name
    loss_kind = "hologram mse"
    primary_metric = "psnr"
    metric_names = ("psnr", "efficiency")
    default_drop: ClassVar[dict[str, float]] = {"psnr": 1.0, "efficiency": 0.02}
    default_target_kind = "text"

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        from ..errors import ConfigError

        if cfg.target.kind == "image" and cfg.target.image is None:
            raise ConfigError("target.image: required when target.kind = 'image' (a PNG/JPEG "
                              "or .npy path)")

    @classmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        from ..data.targets import image_target, spot_array, text_target

        t, shape = cfg.target, (cfg.optics.size, cfg.optics.size)
        target = (image_target(t.image, shape, pitch=cfg.optics.pitch, size=t.size,
                               centre=t.centre) if t.kind == "image" and t.image else
                  spot_array(shape, t.spots, t.spacing, t.spot_size)
                  if t.kind == "spots" else text_target(t.text, shape))
        return Prepared(HologramSetup(), target)

    def target_flat(self) -> Tensor:
        return self.tensor("target_flat", lambda: self.target().flatten())

    def read(self, intensity: Tensor) -> Tensor:
        return intensity.flatten(-2)

    def read_observed(self, intensity: Tensor) -> Tensor:
        return intensity  # every pixel is observed

    def loss_of(self, reading: Tensor, labels: Tensor | None = None) -> Tensor:
        """Mean squared error of the best-scaled intensity to the target: ``(..., B, P)`` ->
        ``(...)``."""
        t = self.target_flat()
        return ((fit_scale(reading, t) * reading - t) ** 2).mean(-1).mean(-1)

    def metrics(self, intensity: Tensor) -> dict[str, Any]:
        """PSNR (dB, target peak 1, best scale) and diffraction efficiency (energy inside the
        target support T > 0.1 / incident energy)."""
        i, t = intensity.flatten(), self.target_flat()
        mse = ((fit_scale(i, t) * i - t) ** 2).mean().item()
        eff = i[t > 0.1].sum().item() / self.incident
        return {"psnr": 10 * math.log10(1.0 / max(mse, 1e-30)), "efficiency": eff}

"""Fourier hologram: a unit plane wave in, a target intensity in the far field out.

The target appears at infinity, or in the back focal plane of an ideal lens of focal length
``f`` (the config's last distance, which is not propagated: the output plane is the far field,
:attr:`Fourier.output_plane`; give 0 for angles only, or ``f`` to place an image target with
``[target] size`` / ``centre`` in the focal plane). The output plane has the design's shape:
cell ``(i, j)`` is the square of directions ``Δ sin θ = λ / (n p)`` wide around
``sin θx = λ (j − nx // 2) / (nx p)``, ``λ f / (n p)`` wide in the focal plane, holding the
far-field energy that falls into it (:mod:`optodesign.optics.farfield`: the far field on the
window zero-padded by ``pad``, binned onto the cells, so the light between the cells' centres
is counted too). ``[target] size`` and ``centre`` are lengths in that focal plane.

Loss and metrics are the hologram's (:mod:`optodesign.tasks.hologram`): the mean squared error
of the best-scaled intensity to the target, PSNR, diffraction efficiency into the target's
support (cells with T > 0.1, energy / incident), plus the normalised correlation
``Σ I T / sqrt(Σ I² Σ T²)``. A point-like cell holds at most ~60 % of the energy aimed at it
(the square aperture's sinc² spills into the neighbouring cells), so extended targets score a
higher efficiency than isolated single-cell spots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UserError
from .base import Prepared, read_number
from .hologram import Hologram, HologramSetup

if TYPE_CHECKING:
    from torch import Tensor

    from ..train.config import Config

__all__ = ["Fourier", "FourierSetup", "cell_pitch"]


def cell_pitch(*, wavelength: float, focal_length: float, size: int, pitch: float) -> float:
    """Size of an output cell in the focal plane, metres: ``λ f / (n p)``."""
    return wavelength * focal_length / (size * pitch)


@dataclass(frozen=True)
class FourierSetup(HologramSetup):
    """Attributes:
        focal_length: metres, of the ideal Fourier lens (the config's last distance; it only
            scales the focal-plane coordinates, ``x = λ f sin θ / λ``).
    """

    name: ClassVar[str] = "fourier"

    focal_length: float = 0.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> FourierSetup:
        f = data.get("focal_length", 0.0)
        return cls(focal_length=read_number(f, "setup.focal_length", positive=False))

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> FourierSetup:
        return cls()


class Fourier(Hologram):
    """A target intensity in the far field under unit plane-wave illumination."""

    setup_type = FourierSetup
    name = setup_type.name
    output_plane = "far_field"
    loss_kind = "far-field hologram mse"
    metric_names = ("psnr", "efficiency", "correlation")
    default_drop: ClassVar[dict[str, float]] = {"psnr": 1.0, "efficiency": 0.02,
                                                "correlation": 0.02}

    setup: FourierSetup

    @classmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        from ..data.targets import image_target, spot_array, text_target

        o, t = cfg.optics, cfg.target
        shape = (o.size, o.size)
        f = o.distances[-1]
        cell = (cell_pitch(wavelength=o.wavelength, focal_length=f, size=o.size,
                           pitch=o.pitch) if f > 0 else None)
        if cell is None and t.kind == "image" and (t.size is not None or any(t.centre)):
            from ..errors import ConfigError

            raise ConfigError("target.size: lengths in the far field need a focal plane: give "
                              "the Fourier lens's focal length as the last optics distance")
        target = (image_target(t.image, shape, pitch=cell, size=t.size, centre=t.centre)
                  if t.kind == "image" and t.image else
                  spot_array(shape, t.spots, t.spacing, t.spot_size)
                  if t.kind == "spots" else text_target(t.text, shape))
        return Prepared(FourierSetup(focal_length=f), target)

    def observed(self) -> np.ndarray:
        raise UserError(f"{self.name}: refine scores output amplitudes pixel by pixel; the "
                        f"far-field cells integrate intensity, so refine does not implement them")

    def metrics(self, intensity: Tensor) -> dict[str, Any]:
        """The hologram's PSNR and efficiency, and the normalised correlation with the target."""
        out = super().metrics(intensity)
        i, t = intensity.flatten().double(), self.target_flat().double()
        den = math.sqrt(max((i * i).sum().item() * (t * t).sum().item(), 1e-300))
        out["correlation"] = (i * t).sum().item() / den
        return out

"""Lens: a unit plane wave focused onto the centre of the output plane.

**Strehl ratio, as trained and as reported.** The Strehl ratio is the peak intensity of the
focus divided by that of the ideal continuous (hyperbolic) lens of the same aperture, both
read as the *largest intensity in the focal disk* (radius λf/D, the central lobe of a square
aperture's focus, at least one pixel) around the design focus: a focus that a fabrication
error moves by a fraction of its width is still the focus, and is not scored as a drop to
the side of its lobe (verify applies misalignments and rotations of the same order). On an
ideal or a well-quantized lens the peak is on the axis, so the value equals the on-axis
reading.

The loss is the negative Strehl ratio of the same reading (the metric the task reports and
verify tolerances), and training starts from the ideal lens phase
(:meth:`Lens.initial_phase`): quantization-aware training then optimises the quantized (and,
with a process, design-rule-legal) lens from the continuous optimum rather than from noise.
The focal efficiency (energy within 1.5× the disk radius / incident) is reported too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..grid import Grid
from ..units import wrap_phase
from .base import Prepared, Task, TaskSetup, read_int, read_number

if TYPE_CHECKING:
    from torch import Tensor

    from ..train.config import Config

__all__ = ["Lens", "LensSetup", "focus_radius", "ideal_lens_phase"]


@dataclass(frozen=True)
class LensSetup(TaskSetup):
    """Attributes:
        focal_length: metres (the last distance).
        focus_radius: radius of the focal disk the loss reads, pixels (>= 1).
        ideal_peak: on-axis intensity of the ideal continuous lens (the Strehl reference).
    """

    name: ClassVar[str] = "lens"

    focal_length: float
    focus_radius: int
    ideal_peak: float

    v1_extra_keys: ClassVar[tuple[str, ...]] = ("focal_length", "focus_radius", "ideal_peak")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> LensSetup:
        return cls._parse(data, "setup.")

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> LensSetup:
        """Format 1 kept them in ``extra``."""
        extra = meta.get("extra", {}) if isinstance(meta.get("extra"), dict) else {}
        return cls._parse(extra, "extra.")

    @classmethod
    def _parse(cls, data: Mapping[str, Any], where: str) -> LensSetup:
        # focal_length is informational (the last distance); older files may lack it
        f = data.get("focal_length")
        return cls(focal_length=0.0 if f is None else read_number(f, f"{where}focal_length"),
                   focus_radius=read_int(data.get("focus_radius"), f"{where}focus_radius",
                                         low=1),
                   ideal_peak=read_number(data.get("ideal_peak"), f"{where}ideal_peak"))


def focus_radius(*, wavelength: float, focal_length: float, aperture: float, pitch: float) -> int:
    """Radius (pixels, >= 1) of the central lobe of a square aperture's focus: λ f / D."""
    return max(1, round(wavelength * focal_length / aperture / pitch))


def ideal_lens_phase(grid: Grid, *, wavelength: float, focal_length: float) -> np.ndarray:
    """Continuous phase ``(ny, nx)`` of an ideal (hyperbolic) lens on ``grid``, wrapped to
    [0, 2π): φ = −2π/λ (sqrt(x² + y² + f²) − f), with x, y the grid's coordinates (the
    optical axis through the centre of pixel (ny//2, nx//2))."""
    y, x = grid.y(), grid.x()
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return wrap_phase(-2 * np.pi / wavelength * (np.sqrt(r2 + focal_length**2) - focal_length))


def _disk(shape: tuple[int, int], radius: float) -> np.ndarray:
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    return (yy - ny // 2) ** 2 + (xx - nx // 2) ** 2 <= radius**2


class Lens(Task):
    """Focus a unit plane wave onto the centre of the output plane."""

    setup_type = LensSetup
    name = setup_type.name
    loss_kind = "focus (-Strehl: peak in the focal disk / ideal lens peak)"
    primary_metric = "strehl"
    metric_names = ("strehl", "efficiency")
    default_drop: ClassVar[dict[str, float]] = {"strehl": 0.05, "efficiency": 0.02}
    default_target_kind = "focus"

    setup: LensSetup

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        from ..errors import ConfigError

        if cfg.optics.layers != 1:
            raise ConfigError("optics.layers: a lens is a single layer (layers = 1)")

    @classmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        o = cfg.optics
        f = o.distances[-1]
        radius = focus_radius(wavelength=o.wavelength, focal_length=f,
                              aperture=o.size * o.pitch, pitch=o.pitch)
        return Prepared(LensSetup(focal_length=f, focus_radius=radius,
                                  ideal_peak=ideal_peak(cfg)))

    def observed(self) -> np.ndarray:
        return np.flatnonzero(_disk(self.shape, self.setup.focus_radius).ravel())

    def read_observed(self, intensity: Tensor) -> Tensor:
        return intensity  # the focal disk

    def loss_of(self, reading: Tensor, labels: Tensor | None = None) -> Tensor:
        """Negative Strehl ratio: the largest intensity in the focal disk over the ideal
        lens's, ``(..., B, P)`` -> ``(...)``."""
        return -(reading.amax(-1) / self.setup.ideal_peak).mean(-1)

    def initial_phase(self, grid: Grid, wavelength: float) -> np.ndarray | None:
        """The ideal lens phase (:func:`ideal_lens_phase`) at the setup's focal length."""
        if not self.setup.focal_length > 0:
            return None
        return ideal_lens_phase(grid, wavelength=wavelength,
                                focal_length=self.setup.focal_length)

    def under(self, evaluator: Any) -> Lens:
        """The lens with its reference, the ideal lens's peak, simulated under
        ``evaluator``'s model: the continuous hyperbolic phase drawn on the evaluator's own
        samples about its optical axis (``evaluator.coordinates()``) and read as the design
        is read (verify's drawn models average each pixel's samples), so the Strehl ratio of
        a drawn model compares the drawn design with the drawn ideal lens."""
        import dataclasses

        import torch

        f = self.setup.focal_length
        if not f > 0:
            return self
        y, x = evaluator.coordinates()
        lam = evaluator.design.wavelength
        phase = -2 * np.pi / lam * (np.sqrt(y[:, None] ** 2 + x[None, :] ** 2 + f**2) - f)
        t = torch.polar(torch.ones(phase.shape, dtype=torch.float64),
                        torch.as_tensor(phase)).to(torch.complex64).to(evaluator.device)
        d = evaluator.design.distances  # one lens, at the last layer's focal distance
        with torch.no_grad():
            inten = evaluator.output_intensity(evaluator.plane_wave(), [t],
                                               distances=(d[0], d[-1]))[0]
        disk = torch.as_tensor(_disk(self.shape, self.setup.focus_radius), device=inten.device)
        peak = float(inten[disk].max())
        setup = dataclasses.replace(self.setup, ideal_peak=peak)
        return type(self)(setup, shape=self.shape, target=self.target_array,
                          device=self.device)

    #: half-width of the plots' zoomed view of the focus, in Airy radii (1.22 λ f / D)
    zoom_airy_radii: ClassVar[float] = 3.0

    def zoom_box(self) -> list[int] | None:
        """The focus enlarged in plots: a square centred on the focus pixel, reaching
        :attr:`zoom_airy_radii` Airy radii (1.22 λ f / D, from the setup's focal-disk radius
        λ f / D) to each side; None when that covers the output plane."""
        ny, nx = self.shape
        half = math.ceil(self.zoom_airy_radii * 1.22 * self.setup.focus_radius)
        if 2 * half + 1 >= min(ny, nx):
            return None
        return [ny // 2 - half, nx // 2 - half, 2 * half + 1, 2 * half + 1]

    def metrics(self, intensity: Tensor) -> dict[str, Any]:
        """Focal efficiency (energy within 1.5x the central-lobe radius / incident) and Strehl
        ratio (the largest intensity in the focal disk / the ideal lens's, module
        docstring)."""
        import torch

        disk15 = self.tensor("disk15", lambda: torch.as_tensor(
            _disk(self.shape, 1.5 * self.setup.focus_radius), device=intensity.device))
        disk = self.tensor("disk", lambda: torch.as_tensor(
            _disk(self.shape, self.setup.focus_radius), device=intensity.device))
        return {"efficiency": intensity[..., disk15].sum().item() / self.incident,
                "strehl": intensity[..., disk].max().item() / self.setup.ideal_peak}


def ideal_peak(cfg: Config) -> float:
    """Peak output intensity of the ideal continuous lens of ``cfg``'s aperture: the largest
    in the focal disk (on the axis, for the ideal lens)."""
    import torch

    from ..models.functional import forward_stack

    o, grid = cfg.optics, cfg.optics.grid
    phase = ideal_lens_phase(grid, wavelength=o.wavelength, focal_length=o.distances[-1])
    t = torch.polar(torch.ones(grid.shape), torch.as_tensor(phase, dtype=torch.float32))
    u = forward_stack(torch.ones((1, *grid.shape), dtype=torch.complex64), [t], o.distances,
                      grid=grid, wavelength=o.wavelength)
    f = o.distances[-1]
    radius = focus_radius(wavelength=o.wavelength, focal_length=f, aperture=o.size * o.pitch,
                          pitch=o.pitch)
    return float((u.abs() ** 2)[0][torch.as_tensor(_disk(grid.shape, radius))].max())

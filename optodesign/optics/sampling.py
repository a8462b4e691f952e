"""Sampling checks for :mod:`~optodesign.optics.propagation`: can a padded grid represent a
propagation (:func:`check_sampling`, from the geometry alone), and what does it do to *this*
field (:func:`sampling_loss`: the energy the band limit removes and the energy that walks past
the zero padding and wraps around)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..grid import Grid

__all__ = ["SamplingReport", "SamplingWarning", "SamplingError", "check_sampling",
           "sampling_loss", "LOSS_TOLERANCE"]


class SamplingWarning(UserWarning):
    """The grid represents the propagation only approximately; the message says what to change."""


class SamplingError(UserError):
    """The grid cannot represent the propagation at all; the result would be meaningless."""


@dataclass(frozen=True)
class SamplingReport:
    """How well a padded window of pitch ``pitch`` represents a propagation over ``distance``.

    Attributes:
        band_fraction: fraction (0..1] of the usable frequency radius min(1/(2 pitch), 1/λ)
            that survives the band limit along the worse axis (1 = nothing removed).
        spread: lateral walk-off (metres) of the steepest wave the grid carries,
            |z|·tan(θ) with sin θ = min(1, λ / (2 pitch)).
        margin: zero-padding on each side of the field (metres), along the smaller axis.
        problems: human-readable warnings (empty when the sampling is fine).
        fatal: True when the result would be meaningless.
    """

    band_fraction: float
    spread: float
    margin: float
    problems: tuple[str, ...]
    fatal: bool


def _validate(grid: Grid, distance: float, wavelength: float) -> None:
    """The grid validated its own shape, pitch and pad; check what travels beside it."""
    if not isinstance(grid, Grid):
        raise UserError(f"grid: expected an optodesign.grid.Grid, got {type(grid).__name__}")
    if not isinstance(wavelength, (int, float)) or not math.isfinite(wavelength) or \
            wavelength <= 0:
        raise UserError(f"wavelength: must be a finite length > 0 in metres, got "
                        f"{wavelength!r}")
    if not isinstance(distance, (int, float)) or not math.isfinite(distance):
        raise UserError(f"distance: must be a finite length in metres, got {distance!r}")


def _band_limit(n_padded: int, pitch: float, wavelength: float, distance: float) -> float:
    """Matsushima & Shimobaba (2009) eq. (13): |f| < 1 / (λ sqrt((2 Δf z)² + 1)), Δf = 1/S."""
    df = 1.0 / (n_padded * pitch)
    return 1.0 / (wavelength * math.sqrt((2.0 * df * distance) ** 2 + 1.0))


def check_sampling(
    grid: Grid,
    distance: float,
    *,
    wavelength: float,
    bandlimit: bool = True,
) -> SamplingReport:
    """Check that a grid can represent a propagation; see :class:`SamplingReport`.

    Args:
        grid: the unpadded field's sampling (shape, pitch) and its zero-padding factor.
        distance: propagation distance in metres (sign ignored).
        wavelength: wavelength in the medium, metres.
        bandlimit: whether the Matsushima band limit will be applied.
    """
    _validate(grid, distance, wavelength)
    z = abs(distance)
    shape, pitch, pad = grid.shape, grid.pitch, grid.pad
    nyp, nxp = grid.padded().shape
    usable = min(1.0 / (2 * pitch), 1.0 / wavelength)
    fraction = min(1.0, min(_band_limit(n, pitch, wavelength, z) for n in (nyp, nxp)) / usable)
    sin_t = min(1.0, wavelength / (2 * pitch))
    spread = z * sin_t / math.sqrt(max(1e-12, 1 - sin_t**2)) if sin_t < 1 else math.inf
    if z == 0:
        spread = 0.0
    margin = min((nyp - shape[0]), (nxp - shape[1])) * pitch / 2
    problems: list[str] = []
    fatal = False
    if bandlimit and fraction < 0.5:
        # The grid keeps little of the band; whether that matters depends on the field's
        # spectrum, which propagate() measures on its first call for a geometry.
        fatal = min(_band_limit(n, pitch, wavelength, z) * n * pitch for n in (nyp, nxp)) < 2
        problems.append(
            f"the padded window ({nxp}x{nyp} px at {pitch:.4g} m) is small for distance "
            f"{z:.4g} m: the band limit keeps only {100 * fraction:.0f}% of the frequency band; "
            f"increase pad (now {pad:g}), or reduce the distance"
        )
    if not bandlimit and fraction < 1.0:
        # Without the band limit the sampled transfer function aliases where its local
        # frequency exceeds the sampling rate, i.e. beyond the Matsushima limit.
        problems.append(
            f"the transfer function is aliased at distance {z:.4g} m "
            f"({100 * (1 - fraction):.0f}% of the band); use bandlimit=True or increase pad "
            f"(now {pad:g})"
        )
    return SamplingReport(fraction, spread, margin, tuple(problems), fatal)


#: energy fraction of a field's spectrum that may be lost to sampling before propagate() warns
LOSS_TOLERANCE = 0.01


@torch.no_grad()
def sampling_loss(field: Tensor, distance: float, *, grid: Grid, wavelength: float,
                  bandlimit: bool = True) -> tuple[float, float]:
    """What ``grid`` does to *this* field over ``distance``: the fraction of its propagating
    energy the band limit removes, and the fraction that walks further than the zero padding
    (wraps around), summed over every field of the batch. Evanescent energy is not counted.

    Returns:
        ``(band_limit_loss, wrap_loss)``, fractions in [0, 1].
    """
    _validate(grid, distance, wavelength)
    grid.check_field(field.shape)
    nyp, nxp = grid.padded().shape
    spectrum = torch.fft.fft2(field.detach().to(torch.complex128), s=(nyp, nxp))
    report = check_sampling(grid, distance, wavelength=wavelength, bandlimit=bandlimit)
    removed, lost = _losses(spectrum, report, grid=grid, distance=distance,
                            wavelength=wavelength, bandlimit=bandlimit)
    return removed, lost


def _losses(spectrum: Tensor, report: SamplingReport, *, grid: Grid, distance: float,
            wavelength: float, bandlimit: bool) -> tuple[float, float]:
    """Band-limit and wrap-around energy fractions of a padded spectrum (see
    :func:`sampling_loss`)."""
    nyp, nxp = spectrum.shape[-2:]
    pitch = grid.pitch
    power = (spectrum.abs() ** 2).reshape(-1, nyp, nxp).sum(0).to(torch.float64)
    total = power.sum().item()
    if total == 0:
        return 0.0, 0.0
    fy = torch.fft.fftfreq(nyp, d=pitch, dtype=torch.float64, device=power.device)
    fx = torch.fft.fftfreq(nxp, d=pitch, dtype=torch.float64, device=power.device)
    s2 = (wavelength**2) * (fy[:, None] ** 2 + fx[None, :] ** 2)
    propagating = s2 < 1
    z = abs(distance)
    keep = propagating
    removed = 0.0
    if bandlimit:
        keep = propagating & (fy.abs()[:, None] < _band_limit(nyp, pitch, wavelength, z)) & (
            fx.abs()[None, :] < _band_limit(nxp, pitch, wavelength, z))
        removed = power[propagating & ~keep].sum().item() / total
    lost = 0.0
    if report.margin > 0:
        walk = z * torch.sqrt(s2 / torch.clamp(1 - s2, min=1e-12))
        lost = power[keep & (walk > 2 * report.margin)].sum().item() / total
    return removed, lost


@torch.no_grad()
def _field_problems(spectrum: Tensor, report: SamplingReport, *, grid: Grid, distance: float,
                    wavelength: float, bandlimit: bool) -> list[str]:
    """What the grid does to *this* field: energy removed by the band limit (window too small
    for the distance) and energy that walks off further than the zero padding (wraps around).
    Evanescent energy is dropped by physics and not counted."""
    nyp, nxp = spectrum.shape[-2:]
    z = abs(distance)
    removed, lost = _losses(spectrum, report, grid=grid, distance=distance,
                            wavelength=wavelength, bandlimit=bandlimit)
    problems = []
    if bandlimit and removed > LOSS_TOLERANCE:
        problems.append(
            f"the band limit removed {100 * removed:.1f}% of the field's energy: the padded "
            f"window ({nxp}x{nyp} px at {grid.pitch:.4g} m) is too small for distance "
            f"{z:.4g} m; increase pad (now {grid.pad:g}) or reduce the distance"
        )
    elif not bandlimit and report.band_fraction < 1:
        problems.extend(p for p in report.problems if "aliased" in p)
    if lost > LOSS_TOLERANCE:
        problems.append(
            f"{100 * lost:.1f}% of the field's energy travels at angles that walk more than "
            f"twice the zero padding ({report.margin:.4g} m per side) over {z:.4g} m and "
            f"wraps around the window; increase pad (now {grid.pad:g})"
        )
    return problems

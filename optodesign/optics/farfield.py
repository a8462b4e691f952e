"""The far field (Fraunhofer), or the back focal plane of an ideal lens: one centred FFT.

A field ``u(x, y)`` leaving the last layer, observed at infinity (or in the back focal plane of
an ideal lens of focal length ``f``), is its Fourier transform

    U(νx, νy) = Σ u(x, y) exp(−2πi (νx x + νy y)),   sin θx = λ νx,   x_f = λ f νx,

with ``(x, y)`` the grid's coordinates (the optical axis through the centre of pixel
``(ny // 2, nx // 2)``, so the phase of ``U`` is referred to the axis) and ``θ`` the angle to
the axis (direction cosines). :func:`far_field` evaluates it on the window zero-padded by the
integer factor ``P = ceil(pad)``: ``(P ny, P nx)`` samples ``Δν = 1 / (P n p)`` apart, centred
(zero frequency at index ``(P n) // 2``, the package's centre convention), Parseval-normalised
(``Σ |U|² = Σ |u|²``: the unnormalised FFT / sqrt(number of samples)).

**The output plane of a far-field task** (:func:`far_field_intensity`) has the design's shape:
*cell* ``(i, j)`` is the square of directions ``Δν = 1 / (n p)`` wide (``Δ sin θ = λ / (n p)``,
``λ f / (n p)`` in the focal plane) centred on ``ν = (j − nx // 2) / (nx p)``, the native
sampling of an ``n``-pixel aperture, and its value is the energy falling into it (a camera
pixel of that size): the integral of the continuous far-field intensity over the cell, not its
value at the centre, so the light between the cells' centres counts too. It is computed
exactly from the far field on the window zero-padded by at least 2: the intensity of an
``n``-sample field is a trigonometric polynomial with lags below ``n`` (its autocorrelation),
held without aliasing by ``2 n`` samples, and the cell average multiplies lag ``l`` by
``sinc(l / n)``. A larger ``pad`` changes nothing but the cost (verify's convergence ladder
raises it and sees no change, tested); the total is the field's energy (Parseval).

**A periodic element** (``periodic=True``, a grating of period ``n p``, one period sampled):
its far field is the discrete set of diffraction orders ``sin θ = m λ / (n p)``, and the
efficiency of order ``m`` is exactly ``|c_m|²``, the squared DFT coefficient of one period's
transmission (thin element, unit incident plane wave): the unpadded DFT, one cell per order,
order ``(0, 0)`` at pixel ``(ny // 2, nx // 2)``. Padding would only sample the far field of a
single isolated period, so ``pad`` is ignored.

**Pixels, not points.** A fabricated element is made of flat-topped pixels of width ``p``: its
far field is the sampled one times one pixel's ``sinc²(p νx) sinc²(p νy)``, which
:func:`far_field_intensity` applies at the cells' centres (``pixels=True``; it varies little
across a cell): a grating's order ``m`` of an
``n``-pixel period then carries ``sinc²(m / n)`` (an ``n``-step staircase ramp: the
multilevel-optics result), and a 50 % binary 0/π grating exactly ``(2 / π)²`` in its first
orders for any ``n``. The light outside ``|sin θ| < λ / (2 p)`` (the pixel lattice's own
orders) is not on the output plane.

**Drawn models** (verify's ``oversample = s``: ``s`` samples per design pixel, pitch ``p / s``):
the same window with finer pixels has ``s`` times more cells per axis; the design's output
plane is its central ``(ny, nx)`` cells, divided by ``s²`` (the energy scale of the design's
pixels), which is what ``oversample`` does here. The ``s`` sub-pixels' array factor times their
``sinc²(p ν / s)`` is exactly one pixel's ``sinc²(p ν)``, so an undistorted drawing scores as
under the training model; what oversampling adds is the drawing itself (line-width bias,
sub-pixel shifts).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from ..grid import Grid
from .propagation import _fft_dtype

__all__ = ["far_field", "far_field_intensity", "far_field_factor", "pixel_envelope",
           "directions", "focal_plane"]


def far_field_factor(pad: float) -> int:
    """The integer zero-padding factor of the far-field FFT: ``ceil(pad)``, at least 1."""
    if not (math.isfinite(pad) and pad >= 1):
        raise UserError(f"pad: must be a finite number >= 1, got {pad!r}")
    return max(1, math.ceil(pad - 1e-9))


def far_field(field: Tensor, grid: Grid, *, pad: float | None = None) -> Tensor:
    """The centred, Parseval-normalised far field of ``field`` (see the module docstring).

    Args:
        field: complex ``(..., ny, nx)`` on ``grid`` (differentiable).
        grid: the field's sampling.
        pad: zero-padding factor (default ``grid.pad``), rounded up to an integer ``P``.

    Returns:
        complex ``(..., P ny, P nx)``: ``U`` at ``νx = (j − (P nx) // 2) / (P nx p)``.
    """
    if not isinstance(field, Tensor) or not field.is_complex() or field.ndim < 2:
        raise UserError("field: expected a complex torch tensor (..., ny, nx)")
    grid.check_field(field.shape)
    p = far_field_factor(grid.pad if pad is None else pad)
    ny, nx = grid.shape
    # the axis pixel (ny//2, nx//2) to index 0 of the padded window: phases referred to the axis
    u = torch.roll(field, shifts=(-(ny // 2), -(nx // 2)), dims=(-2, -1)) if p == 1 else \
        _axis_first(field, (p * ny, p * nx))
    # the unnormalised forward FFT, scaled here, in the dtype the platform check accepts for
    # this size: some MKL builds mis-scale a *scaled* complex64 FFT of 2048² (norm="ortho"
    # included; see propagation._fft_dtype and README, "Platform notes")
    m = u.shape[-2] * u.shape[-1]
    compute = _fft_dtype((u.shape[-2], u.shape[-1]), u.dtype, u.device)
    spec = torch.fft.fft2(u.to(compute)) * (1.0 / math.sqrt(m))
    return torch.fft.fftshift(spec, dim=(-2, -1)).to(field.dtype)


def _axis_first(field: Tensor, padded: tuple[int, int]) -> Tensor:
    """``field`` zero-padded to ``padded`` with its axis pixel at index (0, 0) (wrapped)."""
    ny, nx = field.shape[-2:]
    out = field.new_zeros((*field.shape[:-2], *padded))
    out[..., :ny, :nx] = field
    return torch.roll(out, shifts=(-(ny // 2), -(nx // 2)), dims=(-2, -1))


def _cell_integral(intensity: Tensor, n: int, p: int, dim: int) -> Tensor:
    """The energy in each of the ``n`` cells along ``dim`` of a centred far-field intensity
    sampled ``p >= 2`` times per cell: exact for the far field of an ``n``-sample field.

    ``I(ν)`` is then a trigonometric polynomial with lags ``|l| < n`` (the field's
    autocorrelation), which ``p n >= 2 n`` samples hold without aliasing; its average over the
    cell ``[ν_k − Δ/2, ν_k + Δ/2]`` (``Δ = 1 / (n p)``) multiplies lag ``l`` by ``sinc(l / n)``.
    Returns ``p ×`` that average at the cell centres (so the cells sum to the samples' sum).
    """
    m = p * n
    moved = intensity.movedim(dim, -1).to(torch.float64)
    a = torch.fft.ifft(torch.fft.ifftshift(moved, dim=-1))  # lags l, FFT order
    lags = torch.fft.fftfreq(m, d=1.0 / m, dtype=torch.float64, device=a.device)
    w = torch.where(lags.abs() < n, torch.sinc(lags / n), torch.zeros_like(lags))
    smooth = torch.fft.fftshift(torch.fft.fft(a * w).real, dim=-1)
    c0 = m // 2 - p * (n // 2)  # index of cell 0's centre
    return (p * smooth[..., c0::p][..., :n]).to(intensity.dtype).movedim(-1, dim)


def pixel_envelope(n: int) -> np.ndarray:
    """``sinc²(p ν)`` at the ``n`` cell centres ``ν = (k − n // 2) / (n p)`` of one axis: the
    far field of one flat-topped pixel relative to the axis (``np.sinc(x) = sin πx / πx``)."""
    return np.sinc((np.arange(n) - n // 2) / n) ** 2


def far_field_intensity(field: Tensor, grid: Grid, *, pad: float | None = None,
                        periodic: bool = False, oversample: int = 1,
                        pixels: bool = True) -> Tensor:
    """Far-field energy per output cell (module docstring): real ``(..., ny / s, nx / s)``.

    Args:
        field: complex ``(..., ny, nx)`` leaving the last layer, on ``grid``.
        pad: default ``grid.pad``; at least 2 is used (exact cell integrals), more changes
            nothing but the cost; ignored when ``periodic``.
        periodic: ``field`` is one period of a grating: the order efficiencies ``|c_m|²`` x
            the incident energy, one cell per order (no padding).
        oversample: ``s``, samples per design pixel of ``grid`` (verify's drawn models): the
            central ``(ny / s, nx / s)`` cells, divided by ``s²``.
        pixels: the samples are flat-topped pixels of the grid's pitch (a fabricated element),
            not points: each cell is multiplied by one pixel's ``sinc²(p νx) sinc²(p νy)`` at
            its centre (exact for a grating's orders), the far field of the pixelated element
            (the energy beyond the cells, in the pixel lattice's higher orders, is lost to the
            output plane). ``s`` sub-pixels of pitch ``p / s`` times their envelope are one
            pixel of pitch ``p``, so the drawn models agree with the training model.
    """
    ny, nx = grid.shape
    if periodic:
        u = far_field(field, grid, pad=1)
        cells = u.real**2 + u.imag**2
    else:
        p = max(2, far_field_factor(grid.pad if pad is None else pad))
        u = far_field(field, grid, pad=p)
        cells = _cell_integral(_cell_integral(u.real**2 + u.imag**2, ny, p, -2), nx, p, -1)
    if pixels:
        ey, ex = (torch.as_tensor(pixel_envelope(n), dtype=cells.dtype, device=cells.device)
                  for n in (ny, nx))
        cells = cells * ey[:, None] * ex[None, :]
    if oversample == 1:
        return cells
    s = int(oversample)
    if ny % s or nx % s:
        raise UserError(f"oversample: {s} does not divide the grid {ny}x{nx}")
    my, mx = ny // s, nx // s
    y0, x0 = ny // 2 - my // 2, nx // 2 - mx // 2
    return cells[..., y0:y0 + my, x0:x0 + mx] / (s * s)


def directions(grid: Grid, wavelength: float, *, pad: float = 1.0) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Direction sines ``(sin θy, sin θx)`` of the samples of :func:`far_field` with ``pad``
    (``pad = 1``: the cells of :func:`far_field_intensity`, or a grating's orders):
    ``sin θ = λ (j − m // 2) / (m p)`` with ``m = P n``. Values beyond 1 are evanescent."""
    p = far_field_factor(pad)
    out = []
    for n in grid.shape:
        m = p * n
        out.append(wavelength * (np.arange(m) - m // 2) / (m * grid.pitch))
    return out[0], out[1]


def focal_plane(grid: Grid, wavelength: float, focal_length: float, *,
                pad: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(y, x)`` in metres in the back focal plane of an ideal (paraxial) lens of
    focal length ``f``: ``x = λ f ν`` (:func:`directions` / λ × f); pitch ``λ f / (P n p)``."""
    sy, sx = directions(grid, wavelength, pad=pad)
    return sy * focal_length, sx * focal_length

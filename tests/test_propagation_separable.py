"""The separable (paraxial) path of propagate() against exact physics and the exact transfer.

Where the angular-spectrum phase factors into a y and an x part to within
``SEPARABLE_TOLERANCE`` radians over the whole passband (large pixels, e.g. LightRidge's 36 µm
at 532 nm), propagate() runs two 1-D convolutions instead of a 2-D one. These tests pin it to
the analytic Gaussian beam, to the textbook non-separable transfer function
within the stated bound, to its own gradients, and check that it is refused where it would be
wrong and that the platform FFT self-check probes its calls.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optodesign
from optodesign.grid import Grid
from optodesign.optics import propagation as prop
from optodesign.optics.propagation import (
    SEPARABLE_TOLERANCE,
    separable_transfer,
    transfer_function,
)

WL, PITCH, Z = 532e-9, 36e-6, 0.3  # LightRidge's D2NN tutorial geometry


def random_field(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64))


def exact(u: torch.Tensor, grid: Grid, z: float = Z, wl: float = WL) -> torch.Tensor:
    """The textbook band-limited ASM in complex128 with the full 2-D transfer function."""
    ny, nx = grid.shape
    padded = grid.padded().shape
    h = transfer_function(padded, z, pitch=grid.pitch, wavelength=wl, dtype=torch.complex128)
    return torch.fft.ifft2(torch.fft.fft2(u, s=padded) * h)[..., :ny, :nx]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(torch.complex128) - b).norm() / b.norm())


def test_paraxial_gaussian_beam_matches_the_analytic_field(threads) -> None:
    """Amplitude, wavefront curvature, Gouy phase and exp(ikz) of a Gaussian beam."""
    grid = Grid((256, 256), PITCH)
    assert separable_transfer(grid.padded().shape, Z, pitch=PITCH, wavelength=WL) is not None
    w0 = 0.3e-3  # 8 pixels; Rayleigh range 0.53 m
    zr, k = math.pi * w0**2 / WL, 2 * math.pi / WL
    Y, X = grid.meshgrid()
    r2 = X**2 + Y**2
    u0 = torch.from_numpy(np.exp(-r2 / w0**2).astype(np.complex128))
    out = optodesign.propagate(u0, Z, grid=grid, wavelength=WL).numpy()
    w = w0 * math.sqrt(1 + (Z / zr) ** 2)
    radius = Z * (1 + (zr / Z) ** 2)
    ref = w0 / w * np.exp(-r2 / w**2 + 1j * (k * Z + k * r2 / (2 * radius)
                                            - math.atan(Z / zr)))
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert err < 1.5 * SEPARABLE_TOLERANCE


def test_separable_path_is_within_its_bound_of_the_exact_transfer(threads) -> None:
    grid = Grid((96, 80), PITCH, pad=2.0)
    padded = grid.padded().shape
    hy, hx = separable_transfer(padded, Z, pitch=PITCH, wavelength=WL, dtype=torch.complex128)
    h = transfer_function(padded, Z, pitch=PITCH, wavelength=WL, dtype=torch.complex128)
    product = hy[:, None] * hx[None, :]
    assert torch.equal(product.abs() > 0, h.abs() > 0)  # the same (band-limited) support
    worst = float(torch.angle(product * h.conj()).abs().max())
    assert 1e-5 < worst <= SEPARABLE_TOLERANCE  # a real approximation, inside its bound
    u = random_field((3, 96, 80))
    out = optodesign.propagate(u, Z, grid=grid, wavelength=WL)
    err = rel(out, exact(u, grid))
    assert 1e-7 < err <= worst  # unitary: the field error is at most the phase error
    single = optodesign.propagate(u.to(torch.complex64), Z, grid=grid, wavelength=WL)
    assert rel(single, out) < 1e-5


@pytest.mark.parametrize(("pitch", "z", "wl", "why"), [
    (0.4e-3, 0.03, 0.75e-3, "the THz D2NN pitch of 0.53 λ"),
    (2e-6, 0.02, 633e-9, "a 2 µm pitch: the non-separable phase is radians"),
    (36e-6, 0.3, 633e-9, "LightRidge's geometry at 633 nm: 1.1e-3 rad"),
])
def test_geometries_that_do_not_factor_keep_the_exact_transfer(pitch, z, wl, why) -> None:
    assert separable_transfer((400, 400), z, pitch=pitch, wavelength=wl) is None, why


def test_an_evanescent_passband_is_never_factored() -> None:
    # λ > 2 pitch: the corners of the frequency square are evanescent, the support a disc
    assert separable_transfer((64, 64), 1e-9, pitch=0.4e-6, wavelength=1e-6,
                              bandlimit=False) is None


def test_separable_gradients_match_the_exact_transfer(threads) -> None:
    grid, z = Grid((6, 8), PITCH, pad=1.5), 0.01
    assert separable_transfer(grid.padded().shape, z, pitch=PITCH, wavelength=WL) is not None
    u = random_field((2, 6, 8), seed=3).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: optodesign.propagate(x, z, grid=grid, wavelength=WL), (u,))
    weight = random_field((6, 8), seed=4).abs()
    out = optodesign.propagate(u, z, grid=grid, wavelength=WL)
    ((out.real**2 + out.imag**2) * weight).sum().backward()
    v = u.detach().clone().requires_grad_(True)
    ref = exact(v, grid, z)
    ((ref.real**2 + ref.imag**2) * weight).sum().backward()
    assert rel(u.grad, v.grad) < 2 * SEPARABLE_TOLERANCE


def test_self_check_probes_the_separable_calls(monkeypatch, caplog, threads) -> None:
    """A mis-scaled complex64 1-D inverse FFT of the padded x length is caught, and
    propagate() falls back to complex128 for the separable calls."""
    grid = Grid((40, 36), PITCH, pad=2.0)
    nxp = grid.padded().shape[1]
    real_ifft = torch.fft.ifft

    def broken(x, *args, **kwargs):
        out = real_ifft(x, *args, **kwargs)
        if x.dtype == torch.complex64 and kwargs.get("dim", -1) in (-1, x.ndim - 1) and \
                x.shape[-1] == nxp:
            out = out / nxp
        return out

    monkeypatch.setattr(torch.fft, "ifft", broken)
    monkeypatch.setattr(prop, "_fft_checked", {})
    u = random_field((2, 40, 36), seed=5)
    with caplog.at_level("WARNING", logger="optodesign.optics.propagation"):
        low = optodesign.propagate(u.to(torch.complex64), Z, grid=grid, wavelength=WL)
    assert low.dtype == torch.complex64
    assert rel(low, optodesign.propagate(u, Z, grid=grid, wavelength=WL)) < 1e-5
    assert "fails its round trip" in caplog.text
    assert [v for k, v in prop._fft_checked.items()
            if k[1] == torch.complex64 and k[5] is not None] == [torch.complex128]


def test_tolerance_is_the_minimax_split_of_the_leading_cross_term() -> None:
    """The remainder is ≈ π z λ³ Fy² Fx² / 8 at its worst (¼ of the Taylor split's)."""
    grid = Grid((200, 200), PITCH, pad=2.0)
    padded = grid.padded().shape
    hy, hx = separable_transfer(padded, Z, pitch=PITCH, wavelength=WL, dtype=torch.complex128)
    h = transfer_function(padded, Z, pitch=PITCH, wavelength=WL, dtype=torch.complex128)
    worst = float(torch.angle(hy[:, None] * hx[None, :] * h.conj()).abs().max())
    f = 1 / (2 * PITCH)
    assert worst == pytest.approx(math.pi * Z * WL**3 * f**4 / 8, rel=0.02)

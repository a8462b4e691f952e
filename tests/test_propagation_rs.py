"""The Rayleigh–Sommerfeld convolution (``Grid(method="rs")``) against independent methods.

``propagate`` on a grid of ``method = "rs"`` convolves the samples with the sampled first
Rayleigh–Sommerfeld kernel through the FFT, on a window of 2n samples per axis. These tests
pin it to the direct O(N⁴) sum of the same integral (written here in numpy, no FFT), to the
angular spectrum on a Gaussian beam that stays inside the window (two methods, one field), to
its own gradients, and check that it refuses the geometries whose kernel it cannot sample.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optodesign
from optodesign.errors import UserError
from optodesign.grid import Grid
from optodesign.optics.propagation import SamplingError
from optodesign.optics.rayleigh import rs_problems

LAM, PITCH = 0.75e-3, 0.4e-3  # the THz D2NN examples: 0.53 λ


def direct_sum(u: np.ndarray, d: float, z: float, lam: float) -> np.ndarray:
    """``Σ u(x') z e^{ikr} (1/r − ik) / (2π r²) δ²`` at every sample, by brute force."""
    ny, nx = u.shape
    k = 2 * np.pi / lam
    yy, xx = np.meshgrid(np.arange(ny) * d, np.arange(nx) * d, indexing="ij")
    out = np.empty_like(u)
    for i in range(ny):
        for j in range(nx):
            r = np.sqrt((yy - yy[i, j]) ** 2 + (xx - xx[i, j]) ** 2 + z * z)
            g = z / (2 * np.pi) * np.exp(1j * k * r) / r**2 * (1 / r - 1j * k) * d * d
            out[i, j] = (u * g).sum()
    return out


@pytest.mark.parametrize("s", [1, 2])
def test_equals_the_direct_rayleigh_sommerfeld_sum(threads, s: int) -> None:
    """A 4-level phase layer of 24 × 20 pixels (non-square, to catch a swapped axis), drawn at
    s samples per pixel, 2 cm: the FFT convolution at pad 2 is the direct sum."""
    rng = np.random.default_rng(s)
    u = np.exp(1j * np.pi / 2 * rng.integers(0, 4, (24, 20)))
    u = np.repeat(np.repeat(u, s, 0), s, 1)
    d, z = PITCH / s, 0.02
    ref = direct_sum(u, d, z, LAM)
    grid = Grid(u.shape, d, pad=2, method="rs")
    for dtype, tol in ((torch.complex128, 1e-12), (torch.complex64, 1e-5)):
        got = optodesign.propagate(torch.as_tensor(u).to(dtype)[None].repeat(3, 1, 1), z,
                                   grid=grid, wavelength=LAM)
        assert got.dtype == dtype and got.shape == (3, *u.shape)
        err = np.linalg.norm(got[1].to(torch.complex128).numpy() - ref) / np.linalg.norm(ref)
        assert err < tol, (dtype, err)
    # the band-limited angular spectrum at the same pad is far off (it cuts wide angles)
    asm = optodesign.propagate(torch.as_tensor(u), z, grid=Grid(u.shape, d, pad=2),
                               wavelength=LAM).numpy()
    assert np.linalg.norm(asm - ref) / np.linalg.norm(ref) > 0.05


def test_gaussian_beam_agrees_with_the_angular_spectrum(threads) -> None:
    """A Gaussian beam (waist 8 λ) that stays inside the window: the RS convolution and the
    angular spectrum (pad 4; its band limit cuts nothing the beam carries) are two methods for
    one field; they agree to
    1e-6, and both keep the beam's energy and match the analytic beam to its paraxial error."""
    d, n, z = LAM / 4, 256, 0.03
    w0 = 8 * LAM
    grid = Grid((n, n), d, pad=2, method="rs")
    Y, X = grid.meshgrid()
    r2 = X**2 + Y**2
    u0 = torch.from_numpy(np.exp(-r2 / w0**2).astype(np.complex128))
    rs = optodesign.propagate(u0, z, grid=grid, wavelength=LAM).numpy()
    asm = optodesign.propagate(u0, z, grid=Grid((n, n), d, pad=4), wavelength=LAM).numpy()
    assert np.linalg.norm(rs - asm) / np.linalg.norm(asm) < 1e-6
    energy = (np.abs(rs) ** 2).sum() / (np.abs(u0.numpy()) ** 2).sum()
    assert abs(energy - 1) < 1e-6
    zr, k = math.pi * w0**2 / LAM, 2 * math.pi / LAM
    w = w0 * math.sqrt(1 + (z / zr) ** 2)
    ref = w0 / w * np.exp(-r2 / w**2 + 1j * (k * z + k * r2 / (2 * z * (1 + (zr / z) ** 2))
                                            - math.atan(z / zr)))
    err = np.linalg.norm(rs - ref) / np.linalg.norm(ref)
    assert err < 1 / (k * w0) ** 2, err  # the paraxial beam's own error, ~1 / (k w0)²


def test_gradients_are_the_adjoint_convolution() -> None:
    grid = Grid((6, 5), PITCH, pad=2, method="rs")
    g = torch.Generator().manual_seed(0)
    u = torch.complex(torch.randn(2, 6, 5, generator=g, dtype=torch.float64),
                      torch.randn(2, 6, 5, generator=g, dtype=torch.float64))
    u.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: optodesign.propagate(x, 0.01, grid=grid, wavelength=LAM), (u,))


@pytest.mark.parametrize("grid, z, lam, field", [
    (Grid((32, 32), PITCH, pad=1.5, method="rs"), 0.02, LAM, "pad"),
    (Grid((32, 32), PITCH, pad=2, method="rs"), -0.02, LAM, "distance"),
    (Grid((32, 32), PITCH, pad=2, method="rs"), 2 * LAM, LAM, "distance"),
    # LightRidge's tutorial: 36 µm pixels at 532 nm over 0.3 m; the kernel aliases
    (Grid((200, 200), 36e-6, pad=2, method="rs"), 0.3, 532e-9, "pitch"),
])
def test_refuses_what_its_kernel_cannot_represent(grid, z, lam, field) -> None:
    problems = rs_problems(grid, z, lam)
    assert problems and problems[0].startswith(f"{field}:"), problems
    with pytest.raises(SamplingError, match=f"^{field}:"):
        optodesign.propagate(torch.zeros(grid.shape, dtype=torch.complex64), z, grid=grid,
                             wavelength=lam)


def test_admissible_geometries() -> None:
    # the quickstart at one sample per pixel (0.53 λ), and a metasurface at λ/2
    assert rs_problems(Grid((64, 64), PITCH, pad=2, method="rs"), 0.03, LAM) == []
    assert rs_problems(Grid((400, 400), 266e-9, pad=2, method="rs"), 1e-4, 532e-9) == []


def test_unknown_method_is_one_line() -> None:
    with pytest.raises(UserError, match="^method: must be one of asm, rs, got 'fft'$"):
        Grid((8, 8), PITCH, method="fft")

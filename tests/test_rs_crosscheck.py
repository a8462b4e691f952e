"""Verify's drawn model against direct Rayleigh–Sommerfeld integration (issue #12 item 5).

An independent simulator, written here in float64 numpy: the first Rayleigh–Sommerfeld
integral ``U(x) = ∫ U(x') z e^{ikr} (1/r − ik) / (2π r²) dA'`` evaluated as a direct sum over
the samples of verify's drawn grid (each design pixel held over ``s × s`` samples), plane by
plane through a two-layer D2NN of 32² pixels at the THz examples' pitch (0.53 λ). Nothing
here calls the angular spectrum; verify's side is :class:`~optodesign.verify.model.SimModel`
(its grid, the held inputs and layers, the pixel-averaged output).

Measured (s = 2, three propagations of 2 cm): the relative field error at the detector plane
falls from 19.6 % at pad 4 to 6.9 % at pad 8 and 1.5 % at pad 16, and the 12 predictions agree
at every pad. Issue #12 asks for 1e-3 in field, which the band-limited angular spectrum does
not reach at affordable padding for these wide-angle fields; this test holds what it does
reach (see docs/verify.md, "Simulation model").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optodesign.grid import Grid
from optodesign.models.functional import forward_stack
from optodesign.verify.model import SimModel, pixel_mean, upsample

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings(
    "ignore::optodesign.optics.propagation.SamplingWarning")]

LAM, PITCH, N, Z, S = 0.75e-3, 0.4e-3, 32, 0.02, 2


def rs_operator(m: int, d: float, z: float, lam: float) -> np.ndarray:
    """The (m², m²) matrix of the first RS integral between two m×m grids of spacing d."""
    k = 2 * np.pi / lam
    off = np.arange(-(m - 1), m) * d
    X, Y = np.meshgrid(off, off)
    r = np.sqrt(X**2 + Y**2 + z**2)
    kern = z / (2 * np.pi) * np.exp(1j * k * r) / r**2 * (1 / r - 1j * k) * d * d
    i = np.arange(m)
    yi, xi = (a.ravel() for a in np.meshgrid(i, i, indexing="ij"))
    return kern[yi[:, None] - yi[None, :] + m - 1, xi[:, None] - xi[None, :] + m - 1]


def d2nn() -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Two 4-level phase layers, 12 rectangular amplitude inputs, four 4-px detectors."""
    rng = np.random.default_rng(7)
    layers = np.exp(1j * np.pi / 2 * rng.integers(0, 4, (2, N, N)))
    inputs = np.zeros((12, N, N))
    for b in range(12):
        y, x = rng.integers(6, 18, 2)
        h, w = rng.integers(4, 10, 2)
        inputs[b, y:y + h, x:x + w] = 1
    boxes = [[6, 6, 4, 4], [6, 22, 4, 4], [22, 6, 4, 4], [22, 22, 4, 4]]
    return layers, inputs, boxes


def energies(inten: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
    return np.stack([inten[..., y:y + h, x:x + w].sum((-2, -1)) for y, x, h, w in boxes], -1)


def test_drawn_model_converges_to_rayleigh_sommerfeld() -> None:
    layers, inputs, boxes = d2nn()
    m = N * S
    op = rs_operator(m, PITCH / S, Z, LAM)
    u = np.repeat(np.repeat(inputs, S, 1), S, 2).reshape(len(inputs), -1).T
    for t in layers:
        u = (op @ u) * np.repeat(np.repeat(t, S, 0), S, 1).reshape(-1, 1)
    ref = (op @ u).T.reshape(len(inputs), m, m)
    ref_e = energies(pixel_mean(torch.as_tensor(np.abs(ref) ** 2), S).numpy(), boxes)

    design = Grid((N, N), PITCH)
    err, agree = {}, {}
    for pad in (4.0, 8.0, 16.0):
        model = SimModel(pad, S)
        f = upsample(torch.as_tensor(inputs, dtype=torch.complex128), S)
        ts = [upsample(torch.as_tensor(t), S) for t in layers]
        out = forward_stack(f, ts, [Z] * 3, grid=model.grid(design), wavelength=LAM).numpy()
        err[pad] = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
        e = energies(pixel_mean(torch.as_tensor(np.abs(out) ** 2), S).numpy(), boxes)
        agree[pad] = int((e.argmax(-1) == ref_e.argmax(-1)).sum())
    # the field converges towards the independent integral as the padding grows
    assert err[16.0] < err[8.0] < err[4.0], err
    assert err[16.0] < 0.03, err
    # and the predictions agree within one of twelve at the largest padding
    assert agree[16.0] >= len(inputs) - 1, agree

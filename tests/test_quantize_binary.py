"""1-bit phase quantizer with a learned step, fixed pixels, and the structural-zero cone mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optodesign.errors import ConfigError
from optodesign.quantize.binary import BinaryQuantizer, stored_bits_per_pixel
from optodesign.quantize.levels import circular_distance
from optodesign.quantize.structural import diffraction_half_angle, structural_mask

TWO_PI = 2 * math.pi


# ------------------------------------------------------------------------------ binary
def test_binary_two_levels_and_table() -> None:
    q = BinaryQuantizer(soft=False)
    raw = torch.linspace(-TWO_PI, 2 * TWO_PI, 3001)
    idx = q.indices(raw)
    assert sorted(torch.unique(idx).tolist()) == [0, 1]
    t = q.table()
    assert t.shape == (2,) and q.n_levels == 2
    assert torch.allclose(t, torch.tensor([1, -1], dtype=t.dtype), atol=1e-6)
    out = q(raw)
    assert torch.equal(out, q.hard(raw))  # forward value is exactly the hard level
    assert np.unique(np.round(out.detach().numpy(), 6)).size == 2
    # decision: closer on the circle to α = π than to 0
    x = torch.tensor([0.1, 1.5, 1.6, 3.0, 4.7, 4.8, 6.2])
    assert q.indices(x).tolist() == [0, 0, 1, 1, 1, 0, 0]
    assert torch.equal(q.indices(x), q.indices(x + TWO_PI))


@settings(max_examples=30, deadline=None)
@given(alpha=st.floats(0.3, TWO_PI - 0.3), xs=st.lists(st.floats(-20, 20), min_size=1,
                                                        max_size=20))
def test_binary_idempotent_and_nearest(alpha: float, xs: list[float]) -> None:
    q = BinaryQuantizer(alpha_init=alpha)
    x = torch.tensor(xs, dtype=torch.float64)
    idx = q.indices(x)
    levels = torch.tensor([0.0, alpha], dtype=torch.float64)
    assert torch.equal(q.indices(levels), torch.tensor([0, 1]))
    assert torch.equal(q.indices(levels[idx]), idx)
    d = torch.abs(torch.remainder(x[:, None] - levels[None] + math.pi, TWO_PI) - math.pi)
    chosen = d.gather(1, idx[:, None])[:, 0]
    assert torch.all(chosen <= d.min(dim=1).values + 1e-12)


def test_binary_gradients_reach_raw_and_alpha() -> None:
    q = BinaryQuantizer()
    raw = (torch.rand(6, 6, generator=torch.Generator().manual_seed(1)) * TWO_PI)
    raw.requires_grad_()
    w = torch.randn(6, 6, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    (q(raw) * w).real.sum().backward()
    assert raw.grad is not None and bool((raw.grad != 0).all())
    assert q.alpha.grad is not None and float(q.alpha.grad.abs()) > 0
    # α moves the "1" level: table follows
    with torch.no_grad():
        q.alpha.fill_(2.0)
    assert torch.allclose(q.table()[1], torch.polar(torch.tensor(1.0), torch.tensor(2.0)))
    assert BinaryQuantizer(learn_alpha=False).alpha.requires_grad is False


def test_binary_fixed_pixels_keep_their_level() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[0, :] = True
    mask[:, 4] = True
    raw = (torch.rand(5, 5, generator=torch.Generator().manual_seed(0)) * TWO_PI)
    for level in (0, 1):
        q = BinaryQuantizer(fixed_mask=mask, fixed_level=level, alpha_init=2.5, soft=False)
        r = raw.clone().requires_grad_()
        out = q(r)
        assert torch.all(q.indices(r)[torch.from_numpy(mask)] == level)
        want = q.table()[level].detach()
        assert torch.all(out[torch.from_numpy(mask)] == want)
        # changing raw at fixed pixels changes nothing
        assert torch.equal(q(r + 1.3 * torch.from_numpy(mask)), out)
        (out * (1 + 2j)).real.sum().backward()
        assert torch.all(r.grad[torch.from_numpy(mask)] == 0)
        assert torch.all(r.grad[~torch.from_numpy(mask)] != 0)


def test_binary_opaque_fixed_pixels() -> None:
    mask = np.eye(4, dtype=bool)
    q = BinaryQuantizer(fixed_mask=mask, opaque=True, soft=False)
    raw = torch.full((4, 4), 3.0)
    t = q.table()
    assert t.shape == (3,) and complex(t[2].detach()) == 0
    idx = q.indices(raw)
    assert torch.equal(idx[torch.from_numpy(mask)], torch.full((4,), 2))
    assert torch.all(idx[~torch.from_numpy(mask)] == 1)
    out = q(raw)
    assert torch.all(out[torch.from_numpy(mask)] == 0)
    assert torch.equal(out, q.hard(raw))
    d = q.describe()
    assert d["opaque"] is True and d["bits_per_pixel"] == pytest.approx(12 / 16)


def test_stored_bits_and_errors() -> None:
    assert stored_bits_per_pixel(None) == 1.0
    m = np.zeros((2, 4, 4), dtype=bool)
    m[0] = True
    assert stored_bits_per_pixel(m) == 0.5
    with pytest.raises(ConfigError, match="fixed_mask"):
        BinaryQuantizer(fixed_mask=np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="fixed_level"):
        BinaryQuantizer(fixed_level=2)
    with pytest.raises(ConfigError, match="alpha_init"):
        BinaryQuantizer(alpha_init=7.0)


# ------------------------------------------------------------------------------ structural
PITCH, WL = 400e-6, 750e-6  # THz D2NN: sin θ = λ / (2 p) = 0.9375


def tan_theta(pitch: float = PITCH, wl: float = WL) -> float:
    return math.tan(diffraction_half_angle(pitch, wl))


def test_single_detector_backward_cone_radius() -> None:
    n, c = 61, 30
    d_out = 1.2e-3
    r = d_out * tan_theta() / PITCH
    mask = structural_mask(shape=(n, n), pitch=PITCH, wavelength=WL,
                           distances=[5e-3, d_out], detectors=[[c, c, 1, 1]])
    assert mask.shape == (1, n, n) and mask.dtype == bool
    free = ~mask[0]
    iy, ix = np.nonzero(free)
    radius = np.hypot(iy - c, ix - c)
    # every free pixel's centre is within r of the detector pixel's area, and the free
    # region's extent along the axes equals r within a pixel
    assert radius.max() <= r + math.sqrt(0.5) + 1e-9
    on_axis = np.abs(ix[iy == c] - c).max()
    assert abs(on_axis - r) <= 1.0
    # by hand: sin θ = 0.9375, tan θ = 2.694, r = 1.2 mm · 2.694 / 0.4 mm = 8.08 px; the pixel
    # at |dx| = 8 has its centre 7.5 px from the detector pixel's edge -> free; |dx| = 9 (8.5 px)
    # is not
    assert r == pytest.approx(8.082, abs=1e-3) and on_axis == 8
    # symmetric disc
    assert np.array_equal(free, free.T) and np.array_equal(free, free[::-1])


def test_bigger_distance_frees_more_and_cone_grows() -> None:
    kw = dict(shape=(41, 41), pitch=PITCH, wavelength=WL, detectors=[[18, 18, 4, 4]])
    a = structural_mask(distances=[1e-3, 0.6e-3], **kw)
    b = structural_mask(distances=[1e-3, 1.2e-3], **kw)
    assert (~b).sum() > (~a).sum()
    assert np.all(~a <= ~b)  # the free region only grows
    # forward cone: a small input box, detectors covering the whole output plane
    kw2 = dict(shape=(41, 41), pitch=PITCH, wavelength=WL, detectors=[[0, 0, 41, 41]],
               input_box=[20, 20, 1, 1])
    f1 = structural_mask(distances=[0.6e-3, 1e-3], **kw2)
    f2 = structural_mask(distances=[1.2e-3, 1e-3], **kw2)
    assert (~f2).sum() > (~f1).sum() and np.all(~f1 <= ~f2)
    # zero throw to the layer: only the lit pixel is reachable
    f0 = structural_mask(distances=[0.0, 1e-3], **kw2)
    assert np.array_equal(np.argwhere(~f0[0]), [[20, 20]])


def test_two_layers_forward_and_backward_cones() -> None:
    n = 51
    d = [1e-3, 1e-3, 1e-3]
    mask = structural_mask(shape=(n, n), pitch=PITCH, wavelength=WL, distances=d,
                           detectors=[[25, 25, 1, 1]], input_box=[25, 25, 1, 1])
    assert mask.shape == (2, n, n)
    r1 = 1e-3 * tan_theta() / PITCH
    # layer 1: forward cone radius r1, backward 2 r1; layer 2: the reverse -> same free count
    free = (~mask).sum(axis=(1, 2))
    assert free[0] == free[1] > 0
    row = ~mask[0, 25]
    assert abs(np.abs(np.nonzero(row)[0] - 25).max() - r1) <= 1.0


def test_subwavelength_pitch_clips_sin_theta() -> None:
    assert diffraction_half_angle(200e-9, 532e-9) == pytest.approx(math.pi / 2)
    assert diffraction_half_angle(1e-6, 1e-6) == pytest.approx(math.asin(0.5))
    mask = structural_mask(shape=(20, 20), pitch=200e-9, wavelength=532e-9,
                           distances=[1e-9, 1e-9], detectors=[[0, 0, 1, 1]],
                           input_box=[19, 19, 1, 1])
    assert not mask.any()  # every direction allowed: any distance > 0 reaches everywhere
    at_output = structural_mask(shape=(20, 20), pitch=200e-9, wavelength=532e-9,
                                distances=[1e-9, 0.0], detectors=[[0, 0, 2, 3]])
    assert (~at_output[0]).sum() == 6  # a layer on the output plane: only the detector pixels


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"detectors": []}, "detectors"),
        ({"distances": [1e-3]}, "distances"),
        ({"distances": [1e-3, -1.0]}, "distances"),
        ({"pitch": 0.0}, "pitch"),
        ({"detectors": [[0, 0, 0, 2]]}, r"detectors\[0\]"),
        ({"input_box": [0, 0]}, "input_box"),
    ],
)
def test_structural_mask_errors(changes: dict, needle: str) -> None:
    kw = dict(shape=(8, 8), pitch=PITCH, wavelength=WL, distances=[1e-3, 1e-3],
              detectors=[[0, 0, 2, 2]])
    kw.update(changes)
    with pytest.raises(ConfigError, match=needle):
        structural_mask(**kw)


def test_soft_binary_is_periodic_and_hardens_to_the_two_levels() -> None:
    q = BinaryQuantizer(alpha_init=math.pi)
    raw = torch.linspace(-2 * math.pi, 4 * math.pi, 2001, dtype=torch.float64)
    # pixels more than 1 rad from a step
    away = (circular_distance(torch.remainder(raw, 2 * math.pi), 0.0)
            - circular_distance(torch.remainder(raw, 2 * math.pi), math.pi)).abs() > 2.0
    errors = []
    for epoch in range(5):
        q.set_progress(epoch, 5)
        errors.append((q(raw) - q.hard(raw))[away].abs().max().item())
    assert all(b < a for a, b in zip(errors, errors[1:]))  # hardens monotonically
    assert errors[-1] < 1e-6  # T·Δ = 64 at the end: the forward is the hard level off-boundary
    torch.testing.assert_close(q(raw), q(raw + 2 * math.pi))  # periodic in the phase
    raw = raw.clone().requires_grad_(True)
    q.set_progress(0, 5)
    q(raw).real.sum().backward()
    assert raw.grad.abs().sum() > 0 and q.alpha.grad is not None

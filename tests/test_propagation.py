"""Angular-spectrum propagation against exact physics (float64, relative errors)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import fresnel

import optodesign
from optodesign.errors import UserError
from optodesign.grid import Grid, GridMismatchError
from optodesign.optics.propagation import (
    SamplingError,
    SamplingWarning,
    check_sampling,
    transfer_function,
)

WL = 633e-9


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def gaussian(grid: Grid, w0: float, *, tilt_x: float = 0.0, tilt_y: float = 0.0) -> torch.Tensor:
    Y, X = grid.meshgrid()
    u = np.exp(-(X**2 + Y**2) / w0**2) * np.exp(1j * 2 * np.pi * (X * tilt_x + Y * tilt_y) / WL)
    return torch.from_numpy(u.astype(np.complex128))


def square_aperture_fresnel(x: np.ndarray, y: np.ndarray, a: float, z: float) -> np.ndarray:
    """Exact Fresnel diffraction of a unit plane wave by a square aperture [-a, a]^2.

    U = exp(ikz)/(2i) F(x) F(y), F(x) = [C(b2) - C(b1)] + i [S(b2) - S(b1)],
    b1,2 = sqrt(2/(λ z)) (∓a - x)  (Goodman, Introduction to Fourier Optics, §4.5.1).
    """

    def f(u: np.ndarray) -> np.ndarray:
        s = math.sqrt(2 / (WL * z))
        s1, c1 = fresnel(s * (-a - u))
        s2, c2 = fresnel(s * (a - u))
        return (c2 - c1) + 1j * (s2 - s1)

    return np.exp(1j * 2 * np.pi * z / WL) / 2j * f(y)[:, None] * f(x)[None, :]


def test_square_aperture_matches_fresnel_integrals() -> None:
    grid = Grid((1024, 1024), 2e-6)
    a = 0.25e-3  # half width: a 0.5 mm aperture = 250 pixels
    z = 0.02  # Fresnel number a²/(λz) ≈ 4.9, Fresnel approximation valid (z³ ≫ π r⁴ / 4λ)
    h = grid.pitch / 2  # sample at centres half a pixel off the axis: a symmetric aperture
    Y, X = grid.meshgrid()
    u0 = ((np.abs(X + h) < a) & (np.abs(Y + h) < a)).astype(np.complex128)
    out = optodesign.propagate(torch.from_numpy(u0), z, grid=grid, wavelength=WL)
    exact = square_aperture_fresnel(grid.x() + h, grid.y() + h, a, z)
    c = slice(512 - 150, 512 + 150)  # central region: the aperture's geometric shadow
    assert rel_l2(out.numpy()[c, c], exact[c, c]) < 1e-2


def second_moment_radius(intensity: np.ndarray, coords: np.ndarray) -> float:
    """1/e² radius of a Gaussian from the intensity's second moment along x: w = 2σ."""
    px = intensity.sum(axis=0)
    mean = (px * coords).sum() / px.sum()
    return 2 * math.sqrt(((coords - mean) ** 2 * px).sum() / px.sum())


def test_gaussian_beam_radius_follows_w_of_z() -> None:
    grid = Grid((512, 512), 2e-6)
    w0 = 40e-6
    zr = math.pi * w0**2 / WL
    for z in (0.5 * zr, zr, 2.5 * zr):
        out = optodesign.propagate(gaussian(grid, w0), z, grid=grid, wavelength=WL)
        w = second_moment_radius(out.abs().numpy() ** 2, grid.x())
        expected = w0 * math.sqrt(1 + (z / zr) ** 2)
        assert abs(w / expected - 1) < 0.01, (z, w, expected)


def test_zero_distance_is_identity() -> None:
    u = torch.randn(3, 32, 32, dtype=torch.complex128)
    assert torch.equal(optodesign.propagate(u, 0.0, grid=Grid((32, 32), 1e-6), wavelength=WL), u)


def test_forward_then_backward_returns_input_and_conserves_energy() -> None:
    grid = Grid((256, 256), 2e-6)
    u = gaussian(grid, 30e-6, tilt_x=0.02)
    z = 2e-3
    fwd = optodesign.propagate(u, z, grid=grid, wavelength=WL)
    back = optodesign.propagate(fwd, -z, grid=grid, wavelength=WL)
    assert rel_l2(back.numpy(), u.numpy()) < 1e-6
    e0, e1 = (u.abs() ** 2).sum().item(), (fwd.abs() ** 2).sum().item()
    assert abs(e1 / e0 - 1) < 1e-6


@pytest.mark.parametrize("axis", ["x", "y"])
def test_tilt_towards_plus_axis_moves_beam_towards_plus_axis(axis: str) -> None:
    grid = Grid((256, 256), 2e-6)
    sin_t = 0.05
    u = gaussian(grid, 30e-6, **{f"tilt_{axis}": sin_t})
    z = 2e-3
    out = optodesign.propagate(u, z, grid=grid, wavelength=WL).abs().numpy() ** 2
    profile = out.sum(axis=0 if axis == "x" else 1)
    coords = grid.x() if axis == "x" else grid.y()
    centroid = (profile * coords).sum() / profile.sum()
    expected = z * sin_t / math.sqrt(1 - sin_t**2)
    assert abs(centroid / expected - 1) < 0.01


def test_talbot_self_imaging_of_a_cosine_grating() -> None:
    period = 40e-6
    grid = Grid((400, 400), 2e-6, pad=1)  # 10 periods; a periodic field needs no padding
    x = grid.x()[None, :] * np.ones((400, 1))
    u0 = torch.from_numpy((1 + 0.5 * np.cos(2 * np.pi * x / period)).astype(np.complex128))
    # exact Talbot distance of a cosine grating λ / (1 - sqrt(1 - λ²/p²)) ≈ 2p²/λ (paraxial)
    z_t = 2 * period**2 / WL
    i0 = u0.abs().numpy() ** 2
    # the spectrum of a periodic field is discrete: H sampled on it is exact, no band limit
    kw = dict(grid=grid, wavelength=WL, bandlimit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        at_zt = optodesign.propagate(u0, z_t, **kw)
        at_half = optodesign.propagate(u0, z_t / 2, **kw)
    assert rel_l2(at_zt.abs().numpy() ** 2, i0) < 2e-3
    # half way, the image is shifted by half a period (contrast reversed)
    shifted = np.roll(i0, int(period / grid.pitch) // 2, axis=1)
    assert rel_l2(at_half.abs().numpy() ** 2, shifted) < 2e-3
    assert rel_l2(at_half.abs().numpy() ** 2, i0) > 0.1  # and not a trivial identity


def test_batched_equals_single_and_complex64_matches_complex128() -> None:
    grid = Grid((128, 128), 2e-6)
    batch = torch.stack([gaussian(grid, w, tilt_x=0.01) for w in (20e-6, 30e-6, 45e-6)])
    z = 1e-3
    together = optodesign.propagate(batch, z, grid=grid, wavelength=WL)
    for i in range(3):
        alone = optodesign.propagate(batch[i], z, grid=grid, wavelength=WL)
        assert torch.allclose(together[i], alone, rtol=0, atol=1e-12)
    single = optodesign.propagate(batch.to(torch.complex64), z, grid=grid, wavelength=WL)
    assert single.dtype == torch.complex64
    assert rel_l2(single.numpy().astype(np.complex128), together.numpy()) < 1e-4


def _raw_ifft2_2048_c64_error() -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 2048, dtype=torch.complex64, generator=g)
    y = torch.fft.ifft2(torch.fft.fft2(x))
    return rel_l2(y.numpy(), x.numpy())


def test_platform_ifft2_2048_complex64_guard() -> None:
    """The raw platform bug, kept visible: torch 2.13/2.14 CPU (MKL) on AMD EPYC with 2
    threads returns a single complex64 2048² ``ifft2`` scaled by 1/2048². propagate() works
    around it (next tests); this test only records whether this machine has the bug."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        err = _raw_ifft2_2048_c64_error()
    finally:
        torch.set_num_threads(threads)
    if err > 1e-5:
        pytest.xfail(f"platform FFT bug present: complex64 ifft2(fft2(x)) at 2048² with 2 "
                     f"threads is off by {err:.3g} (relative L2); propagate() avoids it")
    assert err < 1e-5


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [512, 1024, pytest.param(2048, marks=pytest.mark.slow)])
def test_propagate_conserves_energy_at_pad_2(n: int, threads: int) -> None:
    """Every padded size, including 2048² (the platform bug's size), in complex64."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grid = Grid((n, n), 4e-6)
        u = gaussian(grid, n * 4e-6 / 10).to(torch.complex64)
        out = optodesign.propagate(u, 2e-3, grid=grid, wavelength=WL)
        ratio = (out.abs() ** 2).sum().item() / (u.abs() ** 2).sum().item()
        assert abs(ratio - 1) < 1e-3, ratio
    finally:
        torch.set_num_threads(saved)


def test_padded_2048_complex64_matches_complex128() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grid = Grid((1024, 1024), 4e-6)
        u = gaussian(grid, 200e-6)
        ref = optodesign.propagate(u, 5e-3, grid=grid, wavelength=WL)
        low = optodesign.propagate(u.to(torch.complex64), 5e-3, grid=grid, wavelength=WL)
        assert low.dtype == torch.complex64
        assert rel_l2(low.numpy().astype(np.complex128), ref.numpy()) < 1e-4
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def batched_fft_path():
    """Two torch threads and one field: propagate() takes the batched fft2 path these tests
    break (the chunked paths are tested in tests/test_propagation_pruned.py)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def test_fft_self_check_catches_a_broken_fft_and_falls_back(monkeypatch, caplog,
                                                            batched_fft_path) -> None:
    """Whichever size a library breaks next: a mis-scaled complex64 inverse FFT at one padded
    shape is caught by the once-per-shape self-check, and propagate() stays right."""
    from optodesign.optics import propagation as prop

    real_ifft2 = torch.fft.ifft2

    def broken_ifft2(x, *args, **kwargs):
        out = real_ifft2(x, *args, **kwargs)
        if x.dtype == torch.complex64 and tuple(x.shape[-2:]) == (96, 96):
            out = out / (96 * 96)
        return out

    monkeypatch.setattr(torch.fft, "ifft2", broken_ifft2)
    monkeypatch.setattr(prop, "_fft_checked", {})
    grid = Grid((48, 48), 2e-6)
    u = gaussian(grid, 15e-6)
    with caplog.at_level("WARNING", logger="optodesign.optics.propagation"):
        low = optodesign.propagate(u.to(torch.complex64), 1e-4, grid=grid, wavelength=WL)
    ref = optodesign.propagate(u, 1e-4, grid=grid, wavelength=WL)
    assert low.dtype == torch.complex64
    assert rel_l2(low.numpy().astype(np.complex128), ref.numpy()) < 1e-5
    assert "fails its round trip" in caplog.text
    chosen = {k[:2]: v for k, v in prop._fft_checked.items()}
    assert chosen[((96, 96), torch.complex64)] == torch.complex128


def test_fft_self_check_refuses_when_nothing_round_trips(monkeypatch, batched_fft_path) -> None:
    from optodesign.optics import propagation as prop

    real_ifft2 = torch.fft.ifft2
    monkeypatch.setattr(torch.fft, "ifft2", lambda x, *a, **k: 2 * real_ifft2(x, *a, **k))
    monkeypatch.setattr(prop, "_fft_checked", {})
    with pytest.raises(prop.FFTSelfCheckError, match="does not round-trip"):
        optodesign.propagate(torch.ones(8, 8, dtype=torch.complex64), 1e-5,
                             grid=Grid((8, 8), 2e-6), wavelength=WL)


def test_gradient_reaches_input() -> None:
    u = torch.randn(16, 16, dtype=torch.complex128, requires_grad=True)
    out = optodesign.propagate(u, 1e-6, grid=Grid((16, 16), 1e-6), wavelength=WL)
    (out.abs() ** 2)[4:8, 4:8].sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0


def test_propagation_is_linear_and_adjoint_is_backward_propagation() -> None:
    """<P u, v> = <u, P^H v>; without band-limit loss, P^H is propagation by -z (pad=1)."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(32, 32, dtype=torch.complex128, generator=g)
    v = torch.randn(32, 32, dtype=torch.complex128, generator=g)
    kw = dict(grid=Grid((32, 32), 1e-6, pad=1), wavelength=WL)
    pu = optodesign.propagate(u, 5e-6, **kw)
    phv = optodesign.propagate(v, -5e-6, **kw)
    lhs = torch.vdot(pu.flatten(), v.flatten())
    rhs = torch.vdot(u.flatten(), phv.flatten())
    assert abs((lhs - rhs) / lhs) < 1e-10


@pytest.mark.parametrize(
    ("grid", "wavelength", "name"),
    [
        (dict(shape=(8, 8), pitch=1e-6), -WL, "wavelength"),
        (dict(shape=(8, 8), pitch=0.0), WL, "pitch"),
        (dict(shape=(8, 8), pitch=1e-6, pad=0.5), WL, "pad"),
        (dict(shape=(8, 8), pitch=1e-6, pad=math.nan), WL, "pad"),
        (dict(shape=(8, 0), pitch=1e-6), WL, "shape"),
    ],
)
def test_bad_physical_arguments_name_the_argument(grid: dict, wavelength: float,
                                                  name: str) -> None:
    """The grid refuses its own bad shape, pitch or pad; propagate() the bad wavelength."""
    u = torch.zeros(8, 8, dtype=torch.complex64)
    with pytest.raises(UserError, match=f"^{name}:") as e:
        optodesign.propagate(u, 1e-3, grid=Grid(**grid), wavelength=wavelength)
    assert "\n" not in str(e.value)


def test_non_complex_and_wrong_shape_fields_are_rejected() -> None:
    grid = Grid((8, 8), 1e-6)
    with pytest.raises(UserError, match="^field: expected a complex tensor"):
        optodesign.propagate(torch.zeros(8, 8), 1e-3, grid=grid, wavelength=WL)
    with pytest.raises(UserError, match=r"^field: expected shape \(\.\.\., ny, nx\)"):
        optodesign.propagate(torch.zeros(8, dtype=torch.complex64), 1e-3, grid=grid,
                             wavelength=WL)
    with pytest.raises(UserError, match="^field: expected a torch"):
        optodesign.propagate(np.zeros((8, 8), complex), 1e-3, grid=grid, wavelength=WL)
    with pytest.raises(UserError, match="^grid: expected an optodesign.grid.Grid"):
        optodesign.propagate(torch.zeros(8, 8, dtype=torch.complex64), 1e-3,
                             grid=(8, 8), wavelength=WL)  # type: ignore[arg-type]


@pytest.mark.parametrize("distance", [0.0, 1e-4])
def test_a_field_not_sampled_on_the_grid_is_refused_naming_both_shapes(distance: float) -> None:
    """Even at z = 0 (which returns the field untouched): the grid must describe the field."""
    u = torch.zeros(2, 8, 12, dtype=torch.complex64)
    with pytest.raises(GridMismatchError, match=r"\(8, 12\).*\(12, 8\)") as e:
        optodesign.propagate(u, distance, grid=Grid((12, 8), 1e-6), wavelength=WL)
    assert "\n" not in str(e.value)


def test_forward_stack_checks_the_field_and_every_layer_against_the_grid() -> None:
    from optodesign.models.functional import forward_stack

    grid = Grid((16, 16), 2e-6)
    u = gaussian(grid, 8e-6)
    ok = torch.ones(16, 16, dtype=torch.complex128)
    out = forward_stack(u, [ok, ok], [1e-5, 1e-5, 1e-5], grid=grid, wavelength=WL)
    assert out.shape == (16, 16)
    with pytest.raises(GridMismatchError,
                       match=r"^transmissions\[1\]: .*\(8, 8\).*\(16, 16\)"):
        forward_stack(u, [ok, torch.ones(8, 8, dtype=torch.complex128)], [1e-5] * 3,
                      grid=grid, wavelength=WL)
    with pytest.raises(GridMismatchError, match=r"^field: .*\(12, 12\).*\(16, 16\)"):
        forward_stack(torch.ones(12, 12, dtype=torch.complex128), [ok], [1e-5] * 2,
                      grid=grid, wavelength=WL)


def test_sampling_checks_warn_and_refuse_with_what_to_change() -> None:
    ok = check_sampling(Grid((256, 256), 2e-6), 1e-3, wavelength=WL)
    assert ok.problems == () and not ok.fatal and ok.band_fraction > 0.99
    # far field on a small window: the band limit keeps less than two frequency samples
    grid = Grid((64, 64), 2e-6)
    far = check_sampling(grid, 5.0, wavelength=WL)
    assert far.fatal and "increase pad (now 2)" in far.problems[0]
    with pytest.raises(SamplingError, match="increase pad"):
        optodesign.propagate(torch.zeros(64, 64, dtype=torch.complex64), 5.0, grid=grid,
                             wavelength=WL)
    mid = check_sampling(grid, 6e-3, wavelength=WL)
    assert not mid.fatal and 0.05 <= mid.band_fraction < 0.5
    # whether that matters depends on the field: a broad (point-like) spectrum loses energy...
    point = torch.zeros(64, 64, dtype=torch.complex64)
    point[32, 32] = 1
    with pytest.warns(SamplingWarning, match="band limit removed .*increase pad"):
        optodesign.propagate(point, 6e-3, grid=grid, wavelength=WL)
    # ...a smooth beam on the same grid and distance does not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optodesign.propagate(gaussian(grid, 30e-6), 6e-3, grid=grid, wavelength=WL)
    unlimited = check_sampling(grid, 6e-3, wavelength=WL, bandlimit=False)
    assert any("aliased" in p for p in unlimited.problems)


def test_transfer_function_is_cached_and_bandlimited() -> None:
    h1 = transfer_function((64, 64), 1e-3, pitch=2e-6, wavelength=WL)
    h2 = transfer_function((64, 64), 1e-3, pitch=2e-6, wavelength=WL)
    assert h1 is h2
    # evanescent and band-limited components are exactly zero, propagating ones unit modulus
    h = transfer_function((64, 64), 6e-3, pitch=2e-6, wavelength=WL, dtype=torch.complex128)
    mag = h.abs()
    assert torch.all((mag == 0) | ((mag - 1).abs() < 1e-12))
    assert 0 < (mag > 0).float().mean() < 1


def test_energy_walking_past_the_padding_is_reported() -> None:
    # a tilt of sin θ = 0.08 walks 80 µm over 1 mm: more than twice the 16-px padding
    grid = Grid((64, 64), 2e-6, pad=1.5)
    u = gaussian(grid, 20e-6, tilt_x=0.08)
    with pytest.warns(SamplingWarning, match=r"wraps around the window; increase pad \(now 1.5\)"):
        optodesign.propagate(u, 1e-3, grid=grid, wavelength=WL)


def test_sampling_is_checked_at_every_plane_of_a_stack() -> None:
    """A smooth input passes, the field leaving a random pixel-phase layer at 0.53 λ pitch
    does not (issue #12: the check used to see only the input); more padding fixes it."""
    import warnings as _w

    from optodesign.models.functional import check_stack_sampling, stack_sampling
    from optodesign.optics.propagation import SamplingWarning, propagate, sampling_loss

    lam, pitch, n, z = 0.75e-3, 0.4e-3, 32, 0.02
    y, x = np.mgrid[:n, :n] - n // 2
    field = torch.as_tensor(np.exp(-(x**2 + y**2) / 40.0), dtype=torch.complex64)[None]
    rng = np.random.default_rng(1)
    layer = torch.as_tensor(np.exp(1j * np.pi / 2 * rng.integers(0, 4, (n, n))),
                            dtype=torch.complex64)
    found = stack_sampling(field, [layer], [z, z], grid=Grid((n, n), pitch, pad=2),
                           wavelength=lam)
    assert [k for k, *_ in found] == [0, 1]
    assert found[0][2] < 0.01 < found[1][2]  # band-limit loss: input fine, layer field not
    # the same number as the propagation's own accounting of that field
    u1 = propagate(field, z, grid=Grid((n, n), pitch, pad=2), wavelength=lam) * layer
    assert sampling_loss(u1, z, grid=Grid((n, n), pitch, pad=2), wavelength=lam)[0] == \
        pytest.approx(found[1][2], rel=1e-6)
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        check_stack_sampling(field, [layer], [z, z], grid=Grid((n, n), pitch, pad=2),
                             wavelength=lam)
    msgs = [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]
    assert any("leaving layer 1" in m and "band limit" in m for m in msgs), msgs
    big = stack_sampling(field, [layer], [z, z], grid=Grid((n, n), pitch, pad=8),
                         wavelength=lam)
    assert big[1][2] < found[1][2] / 4

"""The far-field hop (optics/farfield.py) against analytic results, and the two far-field tasks
(Fourier hologram, fan-out grating) through training, the Evaluator, export and verify."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import brentq

from optodesign.design import Design
from optodesign.errors import ConfigError
from optodesign.evaluate import Evaluator
from optodesign.grid import Grid
from optodesign.optics.farfield import (
    directions,
    far_field,
    far_field_intensity,
    focal_plane,
)
from optodesign.schema import Table
from optodesign.tasks import TASKS, FanOut, FanOutSetup, Fourier, FourierSetup
from optodesign.tasks.fanout import order_angles, orders_from_angles, orders_from_spots
from optodesign.verify.model import ModelEvaluator, SimModel

LAM = 633e-9


def _c(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.complex128))


def _rows(profile: np.ndarray) -> torch.Tensor:
    """A 1-D transmission as a (1, n) field: its far field along x."""
    return _c(profile[None, :])


# ---------------------------------------------------------------------------- the hop
@pytest.mark.parametrize("pad", [1.0, 1.5, 2.0, 3.0, 4.0])
def test_parseval_every_pad_and_binning(pad: float) -> None:
    g = Grid((12, 10), 3e-6, pad=pad)
    u = _c(np.exp(2j * np.pi * np.random.default_rng(1).random((2, 12, 10)))
           * np.random.default_rng(2).random((2, 12, 10)))
    energy = (u.abs() ** 2).sum((-2, -1))
    far = far_field(u, g)
    p = math.ceil(pad)
    assert far.shape[-2:] == (12 * p, 10 * p)
    np.testing.assert_allclose((far.abs() ** 2).sum((-2, -1)), energy, rtol=1e-12)
    cells = far_field_intensity(u, g, pixels=False)
    assert cells.shape == u.shape
    np.testing.assert_allclose(cells.sum((-2, -1)), energy, rtol=1e-12)
    # flat-topped pixels send part of the light beyond |sin θ| < λ / 2p, off the plane
    assert (far_field_intensity(u, g).sum((-2, -1)) < energy).all()


def test_no_platform_fft_mis_scaling_at_2048() -> None:
    """A padded window of 2048² in complex64 (some MKL builds mis-scale a scaled complex64 FFT
    of exactly that size): the hop still conserves energy."""
    g = Grid((1024, 1024), 1e-6, pad=2)
    u = torch.ones((1024, 1024), dtype=torch.complex64)
    assert far_field(u, g).abs().square().sum().item() == pytest.approx(1024**2, rel=1e-5)


def test_square_aperture_is_a_sampled_sinc_with_zeros_at_m_lambda_over_width() -> None:
    """A uniform a-pixel square aperture: |U(ν)|² = |Σ_n e^{-2πiνnp}|² (the sampled sinc²,
    -> (a sinc(ν a p))² near the axis), zeros at sin θ = m λ / (a p)."""
    n, a, pad, p = 32, 8, 4.0, 5e-6
    g = Grid((n, n), p, pad=pad)
    t = np.zeros((n, n))
    t[n // 2 - a // 2:n // 2 + a // 2, n // 2 - a // 2:n // 2 + a // 2] = 1
    far = far_field(_c(t), g)
    inten = (far.abs() ** 2).numpy()
    sy, sx = directions(g, LAM, pad=pad)
    nu = sx / LAM
    dirichlet = np.array([a if abs(v) < 1e-9 else
                          np.sin(np.pi * v * a * p) / np.sin(np.pi * v * p) for v in nu]) ** 2
    m = 128  # padded samples per axis
    row = inten[m // 2]  # sin θy = 0
    np.testing.assert_allclose(row, dirichlet * a**2 / m**2, rtol=1e-9, atol=1e-15)
    for k in (1, 2, 3):  # the zeros: sin θ = k λ / (a p)
        j = int(np.argmin(np.abs(sx - k * LAM / (a * p))))
        assert abs(sx[j] - k * LAM / (a * p)) < 1e-15
        assert row[j] < 1e-12 * row.max()
    c = m // 2  # near the axis, the sampled sinc is the continuous sinc
    ratio = row[c + 1] / row[c]
    assert ratio == pytest.approx(np.sinc(nu[c + 1] * a * p) ** 2, rel=2e-2)


def test_focal_plane_coordinates_are_lambda_f_nu() -> None:
    g = Grid((16, 16), 4e-6, pad=2)
    y, x = focal_plane(g, LAM, 0.1, pad=2)
    assert x[17] - x[16] == pytest.approx(LAM * 0.1 / (32 * 4e-6))
    assert x[16] == 0 and y[16] == 0


def test_blazed_grating_sends_everything_to_sin_theta_lambda_over_period() -> None:
    """A linear phase ramp of period Λ = n p / q: all the light in order q, sin θ = λ / Λ;
    sampled on flat-topped pixels (a staircase of n / q steps per period) the order keeps
    sinc²(q / n), the multilevel result; a finite aperture of it peaks in the same cell."""
    n, q, p = 32, 3, 2e-6
    g = Grid((n, n), p, pad=2)
    x = np.arange(n)
    ramp = _c(np.exp(2j * np.pi * q * x / n)[None, :].repeat(n, 0))
    eff = far_field_intensity(ramp, g, periodic=True, pixels=False).numpy() / n**2
    iy, ix = np.unravel_index(eff.argmax(), eff.shape)
    assert eff.max() == pytest.approx(1.0, abs=1e-12)
    sy, sx = directions(g, LAM)
    assert sx[ix] == pytest.approx(LAM / (n * p / q), rel=1e-12) and sy[iy] == 0
    staircase = far_field_intensity(ramp, g, periodic=True).numpy() / n**2
    assert staircase[iy, ix] == pytest.approx(np.sinc(q / n) ** 2, rel=1e-9)
    finite = far_field_intensity(ramp, g).numpy()
    assert np.unravel_index(finite.argmax(), finite.shape) == (iy, ix)


@pytest.mark.parametrize("pad", [1, 2, 3, 8])
def test_cells_hold_the_exact_integral_of_the_far_field_at_any_pad(pad: int) -> None:
    """A cell's value is ∫ |U(ν)|² over its Δν = 1/(n p) (a camera pixel), not |U|² at its
    centre: against a quadrature of the continuous |Σ u_j exp(−2πiνjp)|², for a random field
    and for a finite ramp (whose cell holds ∫_{-1/2}^{1/2} sinc² = 77 % of its energy per axis,
    where the unpadded DFT would claim 100 %). The same at every pad."""
    n, p = 24, 1.0  # ν in units of 1/p
    rng = np.random.default_rng(3)
    ramp = np.exp(2j * np.pi * 5 * np.arange(n) / n)
    for u in (rng.normal(size=n) + 1j * rng.normal(size=n), ramp):
        j = np.arange(n) - n // 2

        def inten(nu: float, u: np.ndarray = u, j: np.ndarray = j) -> float:
            return abs(np.sum(u * np.exp(-2j * np.pi * nu * j * p))) ** 2

        cells = far_field_intensity(_rows(u), Grid((1, n), p, pad=pad), pixels=False)[0]
        for k in (n // 2, n // 2 + 5, 3):
            nu = (k - n // 2) / (n * p)
            exact = quad(inten, nu - 0.5 / (n * p), nu + 0.5 / (n * p), limit=200)[0] * p
            assert cells[k].item() == pytest.approx(exact, rel=1e-9), (pad, k)
    ramp_cell = cells[n // 2 + 5].item() / n
    assert ramp_cell == pytest.approx(quad(lambda t: np.sinc(t) ** 2, -0.5, 0.5)[0], rel=2e-3)


@pytest.mark.parametrize("n", [8, 16, 512])
def test_binary_pi_grating_orders_are_four_over_pi_squared(n: int) -> None:
    """0/π binary grating, 50 % duty: η±1 = (2/π)² = 40.5 %, η±3 = (2/3π)², η0 = 0, even
    orders 0 — exactly on any number of flat-topped pixels per period."""
    t = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    eta = far_field_intensity(_rows(t), Grid((1, n), 1e-6), periodic=True)[0].numpy() / n
    c = n // 2
    assert eta[c] < 1e-20 and eta[c + 2] < 1e-20
    assert eta[c + 1] == pytest.approx((2 / np.pi) ** 2, rel=1e-12)
    assert eta[c - 1] == pytest.approx((2 / np.pi) ** 2, rel=1e-12)
    if n > 6:
        assert eta[c + 3] == pytest.approx((2 / (3 * np.pi)) ** 2, rel=1e-12)


def test_binary_dammann_1x3_reaches_66_percent() -> None:
    """The 1x3 binary 0/π grating with equal orders 0, ±1 (one π segment of width d,
    |1 − 2d| = 2 sin(πd)/π): 3 (1 − 2d)² = 66.4 % (Dammann & Görtler 1971)."""
    d = brentq(lambda d: (1 - 2 * d) - 2 * np.sin(np.pi * d) / np.pi, 0.1, 0.45)
    assert 3 * (1 - 2 * d) ** 2 == pytest.approx(0.664, abs=1e-3)
    n = 2000
    k = round(d * n)
    t = np.where(np.arange(n) < k, -1.0, 1.0)
    eta = far_field_intensity(_rows(t), Grid((1, n), 1e-6), periodic=True)[0].numpy() / n
    c = n // 2
    dn = k / n  # the pixelated duty: the continuous formulas hold exactly
    assert eta[c] == pytest.approx((1 - 2 * dn) ** 2, rel=1e-9)
    assert eta[c + 1] == pytest.approx((2 * np.sin(np.pi * dn) / np.pi) ** 2, rel=1e-9)
    three = eta[c - 1:c + 2]
    assert three.sum() == pytest.approx(0.664, abs=2e-3)
    assert (three.max() - three.min()) / (three.max() + three.min()) < 2e-3


def test_drawn_models_agree_with_the_training_model() -> None:
    """Verify's drawn model (s samples per pixel): the s sub-pixels' array factor
    [sin(π m / n) / (s sin(π m / (n s)))]² times their own sinc²(m / (n s)) is one pixel's
    sinc²(m / n), so an n-level staircase ramp scores sinc²(q / n) under both models."""
    n, s, q = 16, 2, 3
    design_levels = (np.arange(n) * q) % n  # a 16-level ramp: order q exactly
    table = np.exp(2j * np.pi * np.arange(n) / n)
    d = Design(setup=FanOutSetup(period=n * 1e-6, orders=((q, 0),)), wavelength=LAM,
               pitch=1e-6, levels=np.broadcast_to(design_levels, (1, n, n)).copy(),
               level_tables=table, distances=(0.0, 0.0), target=None)
    ev = ModelEvaluator(d, torch.device("cpu"), None, model=SimModel(2.0, s))
    t = np.repeat(np.repeat(d.transmissions()[0], s, 0), s, 1)
    out = ev.output_intensity(ev.plane_wave(), _c(t[None]).to(torch.complex64))[0]
    assert out.shape == (n, n)
    array = (np.sin(np.pi * q / n) / (s * np.sin(np.pi * q / (n * s)))) ** 2
    assert array * np.sinc(q / (n * s)) ** 2 == pytest.approx(np.sinc(q / n) ** 2, rel=1e-12)
    assert out[n // 2, n // 2 + q].item() / n**2 == pytest.approx(np.sinc(q / n) ** 2, rel=1e-5)
    base = Evaluator.from_design(d).evaluate(d.transmissions())
    assert base["efficiency"] == pytest.approx(np.sinc(q / n) ** 2, rel=1e-5)


def test_drawn_far_field_agrees_with_the_training_model_within_a_percent() -> None:
    """Off the grating orders the pixel envelope is applied at the cells' centres: a random
    4-level design's far field (speckle, the hardest case) drawn with 2 and 4 samples per
    pixel matches the training model to < 1 % (relative L2), the energy to 1e-3."""
    n = 32
    rng = np.random.default_rng(0)
    target = np.zeros((n, n))
    target[10:14, 8:20] = 1
    d = Design(setup=FourierSetup(), wavelength=LAM, pitch=4e-6,
               levels=rng.integers(0, 4, (1, n, n)), target=target,
               level_tables=np.exp(2j * np.pi * np.arange(4) / 4), distances=(0.0, 0.0))
    ev = Evaluator.from_design(d)
    ref = ev.output_intensity(ev.plane_wave(), _c(d.transmissions()).to(torch.complex64))[0]
    for s in (2, 4):
        m = ModelEvaluator(d, torch.device("cpu"), None, model=SimModel(2.0, s))
        t = np.repeat(np.repeat(d.transmissions(), s, 1), s, 2)
        out = m.output_intensity(m.plane_wave(), _c(t).to(torch.complex64))[0]
        assert ((out - ref).norm() / ref.norm()).item() < 1e-2
        assert out.sum().item() == pytest.approx(ref.sum().item(), rel=1e-3)


# ---------------------------------------------------------------------------- fan-out config
def test_angles_become_orders_or_a_one_line_error_with_the_nearest_angle() -> None:
    period = 20e-6
    one = math.degrees(math.asin(LAM / period))
    assert orders_from_angles([[0, 0], [one * 1.003, -one], [2 * one, 0]], period=period,
                              wavelength=LAM) == [(0, 0), (1, -1), (2, 0)]
    with pytest.raises(ConfigError, match=r"^grating.angles\[0\]: 1.9 deg along x is not an "
                                          rf"order .* nearest is order 1 at {one:.4f} deg$"):
        orders_from_angles([[1.9, 0]], period=period, wavelength=LAM)
    with pytest.raises(ConfigError, match="beyond the last propagating order"):
        orders_from_angles([[89.0, 0]], period=1.1e-6, wavelength=LAM)
    assert order_angles([(1, 0)], period=period, wavelength=LAM)[0][0] == pytest.approx(one)


def test_grating_table_reads_period_with_units_orders_or_angles() -> None:
    kw = dict(size=16, pitch=1.25e-6, wavelength=LAM)
    period, orders = FanOut.read_grating(
        Table({"period": "20 um", "orders": [[-1, 0], [1, 0]]}, {"period", "orders", "angles"},
              section="grating"), **kw)
    assert period == pytest.approx(20e-6) and orders == [(-1, 0), (1, 0)]
    _, orders = FanOut.read_grating(Table({"angles": [[1.8138, 0]]}, None, section="grating"),
                                    **kw)
    assert orders == [(1, 0)]
    with pytest.raises(ConfigError, match="grating.period: 30 um is not optics.size x"):
        FanOut.read_grating(Table({"period": "30 um", "orders": [[1, 0]]}, None,
                                  section="grating"), **kw)
    with pytest.raises(ConfigError, match="grating.orders: give either orders or angles"):
        FanOut.read_grating(Table({}, None, section="grating"), **kw)
    assert orders_from_spots((1, 2), 2) == [(-1, 0), (1, 0)]
    with pytest.raises(ConfigError, match="target.spacing: a 1x2 array at spacing 1"):
        orders_from_spots((1, 2), 1)


def test_fanout_setup_reads_its_grating_section_from_the_config_source() -> None:
    """[grating] (``FanOut.config_sections``) overrides the spots: orders from angles."""
    import dataclasses
    import tomllib

    from optodesign.train.config import parse_config

    cfg = parse_config(tomllib.loads(FANOUT.format(quant="levels = 8", spots="1, 3",
                                                   epochs=1)))
    one = math.degrees(math.asin(LAM / 32e-6))
    src = dict(cfg.source, grating={"period": "32 um", "angles": [[one, 0], [0, one]]})
    prep = FanOut.setup_from_config(dataclasses.replace(cfg, source=src))
    assert prep.setup.orders == ((1, 0), (0, 1)) and prep.target.sum() == 2
    assert FanOut.config_sections == ("grating",)
    bad = dict(cfg.source, grating={"period": "32 um", "angles": [[one * 1.02, 0]]})
    with pytest.raises(ConfigError, match=r"^grating.angles\[0\]: .* nearest is order 1"):
        FanOut.setup_from_config(dataclasses.replace(cfg, source=bad))


# ---------------------------------------------------------------------------- training
FANOUT = """
task = "fanout"
seed = 0
[optics]
wavelength = "633 nm"
pitch = "2 um"
size = 16
layers = 1
distances = ["0 m", "0 m"]
[quantization]
method = "psq-li"
{quant}
[target]
kind = "spots"
spots = [{spots}]
spacing = 1
[train]
epochs = {epochs}
steps_per_epoch = 20
lr = 0.1
"""

FOURIER = """
task = "fourier"
seed = 0
[optics]
wavelength = "633 nm"
pitch = "4 um"
size = 32
layers = 1
distances = ["0 m", "0 m"]
[quantization]
method = "psq-li"
{quant}
[target]
kind = "spots"
spots = [2, 2]
spacing = 8
spot_size = 2
[train]
epochs = {epochs}
steps_per_epoch = 20
lr = 0.1
"""


def _train(text: str, out: Path):
    import tomllib

    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer

    return Trainer(parse_config(tomllib.loads(text)), out, progress=False).run()


def test_tasks_registered_with_their_output_planes() -> None:
    assert TASKS["fourier"] is Fourier and Fourier.output_plane == "far_field"
    assert TASKS["fanout"] is FanOut and FanOut.output_plane == "orders"
    assert TASKS["hologram"].output_plane == "near"
    setup = FanOutSetup(period=20e-6, orders=((1, 0),))
    assert "ONE period (20 um)" in FanOut.export_notes(setup)[0]


def test_refine_refuses_the_far_field_hologram_in_one_line() -> None:
    from optodesign.errors import UserError
    from optodesign.refine.objective import Objective

    n = 8
    d = Design(setup=FourierSetup(), wavelength=LAM, pitch=1e-6,
               levels=np.zeros((1, n, n), dtype=int),
               level_tables=np.exp(1j * np.pi * np.arange(2)), distances=(0.0, 0.0),
               target=np.ones((n, n)))
    with pytest.raises(UserError, match="^fourier: refine .* does not implement"):
        Objective(d)


def test_refine_scores_fanout_orders_exactly_and_improves_them() -> None:
    """The fan-out's order amplitudes are linear in every pixel: refine's candidate losses
    equal the task loss of the changed period, recomputed whole, and a search lowers it."""
    from optodesign.refine.objective import Objective
    from optodesign.refine.solvers import direct_binary_search

    n = 16
    rng = np.random.default_rng(5)
    d = Design(setup=FanOutSetup(period=n * 2e-6, orders=((1, 0), (-1, 0), (0, 0))),
               wavelength=LAM, pitch=2e-6, levels=rng.integers(0, 4, (1, n, n)),
               level_tables=np.exp(2j * np.pi * np.arange(4) / 4)[None], distances=(0.0, 0.0))
    obj = Objective(d)
    ev = Evaluator.from_design(d)
    lv = d.levels.astype(np.int64)

    def whole(levels: np.ndarray) -> float:
        ts = [torch.as_tensor(t.astype(np.complex64))
              for t in d.with_levels(levels).transmissions()]
        return float(ev.task.loss(ev.output_intensity(ev.plane_wave(), ts)))

    assert obj.loss(lv) == pytest.approx(whole(lv), rel=1e-5)
    state = obj.state(lv, 0)
    pix = np.stack([rng.choice(n * n, 3, replace=False) for _ in range(6)])
    new = rng.integers(0, 4, (6, 3))
    got = obj.candidate_losses(state, pix, new).numpy()
    want = []
    for m in range(6):
        changed = lv.copy()
        changed[0].reshape(-1)[pix[m]] = new[m]
        want.append(whole(changed))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    r = direct_binary_search(obj, lv, budget=3000, batch=16, seed=0)
    assert r.loss_after < r.loss_before - 0.2 and r.loss_after == pytest.approx(
        whole(r.levels.astype(np.int64)), rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_fanout_1x3_trains_past_the_plane_wave(tmp_path: Path) -> None:
    """A 1x3 fan-out, 8 levels: the plane wave puts 1/3 of the target power in (all in order
    0, uniformity 0); training beats it clearly (a continuous-phase 1x3 reaches 92.6 %)."""
    res = _train(FANOUT.format(quant="levels = 8", spots="1, 3", epochs=2), tmp_path / "r")
    m = res.design.metrics
    assert m["efficiency"] > 0.6 and m["uniformity"] > 0.8, m
    assert m["orders"] == [[-1, 0], [0, 0], [1, 0]]
    assert m["angles_deg"][2][0] == pytest.approx(math.degrees(math.asin(LAM / 32e-6)), 1e-3)
    again = Evaluator.from_design(Design.load(tmp_path / "r")).evaluate(
        Design.load(tmp_path / "r").transmissions())
    assert again["efficiency"] == pytest.approx(m["efficiency"], rel=1e-5)


@pytest.mark.slow
def test_fourier_hologram_trains_past_a_random_phase(tmp_path: Path) -> None:
    res = _train(FOURIER.format(quant="levels = 4", epochs=2), tmp_path / "r")
    d = res.design
    ev = Evaluator.from_design(d)
    rng = np.random.default_rng(0)
    rand = np.exp(2j * np.pi * rng.integers(0, 4, (1, 32, 32)) / 4)
    base = ev.evaluate(rand)
    m = d.metrics
    assert m["psnr"] > base["psnr"] + 5 and m["efficiency"] > 2 * base["efficiency"], (m, base)
    assert 0 < m["correlation"] <= 1


@pytest.mark.slow
@pytest.mark.roundtrip
@pytest.mark.parametrize("task", ["fanout", "fourier"])
def test_train_export_verify_round_trip(task: str, tmp_path: Path) -> None:
    """Train on the fused-silica level table, export GDS, read back: verify's read-back
    metrics under the training model equal the trained ones; the convergence ladder's pad
    steps change nothing (exact cell integrals, one period's orders) and it converges."""
    from optodesign.export.fab import export_design
    from optodesign.process import load_process
    from optodesign.variation.spec import ErrorConfig, ErrorModel, SweepSpec, Tolerance
    from optodesign.verify.montecarlo import verify_fab

    quant = 'levels = 4\nprocess = "fused-silica-etch4"'
    text = (FANOUT.format(quant=quant, spots="3, 3", epochs=1) if task == "fanout" else
            FOURIER.format(quant=quant, epochs=1))
    res = _train(text, tmp_path / "run")
    export_design(res.design, load_process("fused-silica-etch4"), tmp_path / "fab",
                  formats=("gds",), design_dir=tmp_path / "run", plot=False)
    zero = ErrorConfig(ErrorModel(), Tolerance(), SweepSpec())
    r = verify_fab(tmp_path / "fab", errors=zero, samples=1, sweep=False)
    metric = res.design.metrics
    key = "efficiency"
    assert r.readback[key] == pytest.approx(metric[key], rel=1e-4, abs=1e-6)
    conv = r.convergence
    assert conv is not None and conv.converged
    pad_steps = [st for st in conv.steps
                 if st.model.oversample == 1 and st.energy_change is not None]
    assert pad_steps and all(st.energy_change < 1e-5 for st in pad_steps)  # exact at any pad
    assert r.nominal[key] == pytest.approx(metric[key], rel=1e-2)


def test_a_task_section_of_another_task_is_refused_in_one_line() -> None:
    """``[grating]`` belongs to the fan-out task: a hologram config with it is refused,
    naming the section and the task it belongs to."""
    import tomllib

    from optodesign.errors import ConfigError
    from optodesign.train.config import parse_config

    text = (Path(__file__).parents[1] / "examples" / "hologram.toml").read_text()
    raw = tomllib.loads(text + '\n[grating]\nperiod = "20 um"\n')
    with pytest.raises(ConfigError, match=r"grating: a section of task fanout, not of task "
                                          r"'hologram'"):
        parse_config(raw)


def test_far_field_planes_are_plotted_in_direction_sines() -> None:
    """The output axes of a far-field plane: sin θ in steps of λ / (n p) (or, behind a lens
    of focal length f, positions in steps of λ f / (n p)); a near-field plane keeps the
    pitch. show_plane labels them."""
    from optodesign.plotting import new_figure, show_plane
    from optodesign.tasks import TASKS

    near = next(t for t in TASKS.values() if t.output_plane == "near")
    far = next(t for t in TASKS.values() if t.output_plane == "far_field")
    lam, p, n = 633e-9, 2e-6, 32
    far_task = far.__new__(far)
    far_task.shape = (n, n)
    assert far.output_axes(far_task, pitch=p, wavelength=lam) == (lam / (n * p), "sine")
    assert far.output_axes(far_task, pitch=p, wavelength=lam, focal_length=0.1) == (
        pytest.approx(lam * 0.1 / (n * p)), "length")
    near_task = near.__new__(near)
    near_task.shape = (n, n)
    assert near.output_axes(near_task, pitch=p, wavelength=lam, focal_length=0.1) == (
        p, "length")
    fig = new_figure(3, 3)
    ax = fig.add_subplot(1, 1, 1)
    show_plane(ax, np.ones((n, n)), pitch=lam / (n * p), coordinate="sine")
    assert ax.get_xlabel() == "sin θx" and ax.get_ylabel() == "sin θy"
    assert ax.get_xlim()[1] == pytest.approx((n - n // 2 - 0.5) * lam / (n * p))


# ---------------------------------------------------------------------------- placement
def test_a_grating_period_moves_its_neighbours_in_instead_of_zero_filling() -> None:
    """One period of a grating (``periodic``): an integer shift is a roll, a sub-sample shift
    of the drawing keeps every order's power (|DFT| of the period) exactly, and a rotation
    leaves no empty corners; without ``periodic`` the window is an opaque aperture."""
    from optodesign.optics.placement import place, place_drawn

    rng = np.random.default_rng(1)
    n = 12
    t = torch.as_tensor(np.exp(2j * np.pi * rng.integers(0, 4, (1, n, n)) / 4))
    grid = Grid((n, n), 1e-6)
    shift = np.array([[2e-6, -3e-6]])
    rolled = torch.roll(t, (2, -3), dims=(-2, -1))
    np.testing.assert_allclose(place(t, grid=grid, shifts=shift, periodic=True), rolled,
                               atol=1e-12)
    assert not torch.allclose(place(t, grid=grid, shifts=shift), rolled)
    np.testing.assert_allclose(place_drawn(t, grid=grid, shifts=shift, periodic=True), rolled,
                               atol=1e-9)
    orders = torch.fft.fft2(t).abs()
    sub = np.array([[0.37e-6, -1.21e-6]])
    for fn in (place, place_drawn):
        moved = torch.fft.fft2(fn(t, grid=grid, shifts=sub, periodic=True)).abs()
        np.testing.assert_allclose(moved, orders, atol=1e-9)
    open_ = torch.fft.fft2(place_drawn(t, grid=grid, shifts=sub)).abs()
    assert (open_ - orders).abs().max() > 0.5
    ones = torch.ones((1, n, n), dtype=torch.complex128)
    turned = place(ones, grid=grid, rotations=np.array([0.05]), periodic=True)
    np.testing.assert_allclose(turned, ones, atol=1e-12)
    assert place(ones, grid=grid, rotations=np.array([0.05]))[0, 0, -1].abs() < 0.9
    # the drawn model's shears of a 3 x 3 tiling: within the ringing of the tiling's edge
    turned = place_drawn(ones, grid=grid, rotations=np.array([0.05]), periodic=True)
    assert (turned - 1).abs().max() < 0.05
    assert (place_drawn(ones, grid=grid, rotations=np.array([0.05])) - 1).abs().max() > 0.2


def test_fanout_verify_misalignment_keeps_the_order_efficiencies(tmp_path: Path) -> None:
    """Verify moves a grating as the infinite grating moves: under the converged drawn model
    a misaligned fan-out keeps its efficiency (a lateral shift changes no order's power)."""
    from optodesign.export.fab import export_design
    from optodesign.process import load_process
    from optodesign.variation.spec import parse_errors
    from optodesign.verify.montecarlo import verify_fab

    p = load_process("fused-silica-etch4")
    n = 16
    rng = np.random.default_rng(3)
    d = Design(setup=FanOutSetup(period=n * 2e-6, orders=((1, 0), (-1, 0), (0, 0))),
               wavelength=p.wavelength, pitch=2e-6, levels=rng.integers(0, 4, (1, n, n)),
               level_tables=p.level_table(), distances=(0.0, 0.0))
    d.save(tmp_path / "run")
    export_design(d, p, tmp_path / "fab", formats=("gds",), design_dir=tmp_path / "run",
                  plot=False)
    cfg = parse_errors({"errors": {"misalignment": "0.7 um"}})
    r = verify_fab(tmp_path / "fab", errors=cfg, samples=4, sweep=False)
    v = r.combined.values
    assert np.allclose(v, r.nominal_value, rtol=1e-4), (v, r.nominal_value)

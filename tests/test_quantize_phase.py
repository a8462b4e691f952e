"""Phase level tables and phase quantizers (PSQ FT/LI/LT, PQ, STE, GS, DSQ) as properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optodesign.errors import ConfigError
from optodesign.quantize.levels import (
    circular_distance,
    explicit_levels,
    level_gaps,
    nearest_level,
    nearest_level_np,
    uniform_levels,
)
from optodesign.quantize.phase import (
    FT_T,
    DSQQuantizer,
    GumbelSoftmaxQuantizer,
    PhaseQuantizer,
    PostTrainingQuantizer,
    PSQQuantizer,
)
from optodesign.quantize.registry import build_quantizer, method_names

TWO_PI = 2 * math.pi
PHASE_METHODS = method_names("phase")


def make(method: str, table: int | np.ndarray, **options) -> PhaseQuantizer:
    """A phase quantizer from the registry: ``table`` is ``L`` or a phase table."""
    if isinstance(table, int):
        q = build_quantizer(method, levels=table, options=options)
    else:
        q = build_quantizer(method, phases=table, options=options)
    assert isinstance(q, PhaseQuantizer)
    return q


def rebuild(described: dict) -> PhaseQuantizer:
    """The quantizer ``describe()`` describes (``learned_t`` is reported, not an option)."""
    d = {k: v for k, v in described.items() if k != "learned_t"}
    return make(d.pop("method"), np.asarray(d.pop("phases")), **d)
NON_UNIFORM = np.array([0.0, 0.4, 1.9, 2.2, 4.0, 5.5])  # process-like, uneven gaps
OFFSET = np.array([0.3, 1.2, 3.5])  # level 0 is not at phase 0
TABLES = [uniform_levels(n) for n in (2, 4, 8, 16)] + [NON_UNIFORM, OFFSET]
TABLE_IDS = ["L2", "L4", "L8", "L16", "nonuniform", "offset"]


@st.composite
def phase_tables(draw: st.DrawFn) -> np.ndarray:
    """Random sorted tables in [0, 2π) with circular gaps >= 0.05 rad."""
    n = draw(st.integers(2, 12))
    raw = draw(st.lists(st.floats(0.0, TWO_PI - 1e-3), min_size=n, max_size=n))
    ph = np.unique(np.round(np.sort(np.asarray(raw)), 3))
    if ph.size < 2 or level_gaps(ph).min() < 0.05:
        ph = uniform_levels(n)
    return ph


def circ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.mod(a - b, TWO_PI)
    return np.minimum(d, TWO_PI - d)


def dense(n: int = 20001) -> torch.Tensor:
    return torch.linspace(-TWO_PI, 2 * TWO_PI, n, dtype=torch.float64)


# ------------------------------------------------------------------------------ level tables
def test_uniform_levels() -> None:
    np.testing.assert_allclose(uniform_levels(4), [0, math.pi / 2, math.pi, 3 * math.pi / 2])
    assert uniform_levels(16).max() < TWO_PI
    with pytest.raises(ConfigError, match="n_levels"):
        uniform_levels(1)


@pytest.mark.parametrize(
    ("phases", "needle"),
    [
        ([0.0, 2.0, 1.0], "sorted"),
        ([0.0, 1.0, 1.0], "sorted"),
        ([0.0, 7.0], r"\[0, 2π\)"),
        ([-0.1, 1.0], r"\[0, 2π\)"),
        ([1.0], "at least 2"),
        ([0.0, TWO_PI - 1e-9], "closer"),
        ([0.0, float("nan")], "finite"),
        ([[0.0, 1.0]], "1-D"),
    ],
)
def test_explicit_levels_rejects(phases: list, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        explicit_levels(phases, name="process.phase")
    assert str(info.value).startswith("process.phase:")


def test_nearest_level_wraps_to_level_zero() -> None:
    ph = uniform_levels(8)
    x = np.array([TWO_PI - 1e-6, -1e-6, TWO_PI, 3 * TWO_PI + 0.01, ph[-1] + 0.01])
    assert nearest_level_np(x, ph).tolist() == [0, 0, 0, 0, 7]
    t = nearest_level(torch.tensor(x, dtype=torch.float32), torch.tensor(ph))
    assert t.tolist() == [0, 0, 0, 0, 7]
    # non-uniform with level 0 away from phase 0: just below φ_0 belongs to level 0 or the top
    # level, whichever is closer on the circle
    # (the boundary between the top level 3.5 and 0.3 + 2π is at 5.0416)
    x = np.array([0.25, 0.0, 5.0, 5.1, 6.0])
    assert nearest_level_np(x, OFFSET).tolist() == [0, 0, 2, 0, 0]


# ------------------------------------------------------------------------------ hard properties
@pytest.mark.parametrize("method", PHASE_METHODS)
@pytest.mark.parametrize("phases", TABLES, ids=TABLE_IDS)
def test_exactly_L_outputs_and_ends(method: str, phases: np.ndarray) -> None:
    q = make(method, phases)
    x = dense()
    idx = q.indices(x)
    L = phases.size
    assert idx.dtype == torch.int64
    assert sorted(torch.unique(idx).tolist()) == list(range(L))  # both ends reachable
    hard = q.hard(x)
    assert torch.equal(hard, q.table().to(hard.dtype)[idx])
    assert np.unique(np.round(hard.numpy(), 9)).size == L


@settings(max_examples=40, deadline=None)
@given(ph=phase_tables(), xs=st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=30))
def test_hard_properties(ph: np.ndarray, xs: list[float]) -> None:
    q = PostTrainingQuantizer(ph)
    x = torch.tensor(xs, dtype=torch.float64)
    idx = q.indices(x).numpy()
    # idempotent: the phase of a hard level maps to that level, also in float32
    assert q.indices(torch.tensor(ph, dtype=torch.float32)).tolist() == list(range(ph.size))
    assert np.array_equal(q.indices(q.hard_phase(x)).numpy(), idx)
    # error <= half a step, and no level is nearer (circular distance)
    err = circ(x.numpy(), ph[idx])
    all_d = circ(x.numpy()[:, None], ph[None, :])
    assert np.all(err <= all_d.min(axis=1) + 1e-12)
    assert np.all(err <= level_gaps(ph).max() / 2 + 1e-12)
    # periodic
    for k in (-2, 1, 3):
        assert np.array_equal(q.indices(x + k * TWO_PI).numpy(), idx)
    assert np.array_equal(nearest_level_np(x.numpy(), ph), idx)


@pytest.mark.parametrize("phases", [uniform_levels(4), uniform_levels(16), NON_UNIFORM],
                         ids=["L4", "L16", "nonuniform"])
@pytest.mark.parametrize("method", PHASE_METHODS)
def test_just_below_two_pi_is_level_zero(method: str, phases: np.ndarray) -> None:
    # FT's default T (12 rad⁻¹) is a soft staircase for gaps of a few tenths of a radian, by
    # design; the wrap-around is checked at a hard one (T·Δ = 50)
    opts = {"t": 50 / level_gaps(phases).min()} if method == "psq-ft" else {}
    q = make(method, phases, **opts)
    q.set_progress(99, 100)  # end of the schedules: hard-ish soft quantizers
    if method == "psq-lt":
        with torch.no_grad():
            q.k.zero_()  # what the growing regulariser drives k to: T = 1/ε
    q.eval()
    x = torch.tensor([TWO_PI - 1e-4, 1e-4, TWO_PI + 1e-4], dtype=torch.float64)
    assert q.indices(x).tolist() == [0, 0, 0]
    t0 = q.table()[0].to(torch.complex128)
    assert torch.allclose(q.hard(x), t0.expand(3), atol=1e-12)
    if method not in ("fp32", "pq"):
        assert torch.allclose(q(x), t0.expand(3), atol=1e-3)


def test_prepare_wraps() -> None:
    q = make("psq-li", 4)
    raw = torch.tensor([-0.5, 7.0, TWO_PI, 3.0])
    out = q.prepare(raw)
    assert torch.all((out >= 0) & (out < TWO_PI))
    assert torch.equal(q.indices(out), q.indices(raw))


# ------------------------------------------------------------------------------ PSQ
@pytest.mark.parametrize("phases", TABLES, ids=TABLE_IDS)
def test_psq_converges_to_hard(phases: np.ndarray) -> None:
    q = PSQQuantizer(phases, schedule="ft")
    d = q.delta
    x = dense(6001)
    ph = torch.tensor(phases)
    hard = q.hard_phase(x)
    # distance of each x to the nearest decision boundary, in units of its gap
    mids = torch.tensor(q._mids)
    near_mid = circular_distance(x[:, None], mids[None]).min(dim=1).values
    away = near_mid > 0.2 * d
    errors = []
    for td in (1.0, 4.0, 16.0, 64.0, 256.0):
        soft = q.soft_phase(x, td / d)
        errors.append(float(circular_distance(soft, hard)[away].max()))
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-9
    # at a level the staircase is flat and exact at a hard temperature (T·Δ = 50)
    assert float(circular_distance(q.soft_phase(ph, 50 / d), ph).max()) < 1e-9
    # FT default: the same T = FT_T (12 rad⁻¹) for every table
    assert float(q.temperature()) == FT_T == 12.0


def test_psq_uniform_matches_quaton_staircase() -> None:
    L = 4
    delta = TWO_PI / L
    x = torch.linspace(0.0, TWO_PI - 1e-6, 201, dtype=torch.float64)
    q = PSQQuantizer(L, schedule="ft")
    for T in (0.5, 3.0, 40.0):
        # QuATON's L-1 steps plus the wrap step (n = 0), and the steps of 12 periods each side
        quaton = sum(delta * torch.sigmoid(T * (x - delta / 2 - i * delta)) for i in range(L))
        others = sum(
            delta * (torch.sigmoid(T * (x - delta / 2 - i * delta - TWO_PI * n)) - float(n < 0))
            for n in range(-12, 13) if n != 0 for i in range(L)
        )
        assert torch.allclose(q.soft_phase(x, T), quaton + others, atol=1e-6)
        if T * delta > 50:  # sharp: the neighbouring periods no longer matter away from 0
            away = (x > 0.3) & (x < TWO_PI - 0.3)
            assert torch.allclose(q.soft_phase(x, T)[away], quaton[away], atol=1e-12)


def test_psq_soft_is_continuous_across_the_cut() -> None:
    for phases in (uniform_levels(8), NON_UNIFORM, OFFSET):
        q = PSQQuantizer(phases, schedule="ft")
        ph0 = float(phases[0])
        x = torch.tensor([ph0 - 1e-7, ph0 + 1e-7], dtype=torch.float64)
        for td in (0.5, 2.0, 8.0, 50.0):
            z = torch.polar(torch.ones(2, dtype=torch.float64), q.soft_phase(x, td / q.delta))
            assert abs(complex(z[0] - z[1])) < 1e-6


def test_psq_forward_is_soft_not_ste() -> None:
    q = make("psq-li", 4)
    q.set_progress(0, 10)
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    phase = torch.angle(q(x)).detach()
    assert abs(float(phase) - float(q.hard_phase(x))) > 1e-3  # a soft value, not a level
    assert not torch.allclose(q(x), q.hard(x))


def test_li_schedule_is_a_function_of_epoch() -> None:
    q = make("psq-li", 4, t_start=1.0, t_end=41.0, warmup_epochs=2)
    x = torch.linspace(0, TWO_PI, 33, dtype=torch.float64)
    temps = []
    for e in range(12):
        q.set_progress(e, 12)
        temps.append(float(q.temperature()))
        if e < 2:
            assert torch.allclose(q(x), torch.polar(torch.ones_like(x), x))  # warm-up is FP32
    assert temps[2] == 1.0 and temps[-1] == 41.0
    assert np.allclose(np.diff(temps[2:]), 40.0 / 9)
    # same epoch twice -> same state and output, whatever happened in between
    q.set_progress(5, 12)
    a = q(x)
    q.set_progress(11, 12)
    q.set_progress(5, 12)
    b = q(x)
    assert torch.equal(a, b)
    assert float(q.temperature()) == temps[5]
    other = rebuild(q.describe())
    other.set_progress(5, 12)
    assert torch.equal(other(x), a)


def test_lt_schedule_and_learnable_temperature() -> None:
    q = make("psq-lt", 4, lt_lambda=0.5, lt_lambda_end=40.5)
    assert isinstance(q, PSQQuantizer)
    t0 = float(q.temperature().detach())
    assert t0 == pytest.approx(2 / q.delta, rel=1e-6)
    # k is in level gaps: the same initial value for every L
    for phases in (2, 16, NON_UNIFORM):
        other = make("psq-lt", phases)
        assert float(other.k.detach()) == pytest.approx(0.499)
        assert 1 / other.lt_eps == pytest.approx(1000 / other.delta)
    weights = []
    for e in range(5):
        q.set_progress(e, 5)
        weights.append(q.lt_weight)
    # geometric in the schedule progress p = e/4: 0.5 · 81^p
    assert weights == pytest.approx([0.5, 1.5, 4.5, 13.5, 40.5])
    q.set_progress(2, 5)
    assert float(q.regularization().detach()) == pytest.approx(0.5 * 4.5 * float(q.k.detach()) ** 2)
    # minimising the regulariser raises T (and T is capped at 1/ε)
    opt = torch.optim.SGD(q.parameters(), lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        q.regularization().backward()
        opt.step()
    t1 = float(q.temperature().detach())
    assert t0 < t1 <= 1 / q.lt_eps + 1e-6
    with pytest.raises(ConfigError, match="lt_lambda_end"):
        make("psq-lt", 4, lt_lambda=1.0, lt_lambda_end=0.5)
    with pytest.raises(ConfigError, match="lt_every"):  # the per-5-epochs ramp is gone
        make("psq-lt", 4, lt_every=5)


@pytest.mark.parametrize("n_epochs", [4, 12])
@pytest.mark.parametrize("phases", [uniform_levels(2), uniform_levels(4), uniform_levels(16),
                                    NON_UNIFORM], ids=["L2", "L4", "L16", "nonuniform"])
def test_lt_default_schedule_ends_in_the_hard_regime(phases: np.ndarray, n_epochs: int) -> None:
    """The default PSQ-LT schedule, run as the trainer runs it (Adam at the default lr 0.05,
    the benchmark's 63 steps per epoch) against a task gradient that wants a softer
    staircase, ends hard.

    The task's pull on the temperature is modelled as ``a·log T`` in the loss, whose gradient
    on ``k`` grows as the staircase sharpens, as measured on the MNIST benchmark network
    (``|∂L/∂ log T|`` ≈ 0.01–0.03 there); ``a = 0.04``. Not a training run: only the
    schedule, the regulariser and the optimizer act on ``k``.

    Hard regime: each step narrower than about one optimizer step in raw phase
    (``4/T <= 1/16`` rad, i.e. ``T·Δ >= 200`` at L = 2), so that training cannot park pixels
    on the ramps (with ``T·Δ`` capped at 100 the benchmark's soft model ended 1.5–2.5 points
    above the hard one at L = 2); then the soft staircase is the hard one.
    """
    q = make("psq-lt", phases)
    assert isinstance(q, PSQQuantizer)
    d = q.delta
    opt = torch.optim.Adam(q.parameters(), lr=0.05)
    for epoch in range(n_epochs):
        q.set_progress(epoch, n_epochs)
        for _ in range(63):
            opt.zero_grad()
            (q.regularization() + 0.04 * torch.log(q.temperature())).backward()
            opt.step()
    temperature = float(q.temperature().detach())
    assert temperature >= 64 and temperature * d >= 50, (temperature, temperature * d)
    # the soft staircase is the hard one: within 1 % of Δ wherever x is more than 0.1 rad
    # from a decision boundary, and exact (1e-9 Δ) at the levels themselves
    x = dense(6001)
    with torch.no_grad():
        soft = q.soft_phase(x)
        at_levels = q.soft_phase(torch.tensor(phases))
    mids = torch.tensor(q._mids)
    away = circular_distance(x[:, None], mids[None]).min(dim=1).values > 0.1
    assert float(circular_distance(soft, q.hard_phase(x))[away].max()) < 0.01 * d
    assert float(circular_distance(at_levels, torch.tensor(phases)).max()) < 1e-9 * d


def test_lt_warmup_is_full_precision_without_regulariser() -> None:
    q = make("psq-lt", 4, warmup_epochs=3)
    x = torch.linspace(0, TWO_PI, 9)
    q.set_progress(2, 10)
    assert torch.allclose(q(x), torch.polar(torch.ones_like(x), x))
    assert float(q.regularization().detach()) == 0.0
    q.set_progress(3, 10)
    assert q.lt_weight == pytest.approx(1e-3)  # lt_lambda at the first epoch after warm-up


@pytest.mark.parametrize("method", PHASE_METHODS)
def test_gradients_reach_raw_and_every_parameter(method: str) -> None:
    torch.manual_seed(0)
    q = make(method, NON_UNIFORM)
    q.set_progress(1, 10)
    q.train()
    # raw spread over the circle; PSQ's gradient is largest near the decision boundaries
    raw = (torch.rand(8, 8, dtype=torch.float64) * TWO_PI).requires_grad_()
    w = torch.randn(8, 8, dtype=torch.complex128)
    out = q(raw)
    loss = (out * w).real.sum() + q.regularization()
    loss.backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    assert int((raw.grad != 0).sum()) >= 32
    for name, p in q.named_parameters():
        assert p.grad is not None and float(p.grad.abs()) > 0, name
    if method == "psq-lt":
        assert [n for n, _ in q.named_parameters()] == ["k"]
        # the task loss alone also reaches k (through the staircase), not just the regulariser
        q.k.grad = None
        (q(raw.detach()) * w).real.sum().backward()
        assert float(q.k.grad.abs()) > 0


# ------------------------------------------------------------------------------ GS, DSQ
def test_gs_eval_deterministic_train_uses_global_rng() -> None:
    q = GumbelSoftmaxQuantizer(4)
    x = torch.linspace(0, TWO_PI, 50)
    q.eval()
    a, b = q(x), q(x)
    assert torch.equal(a, b)
    q.train()
    torch.manual_seed(3)
    c = q(x)
    torch.manual_seed(3)
    d = q(x)
    assert torch.equal(c, d) and not torch.allclose(c, a)
    # annealed τ: geometric from Δ to Δ/50; at the end, eval GS is the nearest level
    q.set_progress(0, 5)
    assert q.tau == pytest.approx(q.delta)
    q.set_progress(4, 5)
    assert q.tau == pytest.approx(q.delta / 50)
    q.eval()
    xs = torch.tensor([0.1, 1.5, 3.0, 6.2])
    assert torch.allclose(q(xs), q.hard(xs), atol=1e-6)


def test_dsq_value_and_soft_step() -> None:
    q = DSQQuantizer(NON_UNIFORM)
    x = dense(3001)
    assert torch.allclose(q(x), q.hard(x), atol=1e-12)  # paper: hard forward, soft gradient
    ph = torch.tensor(NON_UNIFORM)
    soft = q.soft_phase(ph)
    assert torch.allclose(soft, ph, atol=1e-12)  # each interval starts at its level
    top = q.soft_phase(torch.tensor([TWO_PI - 1e-12], dtype=torch.float64))
    assert float(top) == pytest.approx(TWO_PI, abs=1e-6)  # ... and the last ends at 2π ≡ level 0
    q.set_progress(9, 10)
    assert q.alpha == pytest.approx(0.01)
    s = make("dsq", 4, dsq_hard_forward=False, dsq_alpha_start=0.5)
    assert not torch.allclose(s(x), s.hard(x))


# ------------------------------------------------------------------------------ factory
def test_factory_errors_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="psq-lt") as info:
        make("psq", 4)
    assert "fp32" in str(info.value)
    with pytest.raises(ConfigError, match="temperature: unknown key .*t_end, t_start, warmup"):
        make("psq-li", 4, temperature=3.0)
    with pytest.raises(ConfigError, match="t: unknown key .*'ste' takes no options"):
        make("ste", 4, t=1.0)
    with pytest.raises(ConfigError, match="dsq_alpha_start"):
        make("dsq", 4, dsq_alpha_start=1.5)
    with pytest.raises(ConfigError, match="lt_every"):
        make("psq-lt", 4, lt_every=0)
    with pytest.raises(ConfigError, match="epoch"):
        make("psq-li", 4).set_progress(-1, 10)
    for method in PHASE_METHODS:
        q = make(method, NON_UNIFORM)
        d = q.describe()
        assert d["method"] == method
        assert rebuild(d).describe() == d
        import json

        json.dumps(d)
    assert make("fp32", 4).n_levels == 4

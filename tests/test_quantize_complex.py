"""Joint complex (codebook) quantization, its baselines, codebooks and bit allocation."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from optodesign.errors import ConfigError
from optodesign.quantize.codebooks import (
    LearnedCodebook,
    min_spacing,
    phase_codebook,
    polar_codebook,
    square_codebook,
    table_codebook,
    validate_meta_atom_table,
)
from optodesign.quantize.complex import (
    IndependentAmpPhaseQuantizer,
    IndependentReImQuantizer,
    JointComplexQuantizer,
    complex_to_raw,
    joint_temperature,
    nearest_indices,
    quantization_error,
    raw_to_complex,
)
from optodesign.quantize.registry import build_quantizer
from optodesign.train.adaptive import allocate_bits

# An uneven "meta-atom" table: phase coverage with a gap, amplitudes dipping near resonance.
META_T = np.array([
    0.95 * np.exp(0.0j), 0.9 * np.exp(0.7j), 0.6 * np.exp(1.3j), 0.4 * np.exp(1.9j),
    0.7 * np.exp(2.8j), 0.92 * np.exp(3.6j), 0.97 * np.exp(4.3j), 0.85 * np.exp(5.2j),
])

CODEBOOKS = {
    "polar": polar_codebook(2, 8),
    "square": square_codebook(4),
    "phase": phase_codebook(4),
    "meta": META_T,
}


def _random_disk(n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = torch.sqrt(torch.rand(n, generator=g, dtype=dtype)) * 1.05
    ph = torch.rand(n, generator=g, dtype=dtype) * 2 * math.pi
    return torch.polar(r, ph)


# ---------------------------------------------------------------------------- codebooks
def test_polar_codebook_layout() -> None:
    c = polar_codebook(3, 4)
    assert c.dtype == np.complex128 and c.shape == (12,)
    np.testing.assert_allclose(np.abs(c).reshape(3, 4), np.array([[1 / 3], [2 / 3], [1.0]])
                               * np.ones((1, 4)), atol=1e-15)
    np.testing.assert_allclose(np.mod(np.angle(c[8:]), 2 * np.pi), np.arange(4) * np.pi / 2,
                               atol=1e-12)
    z = polar_codebook(3, 4, min_amplitude=0.0)
    assert z.shape == (9,) and z[0] == 0 and np.sum(np.abs(z) < 1e-12) == 1


def test_square_codebook_modes() -> None:
    clip = square_codebook(4)
    assert clip.shape == (16,) and np.all(np.abs(clip) <= 1 + 1e-12)
    assert np.isclose(np.abs(clip).max(), 1.0)
    inside = square_codebook(4, mode="inside")
    axis = np.linspace(-1, 1, 4)
    expect = [a + 1j * b for a in axis for b in axis if abs(a + 1j * b) <= 1]
    np.testing.assert_array_equal(inside, np.array(expect))
    # (1,1) and (0.75,0.75) project to the same point: kept once.
    c9 = square_codebook(9)
    assert len(c9) < 81 and min_spacing(c9) > 1e-9
    with pytest.raises(ConfigError, match="n_per_axis"):
        square_codebook(2, mode="inside")
    with pytest.raises(ConfigError, match="mode"):
        square_codebook(4, mode="round")  # type: ignore[arg-type]


def test_phase_codebook_is_uniform_levels() -> None:
    for L in (2, 3, 4, 8):
        np.testing.assert_allclose(phase_codebook(L),
                                   np.exp(1j * 2 * np.pi * np.arange(L) / L), atol=0)


def test_table_codebook_validation() -> None:
    assert table_codebook(META_T).dtype == np.complex128
    with pytest.raises(ConfigError, match=r"codebook: entry 1 has \|t\| = 1.1"):
        table_codebook([0.5, 1.1j])
    with pytest.raises(ConfigError, match="entries 0 and 2 are the same"):
        table_codebook([0.5, 0.2j, 0.5])
    with pytest.raises(ConfigError, match="at least 2"):
        table_codebook([0.5])
    with pytest.raises(ConfigError, match="not finite"):
        table_codebook([0.5, np.nan])
    table_codebook([1.0 + 1e-12, -1.0])  # numerical slack on passivity


def test_meta_atom_table_validation() -> None:
    s, t = validate_meta_atom_table([100e-9, 150e-9, 200e-9], [0.9, 0.8j, -0.7])
    assert s.dtype == np.float64 and t.dtype == np.complex128
    with pytest.raises(ConfigError, match=r"transmissions: entry 1 .*\|t\| = 1.2"):
        validate_meta_atom_table([100e-9, 150e-9], [0.9, 1.2j])
    with pytest.raises(ConfigError, match=r"sizes: size 1.5e-07 m appears more than once"):
        validate_meta_atom_table([100e-9, 150e-9, 150e-9], [0.9, 0.8j, -0.7])
    with pytest.raises(ConfigError, match="sizes: entry 0"):
        validate_meta_atom_table([-1e-9, 150e-9], [0.9, 0.8j])
    with pytest.raises(ConfigError, match="transmissions: 1 transmissions for 2 sizes"):
        validate_meta_atom_table([100e-9, 150e-9], [0.9])


# ---------------------------------------------------------------------------- hard path
@pytest.mark.parametrize("name", sorted(CODEBOOKS))
def test_codewords_snap_to_themselves_and_hard_is_idempotent(name: str) -> None:
    cb = CODEBOOKS[name]
    for dtype in (torch.float32, torch.float64):
        q = JointComplexQuantizer(cb)
        raw = complex_to_raw(torch.from_numpy(cb)).to(dtype)
        assert torch.equal(q.indices(raw), torch.arange(len(cb)))
        w = complex_to_raw(_random_disk(500, 1)).to(dtype)
        h1 = q.hard(w)
        h2 = q.hard(complex_to_raw(h1))
        assert torch.equal(h1, h2)
        assert torch.equal(q.indices(complex_to_raw(h1)), q.indices(w))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(sorted(CODEBOOKS)))
def test_nearest_codeword_matches_brute_force(seed: int, name: str) -> None:
    cb = CODEBOOKS[name]
    w = _random_disk(64, seed)
    idx = JointComplexQuantizer(cb).indices(complex_to_raw(w)).numpy()
    d = np.abs(w.numpy()[:, None] - cb[None, :])
    # Nearest up to float ties: the chosen distance equals the brute-force minimum.
    np.testing.assert_allclose(d[np.arange(64), idx], d.min(axis=1), rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(L=st.integers(2, 16), phi=st.floats(-20.0, 20.0, allow_nan=False))
def test_phase_codebook_equals_wrap_aware_phase_rounding(L: int, phi: float) -> None:
    step = 2 * math.pi / L
    frac = phi / step - math.floor(phi / step)
    assume(abs(frac - 0.5) > 1e-9)  # off the decision boundary
    expected = int(round(phi / step)) % L
    raw = torch.tensor([[math.cos(phi), math.sin(phi)]], dtype=torch.float64)
    assert int(JointComplexQuantizer(phase_codebook(L)).indices(raw)[0]) == expected


def test_phase_codebook_rounding_batch() -> None:
    g = torch.Generator().manual_seed(3)
    phi = (torch.rand(4000, generator=g, dtype=torch.float64) - 0.5) * 8 * math.pi
    for L in (2, 3, 4, 7, 8):
        step = 2 * math.pi / L
        expected = torch.remainder(torch.round(phi / step), L).to(torch.int64)
        raw = torch.stack((torch.cos(phi), torch.sin(phi)), -1)
        got = JointComplexQuantizer(phase_codebook(L)).indices(raw)
        assert torch.equal(got, expected)


def test_indices_shape_and_batch_dims() -> None:
    q = JointComplexQuantizer(CODEBOOKS["meta"])
    raw = q.init_raw((5, 6), generator=torch.Generator().manual_seed(0))
    assert raw.shape == (5, 6, 2)
    stacked = torch.stack((raw, raw * 0.5))
    idx = q.indices(stacked)
    assert idx.shape == (2, 5, 6) and idx.dtype == torch.int64
    assert torch.equal(idx[0], q.indices(raw))
    assert q.forward(stacked).shape == (2, 5, 6) and q.forward(raw).dtype == torch.complex64
    with pytest.raises(ValueError, match="raw"):
        q.indices(raw[..., 0])


# ---------------------------------------------------------------------------- soft path
def test_soft_converges_to_hard_monotonically() -> None:
    for name, cb in CODEBOOKS.items():
        q = JointComplexQuantizer(cb)
        d = min_spacing(cb)
        g = torch.Generator().manual_seed(7)
        k = torch.randint(0, len(cb), (400,), generator=g)
        noise = torch.polar(torch.rand(400, generator=g, dtype=torch.float64) * d / 4,
                            torch.rand(400, generator=g, dtype=torch.float64) * 2 * math.pi)
        raw = complex_to_raw(torch.from_numpy(cb)[k] + noise)
        hard = q.hard(raw)
        errs = []
        for epoch in range(12):
            q.set_progress(epoch, 12)
            errs.append(float((q(raw) - hard).abs().max()))
        # Strictly decreasing until it reaches float64 round-off (then exactly 0).
        assert all(b < a or a < 1e-12 for a, b in itertools.pairwise(errs)), (name, errs)
        assert errs[0] > 1e-2 and errs[-1] < 1e-3, (name, errs)


def test_schedule_is_pure_and_warmup_is_full_precision() -> None:
    kw = dict(t_start=2.0, t_end=200.0, schedule="geometric", warmup_epochs=2)
    assert joint_temperature(0, 10, **kw) is None and joint_temperature(1, 10, **kw) is None
    assert joint_temperature(2, 10, **kw) == pytest.approx(2.0)
    assert joint_temperature(9, 10, **kw) == pytest.approx(200.0)
    assert joint_temperature(5, 10, **kw) == pytest.approx(2.0 * 100 ** (3 / 7))
    assert joint_temperature(3, 10, t_start=1, t_end=5, schedule="fixed") == 5.0
    assert joint_temperature(1, 3, t_start=1, t_end=5, schedule="linear") == pytest.approx(3.0)

    cb = CODEBOOKS["polar"]
    a = JointComplexQuantizer(cb, warmup_epochs=2)
    b = JointComplexQuantizer(cb, warmup_epochs=2)
    for e in range(6):
        a.set_progress(e, 10)
    b.set_progress(5, 10)
    raw = complex_to_raw(_random_disk(50, 2))
    assert a.temperature == b.temperature and torch.equal(a(raw), b(raw))
    a.set_progress(1, 10)
    assert a.full_precision
    w = raw_to_complex(raw)
    expect = w / torch.clamp(w.abs(), min=1.0)
    torch.testing.assert_close(a(raw), expect, rtol=0, atol=1e-15)
    # Temperature is relative to the codebook spacing: same t_rel, scaled codebook.
    c = JointComplexQuantizer(cb * 0.5)
    c.set_progress(3, 10)
    d = JointComplexQuantizer(cb)
    d.set_progress(3, 10)
    assert c.temperature == pytest.approx(4 * d.temperature)
    json.dumps(a.describe())


def test_straight_through_forward_is_hard() -> None:
    q = JointComplexQuantizer(CODEBOOKS["meta"], straight_through=True)
    raw = complex_to_raw(_random_disk(100, 4)).requires_grad_(True)
    out = q(raw)
    assert torch.equal(out.detach(), q.hard(raw))
    out.real.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0


def test_training_through_schedule_lands_near_nearest_codeword() -> None:
    torch.manual_seed(0)
    cb = polar_codebook(2, 8)
    g = torch.Generator().manual_seed(0)
    target = torch.polar(torch.sqrt(torch.rand(16, 16, generator=g)) * 0.95,
                         torch.rand(16, 16, generator=g) * 2 * math.pi)
    q = JointComplexQuantizer(cb)
    raw = q.init_raw((16, 16), generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=0.05)
    for epoch in range(8):
        q.set_progress(epoch, 8)
        for _ in range(15):
            opt.zero_grad()
            (q(raw) - target).abs().pow(2).mean().backward()
            opt.step()
    trained = float((q.hard(raw) - target).abs().pow(2).mean())
    assert trained < 1.2 * quantization_error(target, q)


# ---------------------------------------------------------------------------- gradients
def test_gradient_reaches_raw_and_learned_codebook() -> None:
    q = build_quantizer("joint-learned", codebook=CODEBOOKS["meta"])
    raw = q.init_raw((4, 4), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    target = torch.full((4, 4), 0.3 + 0.2j)
    loss = (q(raw) - target).abs().pow(2).sum()
    loss.backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    params = list(q.parameters())
    assert len(params) == 1 and params[0].grad is not None and params[0].grad.abs().sum() > 0
    # Warm-up and baselines pass gradients too (also at the origin, without NaN).
    for quant in (JointComplexQuantizer(CODEBOOKS["polar"], warmup_epochs=1),
                  IndependentReImQuantizer(4), IndependentAmpPhaseQuantizer(2, 3)):
        quant.set_progress(0, 3)
        r = torch.tensor([[0.3, -0.2], [0.0, 0.0], [0.5, 0.6]], requires_grad=True)
        quant(r).abs().pow(2).sum().backward()
        assert torch.isfinite(r.grad).all() and r.grad[0].abs().sum() > 0, type(quant)


@pytest.mark.parametrize("squash", ["clip", "tanh"])
def test_learned_codebook_stays_passive(squash: str) -> None:
    cb = LearnedCodebook(CODEBOOKS["polar"], squash=squash)  # type: ignore[arg-type]
    torch.testing.assert_close(cb().to(torch.complex128), torch.from_numpy(CODEBOOKS["polar"]),
                               atol=2e-6, rtol=0)
    q = JointComplexQuantizer(cb, t_start=5.0)
    opt = torch.optim.Adam(q.parameters(), lr=0.2)
    g = torch.Generator().manual_seed(1)
    raw = complex_to_raw(torch.polar(torch.full((64,), 3.0),
                                     torch.rand(64, generator=g) * 2 * math.pi))
    for _ in range(30):  # pull the codewords towards targets far outside the disk
        opt.zero_grad()
        loss = -(q(raw).abs() ** 2).sum()
        loss.backward()
        opt.step()
    t = q.table().detach()
    assert torch.all(t.abs() <= 1 + 1e-6)
    assert torch.all(cb.points.detach().norm(dim=-1) > 0.0)
    assert not torch.allclose(t.to(torch.complex128), torch.from_numpy(CODEBOOKS["polar"]))


# ---------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6])
def test_reim_table_has_2_pow_bits_codewords_and_is_lattice_nearest(bits: int) -> None:
    q = IndependentReImQuantizer(bits)
    t = q.table().numpy()
    assert t.shape == (2**bits,) and len(np.unique(t)) == 2**bits
    w = complex_to_raw(_random_disk(300, bits))
    # On a Cartesian lattice, independent rounding is the nearest codeword (the lattice has
    # |t| > 1 corners, which a JointComplexQuantizer refuses, so use the pure function).
    assert torch.equal(q.indices(w), nearest_indices(raw_to_complex(w), torch.from_numpy(t)))
    if bits >= 2:
        with pytest.raises(ConfigError, match=r"\|t\| = 1.41"):
            JointComplexQuantizer(t)
    assert np.all(np.abs(IndependentReImQuantizer(bits, extent=2**-0.5).table().numpy())
                  <= 1 + 1e-12)
    assert torch.equal(q(w), q.hard(w).to(q(w).dtype))
    json.dumps(q.describe())


def test_reim_differs_from_joint_on_polar_target() -> None:
    cb = polar_codebook(1, 16)  # 4 bits of phase at unit amplitude
    joint, reim = JointComplexQuantizer(cb), IndependentReImQuantizer(4)
    w = torch.from_numpy(cb)
    assert quantization_error(w, joint) < 1e-20
    assert quantization_error(w, reim) > 1e-2
    assert not torch.equal(joint.hard(complex_to_raw(w)).to(torch.complex128),
                           reim.hard(complex_to_raw(w)).to(torch.complex128))
    # On random unit-amplitude targets the joint codebook wins at the same bit budget.
    g = torch.Generator().manual_seed(0)
    u = torch.polar(torch.ones(2000, dtype=torch.float64),
                    torch.rand(2000, generator=g, dtype=torch.float64) * 2 * math.pi)
    assert quantization_error(u, joint) < 0.5 * quantization_error(u, reim)


def test_ampphase_table_and_not_nearest() -> None:
    q = IndependentAmpPhaseQuantizer(1, 2)
    t = q.table().numpy()
    np.testing.assert_allclose(t, polar_codebook(2, 4), atol=0)
    w = _random_disk(3000, 5)
    raw = complex_to_raw(w)
    joint = JointComplexQuantizer(t)
    d_sep = (q.hard(raw) - w).abs()
    d_joint = (joint.hard(raw) - w).abs()
    assert torch.all(d_joint <= d_sep + 1e-12)
    assert torch.any(q.indices(raw) != joint.indices(raw))
    assert quantization_error(w, joint) < quantization_error(w, q)
    # amp_bits = 0 is a phase quantizer: same as the unit-amplitude phase codebook.
    p = IndependentAmpPhaseQuantizer(0, 3)
    np.testing.assert_allclose(p.table().numpy(), phase_codebook(8), atol=0)
    assert torch.equal(p.indices(raw), JointComplexQuantizer(phase_codebook(8)).indices(
        complex_to_raw(w / w.abs())))


def test_factory() -> None:
    cb = CODEBOOKS["meta"]
    joint = build_quantizer("joint", codebook=cb, options={"t_end": 50.0})
    assert isinstance(joint, JointComplexQuantizer) and joint.t_end == 50.0
    assert build_quantizer("joint-learned", codebook=cb, options={"squash": "tanh"}).learned \
        is not None
    assert build_quantizer("reim", options={"bits": 3}).n_levels == 8
    assert build_quantizer("ampphase", options={"amp_bits": 1, "phase_bits": 3}).n_levels == 16
    with pytest.raises(ConfigError, match="method: unknown .*joint, joint-learned, reim"):
        build_quantizer("kmeans", codebook=cb)
    with pytest.raises(ConfigError, match=r"tau: unknown key .*\[options\]: init, schedule"):
        build_quantizer("joint", codebook=cb, options={"tau": 3.0})
    with pytest.raises(ConfigError, match="squash: unknown key"):
        build_quantizer("joint", codebook=cb, options={"squash": "clip"})
    with pytest.raises(ConfigError, match="codebook: method 'joint' needs"):
        build_quantizer("joint")
    with pytest.raises(ConfigError, match="codebook: method 'reim' builds"):
        build_quantizer("reim", codebook=cb)
    with pytest.raises(ConfigError, match="bits: must be an integer >= 1"):
        build_quantizer("reim", options={"bits": 0})
    with pytest.raises(ConfigError, match="schedule"):
        build_quantizer("joint", codebook=cb, options={"schedule": "cosine"})
    with pytest.raises(ConfigError, match="t_start"):
        build_quantizer("joint", codebook=cb, options={"t_start": 0.0})
    for q in (build_quantizer(m, codebook=None if m in ("reim", "ampphase") else cb)
              for m in ("joint", "joint-learned", "reim", "ampphase")):
        assert q.raw_kind == "complex"
        json.dumps(q.describe())
        raw = q.init_raw((3, 3), generator=torch.Generator().manual_seed(0))
        assert raw.shape == (3, 3, 2)
        assert torch.all(q.hard(raw).abs() <= math.sqrt(2) + 1e-6)


def test_module_dtype_casts_keep_the_table() -> None:
    for q in (JointComplexQuantizer(CODEBOOKS["meta"]), IndependentReImQuantizer(4),
              IndependentAmpPhaseQuantizer(1, 3),
              build_quantizer("joint-learned", codebook=CODEBOOKS["meta"])):
        ref = q.table().detach().to(torch.complex128)
        q.to(torch.float32)
        torch.testing.assert_close(q.table().detach().to(torch.complex128), ref, atol=1e-7,
                                   rtol=0)
        q.double()
        assert q.table().dtype == torch.complex128
        assert [k for k in q.state_dict() if "learned" not in k] == []


def test_init_codewords_and_prepare() -> None:
    q = JointComplexQuantizer(CODEBOOKS["meta"], init="codewords")
    raw = q.init_raw((6, 6), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(q.hard(raw), raw_to_complex(raw))
    far = torch.tensor([[3.0, 4.0], [0.1, 0.2]], dtype=torch.float64)
    torch.testing.assert_close(q.prepare(far), torch.tensor([[0.6, 0.8], [0.1, 0.2]],
                                                            dtype=torch.float64))


# ---------------------------------------------------------------------------- bit allocation
def _brute_force(cost: np.ndarray, choices: tuple[int, ...], total: int) -> float:
    best = math.inf
    for bits in itertools.product(range(len(choices)), repeat=cost.shape[0]):
        if sum(choices[j] for j in bits) <= total:
            best = min(best, sum(cost[i, j] for i, j in enumerate(bits)))
    return best


def test_allocate_bits_known_optimum() -> None:
    w = [100.0, 1.0, 1.0]
    calls: list[tuple[int, int]] = []

    def sens(i: int, b: int) -> float:
        calls.append((i, b))
        return w[i] * 4.0**-b

    res = allocate_bits(sens, 3, total_bits=6)
    assert res.bits == (4, 1, 1) and res.used_bits == 6
    assert res.predicted_drop == pytest.approx(100 / 256 + 0.5)
    assert len(calls) == 12 and len(set(calls)) == 12
    # A huge budget gives every layer the most bits; the smallest budget the fewest.
    assert allocate_bits(sens, 3, total_bits=100).bits == (4, 4, 4)
    assert allocate_bits(sens, 3, total_bits=3).bits == (1, 1, 1)
    with pytest.raises(ConfigError, match="total_bits: 2 is below the minimum 3"):
        allocate_bits(sens, 3, total_bits=2)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4), total=st.integers(0, 16))
def test_allocate_bits_matches_brute_force(seed: int, n: int, total: int) -> None:
    rng = np.random.default_rng(seed)
    choices = (1, 2, 3, 4)
    # Non-convex, non-monotone drops: a DP must still find the optimum.
    cost = rng.uniform(0, 1, size=(n, 4))
    if total < n:
        with pytest.raises(ConfigError):
            allocate_bits(lambda i, b: float(cost[i, b - 1]), n, total_bits=total)
        return
    res = allocate_bits(lambda i, b: float(cost[i, b - 1]), n, total_bits=total,
                        bit_choices=choices)
    assert sum(res.bits) == res.used_bits <= total and len(res.bits) == n
    assert res.predicted_drop == pytest.approx(_brute_force(cost, choices, total), abs=1e-12)
    assert res.predicted_drop == pytest.approx(sum(cost[i, b - 1] for i, b in
                                                   enumerate(res.bits)), abs=1e-12)

"""Process files: loading, validation errors, and the thin-element / meta-atom physics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optodesign.design import Design
from optodesign.errors import ConfigError, UserError
from optodesign.process import (
    effective_index_atom,
    load_process,
    process_from_dict,
    shipped_processes,
)
from optodesign.tasks import D2NNSetup

SHIPPED = ("asi-pillars-complex", "fused-silica-etch4", "fused-silica-etch8", "ip-dip-2pp",
           "thz-printed", "tio2-pillars")
C = 299_792_458.0


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def design_for(process, *, levels=None, tables=None, pitch=None, wavelength=None, L=4):
    rng = np.random.default_rng(0)
    if tables is None:
        tables = process.level_table(process.fixed_n_levels or L)
    n = np.asarray(tables).shape[-1]
    return Design(
        setup=D2NNSetup(detectors=((0, 0, 1, 1),), image_size=1),
        wavelength=process.wavelength if wavelength is None else wavelength,
        pitch=(pitch if pitch is not None else
               getattr(process.spec, "lattice", max(process.pitch_min, 1e-6))),
        levels=rng.integers(0, n, (1, 6, 7)) if levels is None else levels,
        level_tables=tables,
        distances=(1e-3, 1e-3),
    )


# ---------------------------------------------------------------------------- loading
def test_shipped_processes_load_and_cite_sources() -> None:
    assert set(SHIPPED) <= set(shipped_processes())
    for name in SHIPPED:
        p = load_process(name)
        assert p.name == name
        assert p.references and "doi:" in p.text
        assert len(p.sha256) == 64 and p.text.startswith("#")


def test_load_by_path_equals_load_by_name() -> None:
    path = Path(__file__).resolve().parents[1] / "layouts" / "thz-printed.toml"
    a, b = load_process(path), load_process("thz-printed")
    assert a.sha256 == b.sha256 and a.wavelength == b.wavelength


def test_unknown_process_name_lists_shipped() -> None:
    with pytest.raises(ConfigError) as e:
        load_process("no-such-process")
    msg = one_line(e)
    assert "no-such-process" in msg and "thz-printed" in msg and "tio2-pillars" in msg


def test_missing_process_file(tmp_path) -> None:
    with pytest.raises(ConfigError) as e:
        load_process(tmp_path / "no-such-dir" / "proc.toml")
    assert "not found" in one_line(e)


BASE = """
name = "t"
kind = "print"
wavelength = "633 nm"
[material]
n = 1.5
[pitch]
min = "1 um"
[rules]
min_feature = "1 um"
[print]
base = "1 mm"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "proc.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (BASE.replace("[rules]", "[rules]\nmin_featur = 3"), ["min_featur", "[rules]"]),
        (BASE + "\ncolour = 'red'\n", ["colour"]),
        (BASE.replace("n = 1.5", "n = -1.5"), ["material.n", "> 0"]),
        (BASE.replace("n = 1.5", "n = 0.9"), ["material.n", "n0"]),
        (BASE.replace("n = 1.5", "n = 1.5\nkappa = -0.1"), ["material.kappa"]),
        (BASE.replace('wavelength = "633 nm"', 'wavelength = "633 parsecs"'), ["wavelength"]),
        (BASE.replace('base = "1 mm"', "base = 'thick'"), ["print.base"]),
        (BASE.replace('kind = "print"', 'kind = "carve"'), ["kind"]),
        (BASE.replace('min = "1 um"', 'min = "1 um"\nmax = "0.5 um"'), ["pitch.min"]),
        (BASE + '\n[etch]\nmasks = 2\n', ["[etch]", "print"]),
        (BASE.replace('[rules]', '[rules]\ndiagonal_necks = "maybe"'), ["rules.diagonal_necks"]),
    ],
)
def test_validation_errors_are_one_line_and_name_the_field(tmp_path: Path, text: str,
                                                           expect: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_process(write(tmp_path, text))
    msg = one_line(e)
    assert "proc.toml" in msg
    for part in expect:
        assert part in msg, msg


def test_pillar_atom_errors(tmp_path: Path) -> None:
    base = """
name = "p"
kind = "pillars"
wavelength = "532 nm"
[material]
n = 2.4
[rules]
min_feature = "50 nm"
[pillars]
height = "600 nm"
lattice = "300 nm"
atoms = [ {size = "0 nm", t = [1, 0]}, {size = "100 nm", ATOM} ]
"""
    for atom, field in (("t = [0.9, 0.9]", "|t|"), ("amplitude = 0.5", "phase"),
                        ("t = [1, 0], phase = 1.0", "either"), ("t = [0.5]", "[re, im]")):
        with pytest.raises(ConfigError) as e:
            load_process(write(tmp_path, base.replace("ATOM", atom)))
        assert field in one_line(e)
    with pytest.raises(ConfigError) as e:
        load_process(write(tmp_path, base.replace('"100 nm"', '"400 nm"').replace(
            "ATOM", "t = [0.5, 0]")))
    assert "pillars.atoms[1].size" in one_line(e)


def test_etch_mask_count_validated(tmp_path: Path) -> None:
    text = BASE.replace('kind = "print"', 'kind = "etch"').replace(
        '[print]\nbase = "1 mm"', "[etch]\nmasks = 0")
    with pytest.raises(ConfigError) as e:
        load_process(write(tmp_path, text))
    assert "etch.masks" in one_line(e)


# ---------------------------------------------------------------------------- physics
def test_thz_print_heights_and_absorption_match_lin_2018() -> None:
    p = load_process("thz-printed")
    lam = C / 0.4e12
    assert p.wavelength == pytest.approx(lam, rel=1e-12)
    # one 2π of phase needs λ/(n − 1) of resin: 1.037 mm for n = 1.7227
    assert p.height_per_2pi == pytest.approx(lam / 0.7227, rel=1e-12)
    assert 1.03e-3 < p.height_per_2pi < 1.045e-3
    t = p.level_table(4)
    h = np.arange(4) / 4 * lam / 0.7227
    np.testing.assert_allclose(np.mod(np.angle(t), 2 * np.pi), 2 * np.pi * np.arange(4) / 4,
                               atol=1e-12)
    np.testing.assert_allclose(np.abs(t), np.exp(-2 * np.pi * 0.031 * h / lam), rtol=1e-12)
    assert np.abs(t[0]) == 1.0 and np.all(np.abs(t) <= 1)
    # total thickness = base + relief
    lv = np.array([[0, 3]])
    np.testing.assert_allclose(p.thickness(lv, np.angle(t)), 0.5e-3 + h[[0, 3]][None],
                               rtol=1e-12)


def test_etch4_step_depths() -> None:
    p = load_process("fused-silica-etch4")
    d = 633e-9 / (4 * 0.457)
    assert p.etch_step == pytest.approx(d, rel=1e-12)
    assert p.fixed_n_levels == 4
    np.testing.assert_allclose(p.level_table(), np.exp(2j * np.pi * np.arange(4) / 4),
                               atol=1e-12)
    np.testing.assert_allclose(p.level_heights(2 * np.pi * np.arange(4) / 4), d * np.arange(4),
                               rtol=1e-12, atol=1e-20)


def test_more_material_is_more_phase_delay() -> None:
    p = load_process("ip-dip-2pp")
    small = p.transmission(np.array(50e-9))
    assert 0 < np.angle(small) < 0.5  # exp(-iωt): delay = +phase
    # detuned wavelength scales the phase as 1/λ; a new index as (n − n0)
    h = np.array(0.5e-6)
    ph = 2 * np.pi * 0.539 * 0.5e-6
    assert np.angle(p.transmission(h, wavelength=800e-9)) == pytest.approx(ph / 800e-9)
    assert np.angle(p.transmission(h, n=1.6)) == pytest.approx(
        2 * np.pi * 0.6 * 0.5e-6 / 780e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 2 * math.pi - 1e-6), min_size=2, max_size=8))
def test_level_table_equals_transmission_of_level_heights(phases: list[float]) -> None:
    p = load_process("thz-printed")
    t = p.level_table(np.array(phases))
    np.testing.assert_allclose(t, p.transmission(p.level_heights(np.array(phases))),
                               rtol=1e-12)
    back = np.mod(np.angle(t), 2 * np.pi)
    err = np.abs(np.angle(np.exp(1j * (back - np.array(phases)))))
    assert err.max() < 1e-9


def test_heights_per_layer_tables() -> None:
    p = load_process("thz-printed")
    lv = np.array([[[0, 1]], [[1, 0]]])
    ph = np.array([[0.0, np.pi], [0.0, np.pi / 2]])
    h = p.heights(lv, ph)
    per = p.height_per_2pi
    np.testing.assert_allclose(h, [[[0, per / 2]], [[per / 4, 0]]], rtol=1e-12)


def test_pillar_table_is_the_documented_model() -> None:
    p = load_process("tio2-pillars")
    s = p.spec
    t = p.level_table()
    assert t.shape == (8,) and t[0] == 1 and np.all(np.abs(t) <= 1)
    model = [effective_index_atom(d, lattice=s.lattice, height=s.height, wavelength=p.wavelength,
                                  n=p.material.n, n0=p.material.n0) for d in s.sizes]
    np.testing.assert_allclose(np.asarray(s.atoms), model, atol=2e-6)
    phases = np.mod(np.angle(t), 2 * np.pi)
    np.testing.assert_allclose(phases, 2 * np.pi * np.arange(8) / 8, atol=0.02)
    assert all(0 < s.lattice - d for d in s.sizes)


def test_pillar_level_atoms_and_transmission() -> None:
    p = load_process("tio2-pillars")
    table = p.level_table()
    perm = np.array([3, 0, 7, 5])
    np.testing.assert_array_equal(p.level_atoms(table[perm]), perm)
    sizes = p.pillar_sizes(np.array([[0, 1, 2, 3]]), table[perm])
    np.testing.assert_allclose(sizes[0], np.asarray(p.spec.sizes)[perm])
    # nearest table entry: 120 nm is closest to the 118 nm atom
    assert p.pillar_transmission(np.array(120e-9)) == table[2]
    bad = table[perm].copy()
    bad[2] *= np.exp(0.01j)
    with pytest.raises(UserError) as e:
        p.level_atoms(bad, layer=2)
    assert "layer 2 level 2" in one_line(e)


# ---------------------------------------------------------------------------- design checks
def test_check_design_accepts_a_matching_design() -> None:
    for name in SHIPPED:
        p = load_process(name)
        pitch = {"thz-printed": 400e-6, "ip-dip-2pp": 1e-6, "fused-silica-etch4": 2e-6}.get(name)
        p.check_design(design_for(p, pitch=pitch))


def test_wavelength_mismatch_is_refused() -> None:
    p = load_process("fused-silica-etch4")
    p.check_design(design_for(p, wavelength=633e-9 * 1.009, pitch=2e-6))
    with pytest.raises(UserError) as e:
        p.check_design(design_for(p, wavelength=532e-9, pitch=2e-6))
    assert one_line(e).startswith("wavelength:")


def test_pitch_below_process_minimum_is_refused() -> None:
    p = load_process("fused-silica-etch4")
    with pytest.raises(UserError) as e:
        p.check_design(design_for(p, pitch=0.5e-6))
    msg = one_line(e)
    assert msg.startswith("pitch:") and "minimum" in msg
    q = load_process("tio2-pillars")
    with pytest.raises(UserError) as e:
        q.check_design(design_for(q, pitch=300e-9))
    assert "lattice" in one_line(e)


def test_level_count_and_table_checks() -> None:
    etch = load_process("fused-silica-etch4")
    eight = np.exp(2j * np.pi * np.arange(8) / 8)
    with pytest.raises(UserError) as e:
        etch.check_design(design_for(etch, tables=eight, pitch=2e-6))
    assert "n_levels" in one_line(e) and "2 binary masks" in str(e.value)
    uneven = np.exp(1j * np.array([0.0, 1.0, 3.0, 4.5]))
    with pytest.raises(UserError) as e:
        etch.check_design(design_for(etch, tables=uneven, pitch=2e-6))
    assert "layer 1 level 1" in one_line(e)
    pil = load_process("tio2-pillars")
    nine = np.exp(2j * np.pi * np.arange(9) / 9)
    with pytest.raises(UserError) as e:
        pil.check_design(design_for(pil, tables=nine))
    assert "meta-atoms" in one_line(e)
    off_table = pil.level_table().copy()
    off_table[5] = 0.5
    with pytest.raises(UserError) as e:
        pil.check_design(design_for(pil, tables=off_table))
    assert "level 5" in one_line(e)


def test_per_level_etch_from_dict_limits_levels_to_its_layers() -> None:
    p = process_from_dict({
        "name": "gray", "kind": "etch", "wavelength": "633 nm",
        "material": {"n": 1.457}, "pitch": {"min": "1 um"}, "rules": {"min_feature": "1 um"},
        "gds": {"layers": [[1, 0], [2, 0], [3, 0]]}, "etch": {"mode": "per-level"},
    })
    assert p.fixed_n_levels is None and p.gds_layers(3) == ((1, 0), (2, 0), (3, 0))
    # any phases are makeable, one depth per level
    t = p.level_table(np.array([0.0, 1.0, 2.5]))
    np.testing.assert_allclose(np.angle(t), [0.0, 1.0, 2.5], atol=1e-12)
    with pytest.raises(UserError) as e:
        p.level_table(4)
    assert "gds.layers" in one_line(e)
    with pytest.raises(ConfigError) as e:
        process_from_dict({"name": "x", "kind": "etch", "wavelength": "1 um",
                           "material": {"n": 1.5}, "pitch": {"min": "1 um"},
                           "rules": {"min_feature": "1 um"},
                           "etch": {"mode": "per-level", "masks": 2}})
    assert "etch.masks" in one_line(e)


def test_complex_amplitude_library_is_the_absorbing_pillar_model():
    """layouts/asi-pillars-complex.toml tabulates effective_index_atom with an absorbing
    pillar; with kappa = 0 the model is the lossless one, and absorption lowers |t| as the
    pillar (and its phase) grows."""
    p = load_process("asi-pillars-complex")
    spec = p.structure.spec
    model = dict(lattice=spec.lattice, height=spec.height, wavelength=p.wavelength,
                 n=p.material.n, kappa=p.material.kappa, n0=p.material.n0)
    for size, t in zip(spec.sizes, spec.atoms, strict=True):
        want = 1.0 if size == 0 else effective_index_atom(size, **model)
        assert abs(t - want) < 2e-6
    amps = np.abs(np.asarray(spec.atoms))
    assert np.all(np.diff(amps) < 0) and amps[-1] < 0.5
    lossless = effective_index_atom(150e-9, **{**model, "kappa": 0.0})
    assert lossless == pytest.approx(
        effective_index_atom(150e-9, **{**model, "kappa": 1e-12}), abs=1e-9)

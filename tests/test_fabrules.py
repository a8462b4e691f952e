"""Fabrication constraints: the one design-rule implementation (fabrules.Deck) that the DRC,
training and refine share; the legalizer, the brick layout, the soft rule count, and the
filter / super-pixel layers around PSQ, binary and joint quantizers."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from optodesign.errors import ConfigError
from optodesign.export.drc import check_levels
from optodesign.fabrules import Deck, brick_layout, brick_size
from optodesign.process import load_process, process_from_dict
from optodesign.quantize.codebooks import phase_codebook
from optodesign.quantize.constraints import (
    Constrained,
    SoftRules,
    cone_kernel,
    filter_raw,
    superpixel_labels,
)
from optodesign.quantize.registry import build_quantizer, constrain, constraints_table

ROOT = Path(__file__).resolve().parents[1]


def strict_process(*, mode: str = "per-level", min_feature: str = "3 um",
                   aspect: float = 0.5):
    """The fused-silica process with every rule an error: per-level etch, 3 px minimum
    feature at 1 um pitch, a wall of the full 2 pi height needs 3 px at aspect 0.5."""
    raw = tomllib.loads((ROOT / "layouts" / "fused-silica-etch4.toml").read_text())
    raw = copy.deepcopy(raw)
    raw["name"] = "strict-etch"
    raw["rules"].update(min_feature=min_feature, max_aspect_ratio=aspect,
                        isolated_pixels="error", diagonal_necks="error")
    if mode == "per-level":
        raw["etch"] = {"mode": "per-level", "substrate": raw["etch"]["substrate"]}
        raw["gds"]["layers"] = [[k + 1, 0] for k in range(4)]
    return process_from_dict(raw)


def deck_of(process, pitch=1e-6, L=4):
    return Deck.of(process, pitch=pitch, level_table=process.level_table(L))


def drc_passes_clean(process, levels, pitch=1e-6, L=4) -> bool:
    """Passed and not a single warning (every rule count zero)."""
    rep = check_levels(levels[None], process.level_table(L)[None], process=process, pitch=pitch)
    return rep.passed and all(v.count == 0 for layer in rep.layers for v in layer.violations)


# ---------------------------------------------------------------------------- one rule set
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deck_counts_what_the_drc_reports(seed):
    process = load_process("fused-silica-etch4")
    lv = np.random.default_rng(seed).integers(0, 4, (24, 31))
    deck = deck_of(process)
    rep = check_levels(lv[None], process.level_table(4)[None], process=process, pitch=1e-6)
    assert deck.count(lv) == sum(v.count for v in rep.layers[0].violations) > 0


@pytest.mark.parametrize("mode", ["per-level", "binary"])
@pytest.mark.parametrize("shape", [(17, 23), (32, 32), (5, 40)])
def test_brick_layout_passes_every_rule_by_construction(mode, shape):
    process = strict_process(mode=mode)
    deck = deck_of(process)
    s = brick_size(deck)
    assert s == 3  # max(2, 3 px minimum feature, 1.39 um / (0.5 * 1 um) -> 3 px)
    for seed in range(3):
        lv = np.random.default_rng(seed).integers(0, 4, shape)
        out = brick_layout(lv, s, n_levels=4)
        assert deck.count(out) == 0
        assert drc_passes_clean(process, out)


@pytest.mark.parametrize("mode", ["per-level", "binary"])
def test_legalize_makes_any_map_clean_and_keeps_clean_maps(mode):
    process = strict_process(mode=mode)
    deck = deck_of(process)
    rng = np.random.default_rng(5)
    for lv in (rng.integers(0, 4, (20, 26)),
               np.kron(rng.integers(0, 4, (5, 6)), np.ones((4, 4), int))):
        out = deck.legalize(lv)
        assert drc_passes_clean(process, out)
        assert np.array_equal(deck.legalize(out), out)  # a clean map is left alone


def test_legalize_of_a_mostly_clean_map_changes_only_near_the_defects():
    process = load_process("fused-silica-etch4")
    deck = deck_of(process, pitch=2e-6)
    lv = np.kron(np.array([[0, 0, 2], [3, 3, 2]]), np.ones((8, 8), int))
    assert deck.count(lv) == 0
    lv[4, 4] = 2  # an isolated pixel
    lv[10, 12], lv[11, 13] = 3, 3  # and a corner contact
    out = deck.legalize(lv)
    assert deck.count(out) == 0
    changed = np.argwhere(out != lv)
    assert 1 <= len(changed) <= 4
    assert all(abs(r - 4) + abs(c - 4) <= 1 or abs(r - 10.5) + abs(c - 12.5) <= 3
               for r, c in changed)


def test_keeps_refuses_exactly_the_changes_that_add_a_violation():
    process = load_process("fused-silica-etch4")
    deck = deck_of(process)
    lv = np.zeros((12, 12), int)
    lv[:, 6:] = 3
    assert deck.keeps(lv, [3], [6], 0)  # moves the edge: still clean
    assert not deck.keeps(lv, [3], [2], 1)  # an isolated pixel
    full_before = deck.count(lv)
    for y, x, v in [(0, 0, 2), (5, 5, 3), (11, 11, 1), (6, 6, 0)]:
        after = lv.copy()
        after[y, x] = v
        assert deck.keeps(lv, [y], [x], v) == (deck.count(after) <= full_before)


def test_pillar_levels_below_the_minimum_feature_are_never_chosen():
    process = load_process("tio2-pillars")
    table = process.level_table(None)
    deck = Deck.of(process, pitch=325e-9, level_table=table)
    lv = np.random.default_rng(0).integers(0, table.size, (8, 8))
    out = deck.legalize(lv)
    assert deck.count(out) == 0
    assert not np.isin(out, deck.bad_levels).any()


# ---------------------------------------------------------------------------- soft count
@pytest.mark.parametrize("mode", ["per-level", "binary"])
def test_soft_rules_on_one_hot_levels_count_isolated_pixels_and_necks(mode):
    process = strict_process(mode=mode, min_feature="1 um", aspect=10.0)
    deck = deck_of(process)
    soft = SoftRules(deck.label_matrices(), isolated=True, necks=True)
    lv = np.random.default_rng(3).integers(0, 4, (9, 11))
    P = torch.nn.functional.one_hot(torch.as_tensor(lv), 4).permute(2, 0, 1).double()
    n = float(soft(P)) * lv.size
    found = deck.raster(lv)
    iso = found["isolated_pixels"][0].size
    if mode == "binary":  # necks of the etched label only, one per corner and mask
        assert n == pytest.approx(iso + found["diagonal_necks"][0].size)
    else:  # every label necks: a checkerboard window counts twice, the DRC once per corner
        assert n >= iso + found["diagonal_necks"][0].size


# ---------------------------------------------------------------------------- layers
def test_cone_filter_keeps_constant_phases_on_the_circle():
    raw = torch.full((1, 10, 12), 2 * np.pi - 0.01)
    raw[0, ::2, ::3] = 0.01  # across the wrap: the circular mean stays near 0
    out = filter_raw(raw, 2.0, raw_kind="phase")
    d = torch.remainder(out + 0.5, 2 * np.pi) - 0.5
    assert d.abs().max() < 0.02
    assert cone_kernel(2.0).sum() == pytest.approx(1.0)
    assert cone_kernel(1.0).shape == (1, 1)


@pytest.mark.parametrize("layout", ["grid", "brick"])
def test_superpixels_hold_one_level_per_block(layout):
    q = constrain(build_quantizer("psq-li", levels=4), "superpixel",
                  {"size": 3, "layout": layout})
    raw = q.init_raw((10, 14), generator=torch.Generator().manual_seed(0))
    idx = q.indices(raw).numpy()
    lab = superpixel_labels((10, 14), 3, layout)
    for b in np.unique(lab):
        assert np.unique(idx[lab == b]).size == 1
    sizes = np.bincount(lab.ravel())
    assert sizes.min() >= 9  # edge pieces join their neighbour


@pytest.mark.parametrize("method", ["psq-li", "binary", "joint"])
@pytest.mark.parametrize("kind", ["filter", "superpixel"])
def test_constraints_compose_with_every_family_and_the_legalizer(method, kind):
    process = load_process("fused-silica-etch4")
    deck = deck_of(process, pitch=4e-6)
    inner = build_quantizer(method, levels=4,
                            codebook=phase_codebook(4) if method == "joint" else None)
    q = constrain(inner, kind, {}, legalize=deck.legalize)
    assert isinstance(q, Constrained) and q.raw_kind == inner.raw_kind
    raw = q.init_raw((16, 16), generator=torch.Generator().manual_seed(1)).requires_grad_()
    q.train()
    t = q(raw)
    assert t.shape == (16, 16) and t.is_complex()
    (t.real.sum() + t.imag.sum()).backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    idx = q.indices(raw.detach()).numpy()
    if q.n_levels == 4:
        assert deck.count(idx) == 0
    assert q.describe()["constraint"]["kind"] == kind


def test_constraint_options_are_checked_by_name_and_range():
    inner = build_quantizer("psq-li", levels=4)
    with pytest.raises(ConfigError, match="fabrication.options.radius"):
        constrain(inner, "filter", {"radius": 0.5}, section="fabrication.options")
    with pytest.raises(ConfigError, match="size"):
        constrain(inner, "superpixel", {"sizes": 2}, section="fabrication.options")
    with pytest.raises(ConfigError, match="constraint"):
        constrain(inner, "blur")
    assert constrain(inner, "none") is inner


def test_docs_show_the_constraints_table():
    text = (ROOT / "docs" / "quantizers.md").read_text(encoding="utf-8")
    assert constraints_table() in text


# ---------------------------------------------------------------------------- config
def _holo(**fab):
    raw = {"task": "hologram",
           "optics": {"wavelength": 633e-9, "pitch": 4e-6, "size": 32, "distance": 1e-3},
           "quantization": {"method": "psq-li", "levels": 4},
           "train": {"epochs": 1, "steps_per_epoch": 2}}
    if fab:
        raw["fabrication"] = fab
    return raw


def test_fabrication_process_sets_the_level_table_and_is_checked_when_read():
    from optodesign.train.config import parse_config

    cfg = parse_config(_holo(process="fused-silica-etch4", constraint="filter",
                             options={"radius": 1.5}))
    assert cfg.quantization.process == "fused-silica-etch4"
    assert cfg.fabrication.constraint == "filter" and cfg.fabrication.legalize
    wrong = _holo(process="fused-silica-etch4")
    wrong["optics"]["wavelength"] = 532e-9
    with pytest.raises(ConfigError) as e:
        parse_config(wrong)
    assert str(e.value).startswith("fabrication.process: 'fused-silica-etch4' is made for")
    assert "\n" not in str(e.value)
    wrong = _holo()
    wrong["optics"]["wavelength"] = 532e-9
    wrong["quantization"]["process"] = "fused-silica-etch4"
    with pytest.raises(ConfigError, match="^quantization.process: 'fused-silica-etch4'"):
        parse_config(wrong)
    both = _holo(process="thz-printed")
    both["quantization"]["process"] = "fused-silica-etch4"
    with pytest.raises(ConfigError, match="^fabrication.process: 'thz-printed' differs"):
        parse_config(both)
    with pytest.raises(ConfigError, match="^fabrication.options.radius"):
        parse_config(_holo(process="fused-silica-etch4", constraint="filter",
                           options={"radius": "wide"}))
    with pytest.raises(ConfigError, match="^fabrication.penalty: needs fabrication.process"):
        parse_config(_holo(penalty=1.0))


# ---------------------------------------------------------------------------- error-aware
def test_fabrication_errors_are_read_with_verify_s_reader():
    from optodesign.train.config import parse_config

    cfg = parse_config(_holo(process="fused-silica-etch4",
                             errors=str(ROOT / "examples" / "errors_fused_silica.toml"),
                             error_samples=3, error_statistic="p5"))
    assert cfg.fabrication.robust is not None
    assert cfg.fabrication.robust.samples == 3 and cfg.fabrication.robust.statistic == "p5"
    with pytest.raises(ConfigError, match="^fabrication.errors"):
        parse_config(_holo(process="fused-silica-etch4",
                           errors=str(ROOT / "no-such-errors.toml")))
    with pytest.raises(ConfigError, match="^fabrication.error_samples: needs fabrication.errors"):
        parse_config(_holo(process="fused-silica-etch4", error_samples=3))

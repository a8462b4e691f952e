"""Complex-modulation layers end to end (CLI, Design round trip) and adaptive precision."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from optodesign.cli import main
from optodesign.design import Design
from optodesign.errors import ConfigError
from optodesign.evaluate import Evaluator
from optodesign.models.stack import DiffractiveStack
from optodesign.quantize.codebooks import polar_codebook
from optodesign.quantize.complex import complex_to_raw
from optodesign.train.adaptive import (
    BitFamily,
    LayerSensitivity,
    adaptive_precision,
    ampphase_split,
    full_precision_transmissions,
    joint_codebook,
    layer_sensitivity,
    pad_level_tables,
    raw_from_checkpoint,
    task_metric,
    train_mixed_precision,
)
from optodesign.train.config import parse_config
from optodesign.train.trainer import Trainer, build_quantizers

HOLOGRAM = """
task = "hologram"
seed = 1

[optics]
wavelength = "532 nm"
pitch = "4 um"
size = 32
distance = "200 um"

[quantization]
method = "{method}"
{quant}

[target]
text = "OP"

[train]
epochs = 3
steps_per_epoch = 20
qat_start = 1
lr = 0.05
"""

QUANT = {
    "joint": 'codebook = "polar:2,4"',
    "joint-learned": 'codebook = "polar:2,4"',
    "reim": "options = { bits = 3, extent = 0.7071067811865476 }",
    "ampphase": "options = { amp_bits = 1, phase_bits = 2 }",
}

TINY_D2NN = {
    "task": "d2nn", "seed": 3,
    "optics": {"wavelength": "0.75 mm", "pitch": "0.4 mm", "size": 24, "layers": 2,
               "distance": "1 cm"},
    "quantization": {"method": "joint", "codebook": "polar:2,4"},
    "data": {"dataset": "digits", "image_size": 12, "train_samples": 96, "test_samples": 48},
    "detectors": {"size": 2},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.1},
}


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: threads only add overhead on a shared CPU
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("method", ["joint", "joint-learned", "reim", "ampphase"])
def test_complex_hologram_trains_through_cli_and_round_trips(tmp_path, method) -> None:
    cfg = tmp_path / "holo.toml"
    cfg.write_text(HOLOGRAM.format(method=method, quant=QUANT[method]))
    out = tmp_path / "run"
    code, text = _cli("train", str(cfg), "--out", str(out), "--quiet")
    assert code == 0, text
    design = Design.load(out)
    assert design.layer_kind == "complex" and design.quantizer["method"] == method
    assert design.levels.shape == (1, 32, 32) and design.n_levels == 8
    table = design.level_tables[0]
    if method in ("joint", "ampphase"):  # the codebook itself is the level table
        assert np.allclose(table, polar_codebook(2, 4), atol=1e-7)
    assert np.all(np.abs(table) <= 1 + 1e-6)
    # the files alone score exactly what training reported
    ev = Evaluator.from_design(design)
    assert ev.evaluate(design.transmissions())["psnr"] == design.metrics["psnr"]
    # training improved on the untrained initialisation (same seed, same quantizer)
    parsed = parse_config({"task": "hologram", "seed": 1,
                           "optics": {"wavelength": "532 nm", "pitch": "4 um", "size": 32,
                                      "distance": "200 um"},
                           "quantization": _quant_table(method), "target": {"text": "OP"}})
    stack = DiffractiveStack(build_quantizers(parsed, None), (32, 32),
                             generator=torch.Generator().manual_seed(1))
    before = ev.evaluate(stack.transmissions("hard"))["psnr"]
    assert design.metrics["psnr"] > before + 3.0


def _quant_table(method: str) -> dict[str, Any]:
    if method.startswith("joint"):
        return {"method": method, "codebook": "polar:2,4"}
    if method == "reim":
        return {"method": method, "options": {"bits": 3, "extent": 1 / math.sqrt(2)}}
    return {"method": method, "options": {"amp_bits": 1, "phase_bits": 2}}


def test_complex_d2nn_design_round_trip_is_exact(tmp_path) -> None:
    tr = Trainer(parse_config(TINY_D2NN), tmp_path / "run", progress=False)
    result = tr.run()
    loaded = Design.load(tmp_path / "run")
    assert loaded.layer_kind == "complex"
    assert np.array_equal(loaded.levels, result.design.levels)
    assert np.array_equal(loaded.level_tables, result.design.level_tables)
    assert np.array_equal(loaded.level_tables[1], polar_codebook(2, 4))
    acc = Evaluator.from_design(loaded).evaluate(loaded.transmissions())["accuracy"]
    assert acc == loaded.metrics["accuracy"]
    # the checkpoint holds the raw (Re, Im) maps whose nearest codewords are the levels
    raw = raw_from_checkpoint(tmp_path / "run")
    q = build_quantizers(tr.cfg, None)[0]
    assert all(r.shape == (24, 24, 2) for r in raw)
    assert np.array_equal(np.stack([q.indices(r).numpy() for r in raw]), loaded.levels)


def test_mixed_precision_loop_reproduces_trainer_run(tmp_path) -> None:
    raw = dict(TINY_D2NN, train=dict(TINY_D2NN["train"], qat_start=1))
    tr = Trainer(parse_config(raw), tmp_path / "run", progress=False)
    ref = tr.run().design
    mine = train_mixed_precision(tr, build_quantizers(tr.cfg, None)).design
    assert np.array_equal(mine.levels, ref.levels)
    assert mine.metrics["accuracy"] == ref.metrics["accuracy"]


# ---------------------------------------------------------------------------- families
@pytest.mark.parametrize("method", ["joint", "joint-learned", "reim", "ampphase", "psq-li"])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_bit_family_has_two_to_the_bits_passive_distinct_levels(method, bits) -> None:
    q = BitFamily(method)(bits)
    t = q.table().detach().to(torch.complex128).numpy()
    assert t.shape == (2**bits,)
    assert np.all(np.abs(t) <= 1 + 1e-6)
    assert np.min(np.abs(t[:, None] - t[None, :]) + np.eye(t.size)) > 1e-3


def test_joint_codebook_matches_the_ampphase_table() -> None:
    assert ampphase_split(3) == (0, 3) and ampphase_split(4) == (1, 3)
    for b in (1, 2, 3, 4, 5):
        base = BitFamily("ampphase")(b).table().detach().to(torch.complex128).numpy()
        assert np.allclose(joint_codebook(b), base, atol=1e-12)


def test_bit_family_rejects_unknown_methods_and_options() -> None:
    with pytest.raises(ConfigError, match="method: unknown bit family 'magic'"):
        BitFamily("magic")
    with pytest.raises(ConfigError, match="options"):
        BitFamily("reim", {"colour": 3})


# ---------------------------------------------------------------------------- adaptive precision
def _weighted_metric(reference: list[torch.Tensor],
                     weights: tuple[float, ...]) -> Callable[[Sequence[torch.Tensor]], float]:
    """Task metric of a constructed case: −Σ_i w_i · mean |t_i − ref_i|²."""
    def metric(ts: Sequence[torch.Tensor]) -> float:
        return -sum(w * float(torch.mean(torch.abs(t - r) ** 2))
                    for w, t, r in zip(weights, ts, reference, strict=True))
    return metric


def test_adaptive_precision_gives_fewer_bits_to_the_insensitive_layer() -> None:
    g = torch.Generator().manual_seed(0)
    w = [torch.polar(torch.sqrt(torch.rand(16, 16, generator=g, dtype=torch.float64)),
                     torch.rand(16, 16, generator=g, dtype=torch.float64) * 2 * math.pi)
         for _ in range(3)]
    raw = [complex_to_raw(x) for x in w]
    ref = full_precision_transmissions(raw)
    metric = _weighted_metric(ref, (100.0, 1.0, 10.0))  # layer 1 barely matters
    sens = layer_sensitivity(raw, metric, BitFamily("joint"), bit_choices=(1, 2, 3, 4))
    assert sens.reference == 0.0
    drops = sens.table()
    assert np.all(drops >= 0) and np.all(np.diff(drops, axis=1) <= 1e-12)  # more bits, less drop
    assert np.all(drops[0] > drops[2]) and np.all(drops[2] > drops[1])
    for budget in (5, 6, 7, 8, 9):
        alloc = adaptive_precision(sens, total_bits=budget)
        assert alloc.used_bits == sum(alloc.bits) <= budget
        assert alloc.bits[1] < alloc.bits[0] and alloc.bits[1] <= alloc.bits[2]
    # the drop the allocation predicts is the sum of the measured ones
    alloc = adaptive_precision(sens, total_bits=7)
    assert alloc.predicted_drop == pytest.approx(
        sum(sens.drop(i, b) for i, b in enumerate(alloc.bits)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=3), min_size=1, max_size=3),
       st.floats(0, 1.5))
def test_max_drop_gives_the_fewest_bits_that_meet_it(rows: list[list[float]],
                                                     max_drop: float) -> None:
    choices = (1, 2, 3)
    # a monotone table: drop falls (weakly) with bits
    metrics = tuple(tuple(-v for v in sorted(r, reverse=True)) for r in rows)
    sens = LayerSensitivity(choices, 0.0, metrics)
    alloc = adaptive_precision(sens, max_drop=max_drop)
    n = len(rows)
    totals = {c: sum(sens.drop(i, b) for i, b in enumerate(c))
              for c in itertools.product(choices, repeat=n)}
    feasible = [sum(c) for c, d in totals.items() if d <= max_drop]
    if feasible:
        assert alloc.used_bits == min(feasible)
        assert alloc.predicted_drop <= max_drop
    else:  # nothing meets it: the least drop there is, with the fewest bits
        assert alloc.predicted_drop == pytest.approx(min(totals.values()), abs=1e-12)


def test_monotone_envelope_removes_noise_inversions() -> None:
    sens = LayerSensitivity((1, 2, 3), 1.0, ((0.5, 0.9, 0.8),))  # 2 bits "beat" 3 bits
    env = sens.monotone()
    assert env.metrics == ((0.5, 0.8, 0.8),)
    # at face value 2 bits meet a 0.15 drop; with the envelope nothing does
    raw_alloc = adaptive_precision(sens, max_drop=0.15, monotone=False)
    assert raw_alloc.bits == (2,) and raw_alloc.predicted_drop == pytest.approx(0.1)
    env_alloc = adaptive_precision(sens, max_drop=0.15)
    assert env_alloc.predicted_drop == pytest.approx(0.2)
    assert adaptive_precision(sens, max_drop=0.25).bits == (2,)
    assert adaptive_precision(sens, max_drop=0.6).bits == (1,)
    with pytest.raises(ConfigError, match="exactly one"):
        adaptive_precision(sens)


def test_pad_level_tables_repeats_the_last_entry() -> None:
    t = pad_level_tables([np.array([1, -1]), polar_codebook(1, 4)])
    assert t.shape == (2, 4) and t.dtype == np.complex128
    assert np.array_equal(t[0], [1, -1, -1, -1]) and np.array_equal(t[1], polar_codebook(1, 4))


def test_mixed_precision_design_round_trip_and_sensitivity_pipeline(tmp_path) -> None:
    tr = Trainer(parse_config(TINY_D2NN), tmp_path / "unused", progress=False)
    fam = BitFamily("joint")
    fp = train_mixed_precision(tr, [fam(3), fam(3)], epochs=1)
    raw_fp = [p.detach().clone() for p in fp.stack.raw]
    ev = Evaluator.from_design(fp.design, dataset=tr.dataset)
    images, labels = tr.dataset.train_images[96:160], tr.dataset.train_labels[96:160]
    sens = layer_sensitivity(raw_fp, task_metric(ev, images=images, labels=labels), fam,
                             bit_choices=(1, 2, 3))
    assert len(sens.metrics) == 2 and all(0 <= m <= 1 for row in sens.metrics for m in row)
    alloc = adaptive_precision(sens, total_bits=4)
    assert sum(alloc.bits) <= 4
    res = train_mixed_precision(tr, fam.quantizers((1, 3)), init_raw=raw_fp, epochs=1,
                                qat_start=0, out_dir=tmp_path / "mixed")
    d = Design.load(tmp_path / "mixed")
    assert d.quantizer["bits"] == [1, 3] and d.metrics["total_bits"] == 4
    assert d.level_tables.shape == (2, 8)
    assert d.levels[0].max() <= 1 and d.levels[1].max() <= 7  # layer 1 uses 2 levels only
    assert np.array_equal(d.levels, res.design.levels)
    hard = np.stack([t.detach().numpy() for t in res.stack.transmissions("hard")])
    assert np.allclose(d.transmissions(), hard, atol=1e-7)
    assert Evaluator.from_design(d).evaluate(d.transmissions())["accuracy"] == \
        d.metrics["accuracy"]
    # post-training quantization (no epochs) is the nearest codeword of the clipped weights
    ptq = train_mixed_precision(tr, fam.quantizers((2, 2)), init_raw=raw_fp, epochs=0)
    q = fam(2)
    assert np.array_equal(ptq.design.levels[0], q.indices(q.prepare(raw_fp[0])).numpy())

"""Error-aware training samples verify's error models, with one placement implementation.

* :mod:`optodesign.optics.placement` (torch, batched over samples, differentiable) is what
  verify's ``render`` and training both move layers with;
* for a hard design and a fixed draw, :class:`optodesign.train.robust.ErrorSampler`'s
  realisation equals verify's rendering of the same ``Physical`` under the training model,
  for each error kind alone;
* the line-width bias's gradient is its first-order change (``bias_strips``), which
  verify's element physics confirms to second order;
* an error-aware training run still trains and is deterministic for a seed, and keeps the
  epoch that is best under the errors (scored as verify scores it).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from optodesign.design import Design
from optodesign.evaluate import reads_cells
from optodesign.export.fab import export_design
from optodesign.grid import Grid
from optodesign.optics.placement import place, place_drawn
from optodesign.process import load_process
from optodesign.tasks import HologramSetup, get_task
from optodesign.train.robust import ErrorSampler, Robust, aggregate, bias_strips
from optodesign.variation.perturb import apply_random, apply_systematic
from optodesign.variation.spec import ErrorModel
from optodesign.verify.model import SimModel, render
from optodesign.verify.readback import read_fab

pytestmark = pytest.mark.filterwarnings(
    "ignore::optodesign.optics.propagation.SamplingWarning")

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- placement
@pytest.mark.parametrize("move", [place, place_drawn])
def test_placement_is_batched_over_samples_and_linear(move) -> None:
    """``(K, S, ny, nx)`` with per-(layer, sample) moves is the per-sample ``(K, ny, nx)``
    call; the move is linear in the transmissions and its gradient is the adjoint's."""
    rng = np.random.default_rng(1)
    K, S, n = 2, 3, 9
    t = torch.as_tensor(rng.normal(size=(K, S, n, n)) + 1j * rng.normal(size=(K, S, n, n)))
    grid = Grid((n, n), 1e-4)
    shifts = rng.normal(size=(K, S, 2)) * 1e-4
    rot = rng.normal(size=(K, S)) * 0.05
    rot[0, 1] = 0.0  # a pure shift among rotations
    shifts[1, 2] = (2e-4, -1e-4)  # whole pixels
    batched = move(t, grid=grid, shifts=shifts, rotations=rot)
    for s in range(S):
        one = move(t[:, s], grid=grid, shifts=shifts[:, s], rotations=rot[:, s])
        torch.testing.assert_close(batched[:, s], one, rtol=0, atol=1e-13)
    u = torch.as_tensor(rng.normal(size=(K, S, n, n)) + 1j * rng.normal(size=(K, S, n, n)))
    torch.testing.assert_close(move(2 * t - 1j * u, grid=grid, shifts=shifts, rotations=rot),
                               2 * batched - 1j * move(u, grid=grid, shifts=shifts,
                                                       rotations=rot), rtol=0, atol=1e-12)
    # the gradient of <v, move(t)> is the adjoint applied to v: nonzero, and matches a
    # finite difference along u
    tt = t.clone().requires_grad_(True)
    v = torch.as_tensor(rng.normal(size=(K, S, n, n)) + 0j)
    (v * move(tt, grid=grid, shifts=shifts, rotations=rot)).real.sum().backward()
    assert tt.grad is not None and float(tt.grad.abs().max()) > 0.1
    d = (v * move(u, grid=grid, shifts=shifts, rotations=rot)).real.sum()
    assert float((tt.grad.conj() * u).real.sum()) == pytest.approx(float(d), rel=1e-9)


def test_nothing_moves_returns_the_layers_themselves() -> None:
    t = torch.ones(2, 5, 5, dtype=torch.complex64)
    assert place(t, grid=Grid((5, 5), 1.0), shifts=np.zeros((2, 2))) is t
    assert place_drawn(t, grid=Grid((5, 5), 1.0), rotations=np.zeros(2)) is t


# ---------------------------------------------------------------------------- sampler = verify
PITCH = 0.4e-3


@pytest.fixture(scope="module")
def fab(tmp_path_factory: pytest.TempPathFactory):
    """A two-layer 4-level ``thz-printed`` relief, exported and read back as verify reads it."""
    root = tmp_path_factory.mktemp("robust")
    p = load_process("thz-printed")
    rng = np.random.default_rng(5)
    n = 12
    d = Design(setup=HologramSetup(), wavelength=p.wavelength, pitch=PITCH,
               levels=rng.integers(0, 4, (2, n, n)), level_tables=p.level_table(4),
               distances=(0.01, 0.01, 0.02), target=np.ones((n, n)))
    d.save(root / "run")
    export_design(d, p, root / "fab", formats="gds", design_dir=root / "run", plot=False)
    return read_fab(root / "fab")


ONE_ERROR = {
    "height_sigma": 30e-6,
    "height_scale": 0.05,
    "index_error": 0.02,
    "kappa": 0.002,
    "wavelength_shift": 20e-6,
    "misalignment": 0.3 * PITCH,
    "rotation": 2.0,  # degrees
    "linewidth_bias": 0.15 * PITCH,
    "spacing_sigma": 1e-3,
}


@pytest.mark.parametrize("name", list(ONE_ERROR))
def test_training_realisation_is_verify_s(fab, name: str) -> None:
    """For the hard design and draw ``(seed 7, sample 3)``, each error alone: the sampler's
    layers equal verify's ``render`` of the same ``Physical`` under the training model within
    1e-5 (complex64 training layers), with the same distances and wavelength; and the error
    changes the realisation (by more than 1e-3)."""
    model = ErrorModel(**{name: ONE_ERROR[name]})
    d = fab.design
    sampler = ErrorSampler(model, process=fab.process, grid=d.grid, wavelength=d.wavelength,
                           distances=d.distances, seed=7, oversample=fab.physical.oversample,
                           cells=reads_cells(get_task(d.task), d.pixels))
    assert sampler.cells  # a near-field design of cells: its layers move exactly
    levels = fab.levels.astype(np.int64)
    nominal = sampler.nominal(levels, d.level_tables)
    hard = [torch.as_tensor(d.level_tables[k][levels[k]].astype(np.complex64))
            for k in range(levels.shape[0])]
    r = sampler.sample(hard, nominal, scale=1.0, index=3)
    phys = apply_random(apply_systematic(fab.physical, model), model, seed=7, sample=3)
    want = render(fab, phys, SimModel.training(d))
    got = torch.stack(r.transmissions).numpy()
    assert np.abs(got - want).max() < 1e-5, name
    assert r.distances == phys.distances and r.wavelength == phys.wavelength
    changed = (np.abs(want - fab.transmissions()).max() > 1e-3
               or r.distances != tuple(d.distances) or r.wavelength != d.wavelength)
    assert changed, name
    # the curriculum scales the magnitudes: half the error is verify's half-size model
    half = sampler.sample(hard, nominal, scale=0.5, index=3)
    m2 = ErrorModel(**{name: ONE_ERROR[name] / 2})
    p2 = apply_random(apply_systematic(fab.physical, m2), m2, seed=7, sample=3)
    assert np.abs(torch.stack(half.transmissions).numpy()
                  - render(fab, p2, SimModel.training(d))).max() < 1e-5
    assert half.distances == p2.distances


def test_soft_layers_keep_their_gradient(fab) -> None:
    """A soft layer off the levels is changed by the same per-pixel factor as its hard
    level, and the loss of a realisation has a gradient with respect to it."""
    d = fab.design
    model = ErrorModel(height_sigma=30e-6, misalignment=0.3 * PITCH, rotation=1.0)
    sampler = ErrorSampler(model, process=fab.process, grid=d.grid, wavelength=d.wavelength,
                           distances=d.distances, seed=1)
    levels = fab.levels.astype(np.int64)
    nominal = sampler.nominal(levels, d.level_tables)
    soft = [torch.as_tensor(0.9 * d.level_tables[k][levels[k]].astype(np.complex64)
                            ).requires_grad_(True) for k in range(2)]
    r = sampler.sample(soft, nominal, scale=1.0, index=0)
    sum(t.abs().square().sum() for t in r.transmissions).backward()
    assert all(t.grad is not None and float(t.grad.abs().max()) > 0 for t in soft)


@pytest.mark.parametrize("name,pitch", [("thz-printed", PITCH), ("fused-silica-etch4", 1e-6)])
def test_bias_strips_is_the_first_order_bias(name: str, pitch: float) -> None:
    """``bias_strips`` predicts verify's biased elements (``element_transmissions``, the
    dilation on the 8x8 sub-pixel grid) to first order: on a random 4-level relief of 2 px
    blocks, what it leaves unexplained is under 10 % of the change at ±⅛ px, and doubles
    from ±⅛ to ±¼ px (the corners, second order); a flat relief has no bias change."""
    from optodesign.process.structure import take_levels

    p = load_process(name)
    st, table = p.structure, p.level_table(4)[None]
    rng = np.random.default_rng(0)
    levels = np.kron(rng.integers(0, 4, (1, 12, 12)), np.ones((1, 2, 2), dtype=np.int64))
    values = np.asarray(st.level_values(table[0]))[None]
    phys = st.physical(levels, take_levels(values, levels), values, table,
                       wavelength=p.wavelength, distances=(0.01, 0.01), oversample=8)
    e0 = st.element_transmissions(phys, pitch=pitch)
    for sign in (1, -1):
        rel = []
        for f in (1 / 4, 1 / 8):  # 2 and 1 sub-pixels (between them verify mixes linearly)
            b = sign * f * pitch
            made = st.element_transmissions(dataclasses.replace(phys, bias=b), pitch=pitch)
            pred = e0 + bias_strips(torch.as_tensor(e0), phys.heights, b, pitch).numpy()
            rel.append(np.linalg.norm(made - pred) / np.linalg.norm(made - e0))
        assert rel[1] < 0.1 and rel[1] < 0.6 * rel[0], (sign, rel)
    flat = torch.ones(1, 6, 6, dtype=torch.complex128)
    assert float(bias_strips(flat, np.zeros((1, 6, 6)), pitch / 8, pitch).abs().max()) == 0


def test_bias_gradient_without_changing_the_value(fab) -> None:
    """Under a line-width bias the realisation's value is verify's (the equality tests above)
    and its gradient adds the bias's first-order change: the directional derivative of a
    linear read-out along a change of the layers is that of ``t · made/nominal +
    bias_strips(t)``, not of ``t · made/nominal`` alone."""
    d = fab.design
    b = 0.15 * PITCH
    sampler = ErrorSampler(ErrorModel(linewidth_bias=b), process=fab.process, grid=d.grid,
                           wavelength=d.wavelength, distances=d.distances, seed=1,
                           oversample=fab.physical.oversample)
    levels = fab.levels.astype(np.int64)
    nominal = sampler.nominal(levels, d.level_tables)
    hard = torch.as_tensor(np.stack([d.level_tables[k][levels[k]] for k in range(2)]))
    ts = [x.clone().requires_grad_(True) for x in hard.unbind(0)]
    rng = np.random.default_rng(2)
    v = torch.as_tensor(rng.normal(size=hard.shape) + 1j * rng.normal(size=hard.shape))
    u = torch.as_tensor(rng.normal(size=hard.shape) + 1j * rng.normal(size=hard.shape))
    r = sampler.sample(ts, nominal, scale=1.0, index=0)
    (v * torch.stack(r.transmissions)).real.sum().backward()
    got = sum(float((t.grad.conj() * u[k]).real.sum()) for k, t in enumerate(ts))
    made = fab.process.structure.element_transmissions(
        dataclasses.replace(nominal.physical, bias=b), pitch=d.pitch)
    ratio = torch.as_tensor(made / nominal.elements)
    strips = bias_strips(u, nominal.physical.heights, b, d.pitch)
    assert float(strips.abs().max()) > 0.05
    assert got == pytest.approx(float((v * (u * ratio + strips)).real.sum()), rel=1e-6)
    assert got != pytest.approx(float((v * u * ratio).real.sum()), rel=1e-3)


def test_curriculum_and_statistics() -> None:
    r = Robust("f.toml", ramp=0.5)
    assert [r.scale(e, 4) for e in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert Robust("f.toml", ramp=0.0, strength=0.7).scale(0, 4) == 0.7
    losses = torch.arange(40.0)
    assert float(aggregate(losses, "mean")) == pytest.approx(19.5)
    assert float(aggregate(losses, "p5")) == pytest.approx(38.5)  # the worst 2 of 40


# ---------------------------------------------------------------------------- training
def _holo(errors: bool, seed: int = 2, epochs: int = 2) -> dict:
    raw = {"task": "hologram", "seed": seed,
           "optics": {"wavelength": "633 nm", "pitch": "4 um", "size": 16, "layers": 1,
                      "distance": "1 mm"},
           "quantization": {"method": "psq-li", "levels": 4, "process": "fused-silica-etch4"},
           "target": {"kind": "spots", "spots": [2, 2], "spacing": 6, "spot_size": 2},
           "train": {"epochs": epochs, "steps_per_epoch": 8, "lr": 0.1}}
    if errors:
        raw["fabrication"] = {"errors": str(ROOT / "examples" / "errors_fused_silica.toml"),
                              "error_samples": 2, "error_ramp": 0.0}
    return raw


@pytest.mark.slow
def test_error_aware_training_trains_and_is_deterministic(tmp_path: Path) -> None:
    """Every error of the example file on (heights, index, misalignment, rotation, bias,
    spacing, detuning): the loss falls; a run stopped after one epoch and resumed agrees
    exactly with the uninterrupted run of the same seed (the draws are functions of the
    epoch and step); and the errors change what is trained (the run differs from one without
    them)."""
    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer

    def run(name: str, errors: bool, epochs: int = 2, resume: bool = False) -> list[float]:
        cfg = parse_config(_holo(errors, epochs=epochs))
        res = Trainer(cfg, tmp_path / name, progress=False).run(resume=resume)
        return [h["train_loss"] for h in res.history]

    a = run("a", True)
    assert all(math.isfinite(x) for x in a) and a[-1] < a[0]
    run("b", True, epochs=1)
    assert run("b", True, resume=True) == a
    assert run("c", False) != a


@pytest.mark.parametrize("name,value", [("linewidth_bias", 10e-9), ("height_sigma", 20e-9),
                                        ("linewidth_bias_sigma", 10e-9),
                                        ("index_error", 0.05), ("misalignment", 100e-9)])
def test_pillars_realisation_is_verify_s(tmp_path: Path, name: str, value: float) -> None:
    """The sampler is kind-agnostic: on a ``tio2-pillars`` metasurface (every meta-atom a
    level) each error alone equals verify's rendering too."""
    p = load_process("tio2-pillars")
    table = p.level_table()
    rng = np.random.default_rng(2)
    d = Design(setup=HologramSetup(), wavelength=p.wavelength, pitch=325e-9,
               levels=rng.integers(0, table.size, (1, 10, 10)), level_tables=table,
               distances=(0.0, 5e-6), target=np.ones((10, 10)))
    d.save(tmp_path / "run")
    export_design(d, p, tmp_path / "fab", formats="gds", design_dir=tmp_path / "run",
                  plot=False)
    fab = read_fab(tmp_path / "fab")
    model = ErrorModel(**{name: value})
    dd = fab.design
    sampler = ErrorSampler(model, process=fab.process, grid=dd.grid, wavelength=dd.wavelength,
                           distances=dd.distances, seed=4, oversample=fab.physical.oversample,
                           cells=reads_cells(get_task(dd.task), dd.pixels))
    levels = fab.levels.astype(np.int64)
    nominal = sampler.nominal(levels, dd.level_tables)
    hard = [torch.as_tensor(dd.level_tables[0][levels[0]].astype(np.complex64))]
    r = sampler.sample(hard, nominal, scale=1.0, index=1)
    phys = apply_random(apply_systematic(fab.physical, model), model, seed=4, sample=1)
    want = render(fab, phys, SimModel.training(dd))
    assert np.abs(r.transmissions[0].numpy() - want[0]).max() < 1e-5
    assert np.abs(want - fab.transmissions()).max() > 1e-3


@pytest.mark.slow
def test_error_aware_training_keeps_the_most_robust_epoch(tmp_path: Path) -> None:
    """Under error-aware training the kept epoch is the one whose metric is best under the
    fixed validation realisations of the errors file (not the best error-free one), and its
    recorded score is verify's: the mean PSNR of those draws of the written design, rendered
    by verify's training model."""
    from optodesign.evaluate import Evaluator
    from optodesign.train.config import parse_config
    from optodesign.train.robust import VALIDATION_REALISATIONS, VALIDATION_START
    from optodesign.train.trainer import Trainer
    from optodesign.variation.spec import load_errors

    raw = _holo(True, epochs=3)
    cfg = parse_config(raw)
    res = Trainer(cfg, tmp_path / "run", progress=False).run()
    scores = [h["val_psnr_hard_errors"] for h in res.history]
    assert "val_psnr_hard" not in res.history[0]
    design = Design.load(tmp_path / "run")
    assert design.metrics["kept_epoch"] == int(np.argmax(scores)) + 1
    errors = load_errors(raw["fabrication"]["errors"])
    export_design(design, load_process("fused-silica-etch4"), tmp_path / "fab", formats="gds",
                  design_dir=tmp_path / "run", plot=False)
    fab = read_fab(tmp_path / "fab", oversample=errors.sweep.oversample)
    ev, model, sim = Evaluator.from_design(fab.design), errors.errors, SimModel.training(design)
    base = apply_systematic(fab.physical, model)
    psnr = []
    for i in range(VALIDATION_REALISATIONS):
        phys = apply_random(base, model, seed=cfg.seed, sample=VALIDATION_START + i)
        t = torch.as_tensor(render(fab, phys, sim).astype(np.complex64))
        psnr.append(ev.evaluate(t, wavelength=phys.wavelength, distances=phys.distances)["psnr"])
    assert max(scores) == pytest.approx(float(np.mean(psnr)), abs=2e-3)
    assert abs(np.mean(psnr) - design.metrics["psnr"]) > 0.01  # the errors are on

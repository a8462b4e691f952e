"""Discrete refinement: exact incremental scoring, design rules, solvers, the refine command."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from optodesign.cli import main
from optodesign.data.targets import text_target
from optodesign.design import Design
from optodesign.errors import UserError
from optodesign.evaluate import Evaluator
from optodesign.refine import (
    Objective,
    change_allowed,
    direct_binary_search,
    refine,
    satisfies_min_feature,
    simulated_annealing,
)
from optodesign.tasks import D2NNSetup, HologramSetup, LensSetup, SplitterSetup
from optodesign.verify.model import SimModel, evaluator_for

N = 16


def hologram(L: int = 2, *, layers: int = 1, seed: int = 0, fixed: bool = False,
             levels: np.ndarray | None = None, opaque: bool = False) -> Design:
    """A tiny random hologram: 16x16 px, 2 µm pitch, 532 nm, target letter 'A' 100 µm away."""
    rng = np.random.default_rng(seed)
    table = np.exp(2j * np.pi * np.arange(L) / L)
    if opaque:
        table = np.array([1, np.exp(1j * np.pi), 0])
    lv = rng.integers(0, L, (layers, N, N)) if levels is None else levels
    mask = None
    if fixed or opaque:
        mask = np.zeros((layers, N, N), bool)
        mask[:, :4, :] = True  # aligned with 2-px blocks (see ``blocky``)
        mask[:, :, -2:] = True
        if opaque:
            lv = np.where(mask, 2, lv)
    dist = (0.0,) + (60e-6,) * (layers - 1) + (100e-6,)
    return Design(setup=HologramSetup(), wavelength=532e-9, pitch=2e-6, levels=lv,
                  level_tables=table, distances=dist, target=text_target("A", (N, N)),
                  fixed_mask=mask, quantizer={"method": "binary"} if opaque else {},
                  free_levels=(0, 1) if opaque else ())


def blocky(rng: np.random.Generator, L: int, layers: int, block: int) -> np.ndarray:
    """Random levels on a block grid: every run is a multiple of ``block`` long."""
    coarse = rng.integers(0, L, (layers, N // block, N // block))
    return np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)


def run_sets(lv: np.ndarray) -> set[tuple[int, int, int, int, int]]:
    """All maximal runs of a 2-D map as (axis, line, start, stop, label) (brute force)."""
    out = set()
    for axis, m in ((1, lv), (0, lv.T)):
        for i, row in enumerate(m):
            start = 0
            for j in range(1, len(row) + 1):
                if j == len(row) or row[j] != row[start]:
                    out.add((axis, i, start, j, int(row[start])))
                    start = j
    return out


# ----------------------------------------------------------------------------- design rules
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), mf=st.integers(1, 4), n_changes=st.integers(1, 4))
def test_change_allowed_matches_brute_force(seed: int, mf: int, n_changes: int) -> None:
    rng = np.random.default_rng(seed)
    lv = rng.integers(0, 3, (7, 9)) if seed % 2 else np.repeat(rng.integers(0, 3, (7, 3)), 3, 1)
    flat = rng.choice(lv.size, n_changes, replace=False)
    ys, xs = flat // 9, flat % 9
    new = rng.integers(0, 3, n_changes)
    after = lv.copy()
    after[ys, xs] = new
    created = run_sets(after) - run_sets(lv)
    expected = all(stop - start >= mf for _, _, start, stop, _ in created)
    assert change_allowed(lv, ys, xs, new, mf) == expected
    if satisfies_min_feature(lv, mf) and expected:
        assert satisfies_min_feature(after, mf)


def test_satisfies_min_feature() -> None:
    lv = np.zeros((6, 6), int)
    assert satisfies_min_feature(lv, 6) and not satisfies_min_feature(lv, 7)
    lv[2:4, 2:4] = 1  # a 2x2 island: runs of 2 px around and through it
    assert satisfies_min_feature(lv, 2) and not satisfies_min_feature(lv, 3)
    assert satisfies_min_feature(np.stack([lv, lv]), 2)
    assert not satisfies_min_feature(np.stack([lv, np.eye(6, dtype=int)]), 2)
    lv[2:4, 4] = 1  # now 2x3: a 1 px run of 0 remains at the right edge of rows 2-3
    assert not satisfies_min_feature(lv, 2) and satisfies_min_feature(lv.T[:4], 1)
    assert satisfies_min_feature(np.arange(16).reshape(4, 4), 1)
    with pytest.raises(UserError, match="levels"):
        satisfies_min_feature(np.zeros(4), 2)


# ----------------------------------------------------------------------------- objective
def _box_energies(inten: torch.Tensor, boxes) -> torch.Tensor:
    return torch.stack([inten[..., y0:y0 + h, x0:x0 + w].sum(dim=(-2, -1))
                        for y0, x0, h, w in boxes], dim=-1)


def _full_plane_loss(design: Design, levels: np.ndarray) -> float:
    """The training losses on the whole output plane, written out independently of
    :mod:`optodesign.tasks` (whose training and refine paths must both equal them), under the
    search's model: pixels as point samples (:mod:`optodesign.refine.objective`)."""
    ev = Evaluator.from_design(replace(design, pixels="points"))
    ts = [torch.as_tensor(t.astype(np.complex64))
          for t in design.with_levels(levels).transmissions()]
    inten = ev.output_intensity(ev.plane_wave(), ts)[0]
    assert float(ev.task.loss(inten[None])) == pytest.approx(
        float(_reference_loss(design, inten, ev)), rel=1e-6)
    return float(_reference_loss(design, inten, ev))


def _reference_loss(design: Design, inten: torch.Tensor, ev: Evaluator) -> torch.Tensor:
    incident = float(inten.numel())
    if design.task == "hologram":
        t = ev.target()
        s = (inten * t).sum() / (inten * inten).sum().clamp_min(1e-30)
        return ((s * inten - t) ** 2).mean()
    if design.task == "lens":
        ny, nx = inten.shape
        yy, xx = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        r = design.setup.focus_radius
        disk = (yy - ny // 2) ** 2 + (xx - nx // 2) ** 2 <= r * r
        return -inten[disk].max() / design.setup.ideal_peak  # -Strehl: the peak in the disk
    e = _box_energies(inten, design.setup.spot_boxes) / incident
    return -e.sum() + e.std() / e.mean()


@pytest.mark.parametrize("task", ["hologram", "lens", "splitter"])
def test_objective_equals_task_loss_and_candidates_are_exact(task: str) -> None:
    d = hologram(4, layers=2, seed=1)
    if task == "lens":
        d = Design(setup=LensSetup(focal_length=d.distances[-1], focus_radius=2,
                                   ideal_peak=1.0),
                   wavelength=d.wavelength, pitch=d.pitch, levels=d.levels,
                   level_tables=d.level_tables, distances=d.distances)
    elif task == "splitter":
        d = Design(setup=SplitterSetup(((3, 3, 3, 3), (3, 10, 3, 3), (10, 6, 2, 4))),
                   wavelength=d.wavelength, pitch=d.pitch, levels=d.levels,
                   level_tables=d.level_tables, distances=d.distances)
    obj = Objective(d)
    lv = d.levels.astype(np.int64)
    assert obj.loss(lv) == pytest.approx(_full_plane_loss(d, lv), rel=1e-5)
    rng = np.random.default_rng(2)
    for k in range(2):
        state = obj.state(lv, k)
        assert state.loss == pytest.approx(obj.loss(lv), rel=1e-6)
        pix = np.stack([rng.choice(N * N, 3, replace=False) for _ in range(5)])
        new = rng.integers(0, 4, (5, 3))
        got = obj.candidate_losses(state, pix, new).numpy()
        want = []
        for m in range(5):
            changed = lv.copy()
            changed[k].reshape(-1)[pix[m]] = new[m]
            want.append(_full_plane_loss(d, changed))
        np.testing.assert_allclose(got, want, rtol=2e-5)
        assert obj.apply(state, pix[0], new[0]) == pytest.approx(want[0], rel=2e-5)


def _drawn_loss(design: Design, levels: np.ndarray, model: SimModel) -> float:
    """The loss under verify's drawing (``model``): verify's own evaluator, the reference
    above on the pixel-averaged intensity."""
    ev = evaluator_for(Evaluator.from_design(design), model)
    ts = [torch.as_tensor(t.astype(np.complex64))
          for t in design.with_levels(levels).transmissions()]
    inten = ev.output_intensity(ev.plane_wave(), ts)[0]
    return float(_reference_loss(design, inten, ev))


@pytest.mark.parametrize("model", [SimModel(2.0, 2, "asm"), SimModel(2.0, 4, "rs")])
def test_drawn_search_model_candidates_are_exact(model: SimModel) -> None:
    d = hologram(4, layers=2, seed=4)
    assert not model.problems(d)
    obj = Objective(d, model=model)
    lv = d.levels.astype(np.int64)
    want0 = _drawn_loss(d, lv, model)
    assert obj.loss(lv) == pytest.approx(want0, rel=1e-5)
    # the drawing is a different model: points read the design otherwise
    assert abs(Objective(d).loss(lv) - want0) > 0.01 * abs(want0)
    rng = np.random.default_rng(3)
    for k in range(2):
        state = obj.state(lv, k)
        assert state.loss == pytest.approx(want0, rel=1e-5)
        # neighbouring pairs, and the same pixels as singles (a slot at its own level
        # changes nothing): candidates share pixels, whose responses are computed once
        p0 = rng.choice(N * N - 1, 4, replace=False)
        pix = np.concatenate([np.stack([p0, p0 + 1], 1)] * 2)
        new = rng.integers(0, 4, (8, 2))
        new[4:, 1] = lv[k].reshape(-1)[p0 + 1]
        got = obj.candidate_losses(state, pix, new).numpy()
        want = []
        for m in range(8):
            changed = lv.copy()
            changed[k].reshape(-1)[pix[m]] = new[m]
            want.append(_drawn_loss(d, changed, model))
        np.testing.assert_allclose(got, want, rtol=5e-5)
        assert obj.apply(state, pix[0], new[0]) == pytest.approx(want[0], rel=5e-5)


def test_drawn_search_model_refuses_supervised_tasks() -> None:
    boxes = tuple((2 + 4 * (i // 4), 1 + 4 * (i % 4), 2, 2) for i in range(10))
    d = Design(setup=D2NNSetup(detectors=boxes, image_size=8), wavelength=0.75e-3,
               pitch=0.4e-3, levels=np.zeros((1, N, N), int), level_tables=np.array([1, -1]),
               distances=(0.01, 0.01))
    with pytest.raises(UserError, match="--oversample.*plane-wave"):
        Objective(d, model=SimModel(2.0, 2, "asm"))


@pytest.mark.parametrize(("loss", "propagation"), [("ce", "asm"), ("mse", "asm"),
                                                   ("ce", "rs")])
def test_objective_d2nn_candidates_are_exact(loss: str, propagation: str) -> None:
    """Candidate losses (the last layer through the objective's own kernel of the last
    distance, angular spectrum or Rayleigh–Sommerfeld) equal full re-evaluations."""
    boxes = tuple((4 + 6 * (i // 4), 1 + 6 * (i % 4), 3, 3) for i in range(10))
    d = Design(setup=D2NNSetup(detectors=boxes, image_size=12, encoding="amplitude",
                               dataset="digits", test_samples=32, loss=loss, temperature=7.0),
               wavelength=0.75e-3, pitch=0.4e-3,
               levels=np.random.default_rng(0).integers(0, 2, (2, 24, 24)),
               level_tables=np.array([1, -1]), distances=(0.01, 0.01, 0.01),
               propagation=propagation)
    obj = Objective(d, train_samples=40, seed=1)
    assert obj.n_inputs == 40
    lv = d.levels.astype(np.int64)
    ev = obj.evaluator
    inten = ev.output_intensity(obj.field, obj.transmissions(lv))
    # the training loss, written out: tempered energy fractions, softmax CE or one-hot MSE
    e = _box_energies(inten, boxes)
    frac = e / e.sum(-1, keepdim=True)
    want_loss = (torch.nn.functional.cross_entropy(7.0 * frac, obj.labels) if loss == "ce" else
                 ((frac - torch.nn.functional.one_hot(obj.labels, 10)) ** 2).sum(-1).mean())
    assert obj.loss(lv) == pytest.approx(float(want_loss), rel=1e-5)
    assert float(ev.task.loss(inten, obj.labels)) == pytest.approx(float(want_loss), rel=1e-6)
    for k in range(2):
        state = obj.state(lv, k)
        pix = np.arange(6)[:, None] * 37 + 50
        new = 1 - lv[k].reshape(-1)[pix]
        got = obj.candidate_losses(state, pix, new).numpy()
        want = []
        for m in range(6):
            changed = lv.copy()
            changed[k].reshape(-1)[pix[m]] = new[m]
            want.append(obj.loss(changed))
        np.testing.assert_allclose(got, want, rtol=2e-5)


# ----------------------------------------------------------------------------- solvers
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["dbs", "anneal", "heat-bath"]),
       mf=st.sampled_from([1, 2]), L=st.sampled_from([2, 4]))
def test_refinement_never_worse_and_respects_constraints(seed: int, method: str, mf: int,
                                                         L: int) -> None:
    rng = np.random.default_rng(seed)
    d = hologram(L, seed=seed, fixed=True, levels=blocky(rng, L, 1, 2))
    obj = Objective(d)
    allowed = (0, 1) if L == 4 and seed % 2 else None
    start = d.levels.copy()
    if allowed:
        start = np.where(d.fixed_mask, start, np.minimum(start, 1))
    start_copy = start.copy()
    assert satisfies_min_feature(start, mf)
    extra = {"rule": "heat-bath"} if method == "heat-bath" else {}
    r = refine(obj, start, method="dbs" if method == "dbs" else "anneal", budget=120,
               min_feature=mf, fixed_mask=d.fixed_mask, allowed_levels=allowed, batch=8,
               seed=seed, **extra)
    assert r.loss_after <= r.loss_before
    assert r.loss_after == obj.loss(r.levels)
    assert r.loss_before == obj.loss(start)
    assert r.evaluations <= 120
    assert r.levels.dtype == np.int16 and r.levels.shape == start.shape
    assert np.array_equal(r.levels[d.fixed_mask], start[d.fixed_mask])
    free = r.levels[~d.fixed_mask]
    assert free.min() >= 0 and free.max() <= (max(allowed) if allowed else L - 1)
    assert satisfies_min_feature(r.levels, mf)
    assert np.array_equal(start, start_copy)  # the input is not modified


def test_dbs_improves_tiny_hologram_and_converges() -> None:
    d = hologram(2, seed=3)
    obj = Objective(d)
    r = direct_binary_search(obj, d.levels, budget=4000, batch=16, seed=0)
    assert r.loss_after < 0.6 * r.loss_before
    assert r.accepted > 10 and r.method == "dbs"
    # classic sequential DBS (batch 1) improves too, and stops at a local minimum
    r1 = direct_binary_search(obj, d.levels, budget=20_000, batch=1, chunk=N * N, seed=1)
    assert r1.converged and r1.evaluations < 20_000
    assert r1.loss_after < 0.6 * r1.loss_before
    state = obj.state(r1.levels, 0)
    flips = np.arange(N * N)[:, None]
    losses = obj.candidate_losses(state, flips, 1 - r1.levels[0].reshape(-1)[flips]).numpy()
    assert losses.min() >= r1.loss_after * (1 - 1e-5)  # no single flip improves


def test_dbs_four_levels_and_min_feature_blocks() -> None:
    rng = np.random.default_rng(5)
    d = hologram(4, levels=blocky(rng, 4, 1, 2))
    obj = Objective(d)
    r = direct_binary_search(obj, d.levels, budget=600, min_feature=2, seed=0)
    assert r.loss_after < r.loss_before
    assert satisfies_min_feature(r.levels, 2)
    assert set(np.unique(r.levels)) <= {0, 1, 2, 3}


def test_dbs_under_process_rules_keeps_them_and_moves_pairs() -> None:
    """With a process's rules (``decks``) a clean design stays clean and a dirty one gets no
    worse; besides single pixels the search proposes pairs of 4-neighbours set to one level,
    each allowed by the rules, and at convergence no single change or pair improves."""
    from optodesign.fabrules import Deck
    from optodesign.process import load_process
    from optodesign.refine.solvers import _Search

    d = hologram(4, seed=2)
    process = load_process("fused-silica-etch4")  # 1 um minimum feature: 1 px at 2 um
    deck = Deck.of(process, pitch=d.pitch, level_table=d.level_tables[0])
    dirty = deck.count(d.levels[0])
    assert dirty > 0
    clean = deck.legalize(d.levels[0])[None]
    obj = Objective(d)
    r = direct_binary_search(obj, clean, budget=50_000, seed=0, decks=[deck])
    assert r.converged and deck.count(r.levels[0]) == 0
    assert r.loss_after < 0.8 * r.loss_before
    search = _Search(obj, r.levels, method="dbs", budget=10, seconds=None, min_feature=1,
                     fixed_mask=None, allowed_levels=None, block=None, batch=None, chunk=None,
                     layers=None, seed=0, progress=None, decks=[deck])
    corners = np.stack(np.nonzero(np.ones((N, N), bool)), 1)
    owner, pix, new = search.candidates(0, corners, "all")
    lv = r.levels[0]
    flat = lv.reshape(-1)
    pairs = 0
    for p, v in zip(pix, new, strict=True):
        changed = flat[p] != v
        ys, xs = p[changed] // N, p[changed] % N
        assert 1 <= changed.sum() <= 2 and deck.keeps(lv, ys, xs, v[changed])
        if changed.sum() == 2:
            pairs += 1
            assert v[0] == v[1] and abs(ys[0] - ys[1]) + abs(xs[0] - xs[1]) == 1
    assert pairs > 50
    state = obj.state(r.levels, 0)
    losses = obj.candidate_losses(state, pix, new).numpy()
    assert losses.min() >= r.loss_after * (1 - 1e-5)
    r2 = direct_binary_search(obj, d.levels, budget=3000, seed=1, decks=[deck])
    assert deck.count(r2.levels[0]) <= dirty and r2.loss_after < r2.loss_before


def test_anneal_returns_best_so_far() -> None:
    d = hologram(2, seed=4)
    obj = Objective(d)
    # a temperature far above the loss scale: the walk goes uphill, the result must not
    hot = simulated_annealing(obj, d.levels, budget=300, t_start=10.0, t_ratio=1.0, batch=8,
                              seed=0)
    cur = np.array([h[1] for h in hot.history])
    best = np.array([h[2] for h in hot.history])
    assert cur.max() > hot.loss_before  # it did accept uphill moves
    assert np.all(np.diff(best) <= 0)
    assert np.all(best <= np.minimum.accumulate(np.minimum(cur, hot.loss_before)) * (1 + 1e-5))
    assert hot.loss_after <= hot.loss_before
    assert hot.loss_after == pytest.approx(min(hot.loss_before, cur.min()), rel=1e-5)
    cool = simulated_annealing(obj, d.levels, budget=2000, batch=16, seed=0)
    assert cool.loss_after < 0.8 * cool.loss_before


def test_binary_opaque_fixed_pixels_and_free_levels() -> None:
    d = hologram(2, opaque=True, seed=6)
    assert d.allowed_levels() == (0, 1)
    assert hologram(4).allowed_levels() == (0, 1, 2, 3)
    obj = Objective(d)
    for method in ("dbs", "anneal"):
        r = refine(obj, d.levels, method=method, budget=300, fixed_mask=d.fixed_mask,
                   allowed_levels=d.allowed_levels(), seed=2)
        assert np.all(r.levels[d.fixed_mask] == 2)
        assert set(np.unique(r.levels[~d.fixed_mask])) <= {0, 1}
        assert r.loss_after < r.loss_before


def test_solver_argument_errors() -> None:
    d = hologram(2)
    obj = Objective(d)
    with pytest.raises(UserError, match="method"):
        refine(obj, d.levels, method="qa")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="budget"):
        direct_binary_search(obj, d.levels, budget=None, seconds=None)
    with pytest.raises(UserError, match="allowed_levels"):
        direct_binary_search(obj, d.levels, allowed_levels=[0, 5])
    with pytest.raises(UserError, match="levels: shape"):
        direct_binary_search(obj, d.levels[:, :4])
    r = direct_binary_search(obj, d.levels, budget=0)
    assert r.evaluations == 0 and np.array_equal(r.levels, d.levels)


# ----------------------------------------------------------------------------- command line
def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def trained_run(tiny_d2nn_config, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    # trained on the printed resin's level table (absorption included), so the exported files
    # verify to exactly the trained metric
    cfg = tiny_d2nn_config("psq-li")
    cfg.write_text(cfg.read_text().replace("levels = 4", 'levels = 4\nprocess = "thz-printed"'))
    code, out = run_cli("train", str(cfg), "--out", str(run), "--quiet",
                        "--epochs", "1", "--device", "cpu")
    assert code == 0, out
    return run


def test_refine_cli_end_to_end_and_export(trained_run: Path, tmp_path: Path) -> None:
    before = Design.load(trained_run)
    code, out = run_cli("refine", str(trained_run), "--budget", "60", "--seed", "1",
                        "--train-samples", "64", "--quiet", "--device", "cpu")
    assert code == 0, out
    assert "accuracy (test, hard levels):" in out
    refined = Design.load(trained_run / "refined")
    assert np.array_equal(Design.load(trained_run).levels, before.levels)  # input untouched
    note = refined.extra["refine"][-1]
    assert note["method"] == "dbs" and note["evaluations"] <= 60
    assert note["loss"]["after"] <= note["loss"]["before"]
    assert note["changed_pixels"] == int((refined.levels != before.levels).sum())
    acc = Evaluator.from_design(refined).evaluate(refined.transmissions())["accuracy"]
    assert refined.metrics["accuracy"] == acc == note["metric_after"]
    assert np.array_equal(refined.level_tables, before.level_tables)
    assert refined.setup == before.setup and refined.distances == before.distances

    # a second refinement with annealing, elsewhere, chains the note
    code, out = run_cli("refine", str(trained_run / "refined"), "--method", "anneal",
                        "--budget", "40", "--min-feature", "2", "--out",
                        str(tmp_path / "again"), "--quiet", "--train-samples", "32")
    assert code == 0, out
    again = Design.load(tmp_path / "again")
    assert [n["method"] for n in again.extra["refine"]] == ["dbs", "anneal"]
    changed = again.levels != refined.levels
    if changed.any():  # min feature 2: no new run narrower than 2 px
        for k in range(again.n_layers):
            ys, xs = np.nonzero(changed[k])
            assert change_allowed(refined.levels[k], ys, xs, again.levels[k][ys, xs], 2)

    if importlib.util.find_spec("optodesign.commands.export") is None:
        pytest.skip("optodesign export is not available yet: refined design not exported")
    from optodesign.process import load_process
    from optodesign.verify.gds_reader import read_gds_levels

    fab = tmp_path / "fab"
    code, out = run_cli("export", str(trained_run / "refined"), "--process", "thz-printed",
                        "--out", str(fab), "--format", "gds")
    assert code == 0, out
    manifest = json.loads((fab / "manifest.json").read_text())
    assert manifest["n_layers"] == refined.n_layers
    back = read_gds_levels(fab / "layer1.gds", process=load_process("thz-printed"),
                           shape=refined.shape, pitch=refined.pitch,
                           level_tables=refined.level_tables)
    assert np.array_equal(back[0], refined.levels[0])
    if importlib.util.find_spec("optodesign.commands.verify") is None:
        pytest.skip("optodesign verify is not available yet: refined design not verified")
    zero = tmp_path / "zero.toml"
    zero.write_text("[errors]\n")
    code, out = run_cli("verify", str(fab), "--report", str(tmp_path / "rep"), "--samples", "1",
                        "--no-sweep", "--errors", str(zero), "--source", "gds", "--quiet")
    assert code == 0, out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["trained"]["value"] == refined.metrics["accuracy"]
    assert 0 <= report["nominal"]["accuracy"] <= 1  # the printed part absorbs: not equal


def test_refine_cli_legalize_makes_a_dirty_design_drc_clean(tmp_path: Path) -> None:
    """``--legalize``: a design with violations of its process comes out DRC-clean and
    better than legalized alone; without design rules the flag is refused in one line."""
    from optodesign.export.drc import check_levels
    from optodesign.process import load_process

    process = load_process("fused-silica-etch4")
    d = hologram(4, seed=9)
    run = tmp_path / "holo"
    d.save(run)
    code, out = run_cli("refine", str(run), "--process", "fused-silica-etch4", "--legalize",
                        "--budget", "1500", "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0, out
    assert "legalized:" in out
    r = Design.load(tmp_path / "r")
    rep = check_levels(r.levels, r.level_tables, process=process, pitch=r.pitch)
    assert rep.passed and all(v.count == 0 for layer in rep.layers for v in layer.violations)
    before = check_levels(d.levels, d.level_tables, process=process, pitch=d.pitch)
    assert sum(v.count for layer in before.layers for v in layer.violations) > 0
    note = r.extra["refine"][0]
    assert note["legalized_pixels"] > 0 and note["process_rules"] == "fused-silica-etch4"
    assert note["loss"]["after"] < note["loss"]["before"]  # refined beyond the legalizer
    code, out = run_cli("refine", str(run), "--legalize", "--budget", "5",
                        "--out", str(tmp_path / "n"))
    assert code == 2 and "--legalize" in out and "--process" in out


def test_refine_cli_hologram_and_errors(tmp_path: Path) -> None:
    run = tmp_path / "holo"
    d = hologram(2, seed=8)
    d.save(run)
    code, out = run_cli("refine", str(run), "--budget", "300", "--out", str(tmp_path / "r"),
                        "--quiet")
    assert code == 0, out
    r = Design.load(tmp_path / "r")
    note = r.extra["refine"][0]
    assert note["metric"] == "psnr" and note["metric_after"] > note["metric_before"]
    assert r.metrics["psnr"] == note["metric_after"]
    assert note["loss"]["after"] == pytest.approx(Objective(r).loss(r.levels), rel=1e-6)
    code, out = run_cli("refine", str(run), "--budget", "0.5s", "--out", str(tmp_path / "t"),
                        "--quiet")
    assert code == 0 and Design.load(tmp_path / "t").extra["refine"][0]["budget"] == {
        "seconds": 0.5}
    # on verify's drawing: never worse there, and the note says which model was searched
    code, out = run_cli("refine", str(run), "--budget", "200", "--oversample", "2",
                        "--out", str(tmp_path / "o"), "--quiet")
    assert code == 0, out
    o = Design.load(tmp_path / "o")
    note = o.extra["refine"][0]
    model = SimModel(**note["search_model"])
    assert model.oversample == 2 and note["metric_after"] > note["metric_before"]
    ev = evaluator_for(Evaluator.from_design(o), model)
    assert ev.evaluate(o.transmissions())["psnr"] == pytest.approx(note["metric_after"],
                                                                 rel=1e-5)
    assert o.metrics["psnr"] == pytest.approx(
        Evaluator.from_design(o).evaluate(o.transmissions())["psnr"], rel=1e-5)
    code, out = run_cli("refine", str(run), "--budget", "lots")
    assert code == 2 and "--budget" in out
    code, out = run_cli("refine", str(run), "--out", str(run), "--budget", "5")
    assert code == 2 and "--out" in out
    code, out = run_cli("refine", str(tmp_path / "nope"))
    assert code == 2 and "not found" in out

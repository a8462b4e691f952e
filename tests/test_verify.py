"""``optodesign verify``: read back, error models, Monte Carlo, tolerance sweep, CLI exit codes.

Tiny designs only: a 32x32 two-layer D2NN trained for one epoch (once per module), and
metasurfaces (lens, hologram) built directly as Designs.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from optodesign.design import Design
from optodesign.evaluate import Evaluator
from optodesign.export.fab import export_design
from optodesign.fileio import sha256_file
from optodesign.grid import Grid, GridMismatchError
from optodesign.optics import placement
from optodesign.process import load_process
from optodesign.raster import dilate_heights
from optodesign.tasks import HologramSetup, LensSetup
from optodesign.tasks.lens import focus_radius, ideal_lens_phase
from optodesign.variation.perturb import apply_random, perturb
from optodesign.variation.spec import (
    ERRORS,
    ErrorConfig,
    ErrorModel,
    SweepSpec,
    Tolerance,
    parse_errors,
)
from optodesign.verify.montecarlo import Scorer, monte_carlo, tolerance_sweep, verify_fab
from optodesign.verify.readback import read_fab

from .conftest import TINY_D2NN

pytestmark = pytest.mark.filterwarnings(
    "ignore::optodesign.optics.propagation.SamplingWarning")

LOSSLESS = """
name = "test-lossless-print"
description = "a lossless printed relief for tests"
kind = "print"
wavelength = "0.75 mm"
[material]
n = 1.5
kappa = 0.0
n0 = 1.0
[pitch]
min = "0.1 mm"
max = "2 mm"
[rules]
min_feature = "0.1 mm"
isolated_pixels = "ignore"
diagonal_necks = "ignore"
[gds]
unit = "1 um"
precision = "1 nm"
[print]
base = "0.5 mm"
"""

ZERO = ErrorConfig(ErrorModel(), Tolerance(), SweepSpec())


def place(t: np.ndarray, **kw) -> np.ndarray:
    """:func:`optodesign.optics.placement.place` on numpy arrays."""
    return placement.place(torch.as_tensor(t), **kw).numpy()


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def d2nn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A D2NN trained (1 epoch) on the thz-printed level table and exported: root/run, fab."""
    import tomllib

    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer

    root = tmp_path_factory.mktemp("d2nn")
    text = TINY_D2NN.format(method="psq-li").replace(
        "levels = 4", 'levels = 4\nprocess = "thz-printed"').replace(
        "epochs = 2", "epochs = 1").replace("train_samples = 128", "train_samples = 64")
    res = Trainer(parse_config(tomllib.loads(text)), root / "run", progress=False).run()
    export_design(res.design, load_process("thz-printed"), root / "fab",
                  design_dir=root / "run", plot=False)
    return root


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory):
    p = tmp_path_factory.mktemp("proc") / "lossless.toml"
    p.write_text(LOSSLESS)
    return load_process(p)


def lens_design(process, *, n: int = 24, L: int = 4, focal: float = 0.02,
                table: np.ndarray | None = None) -> Design:
    """An ideal lens quantized to the process's L levels (or ``table``: the levels it was
    trained on), with its Strehl as trained metric."""
    pitch, lam = 0.4e-3, process.wavelength
    grid = Grid((n, n), pitch)
    phase = ideal_lens_phase(grid, wavelength=lam, focal_length=focal)
    levels = np.round(phase / (2 * np.pi / L)).astype(int) % L
    import torch

    from optodesign.models.functional import forward_stack

    t = torch.polar(torch.ones(n, n), torch.as_tensor(phase, dtype=torch.float32))
    u = forward_stack(torch.ones((1, n, n), dtype=torch.complex64), [t], (0.0, focal),
                      grid=grid, wavelength=lam)
    setup = LensSetup(focal_length=focal, ideal_peak=float((u.abs() ** 2)[0, n // 2, n // 2]),
                      focus_radius=focus_radius(wavelength=lam, focal_length=focal,
                                                aperture=n * pitch, pitch=pitch))
    d = Design(setup=setup, wavelength=lam, pitch=pitch, levels=levels[None],
               level_tables=process.level_table(L) if table is None else table,
               distances=(0.0, focal))
    m = Evaluator.from_design(d).evaluate(d.transmissions())
    return d.with_levels(d.levels, metrics=m)


def export(design: Design, process, root: Path, formats: str = "gds,stl") -> Path:
    run = root / "run"
    design.save(run)
    export_design(design, process, root / "fab", formats=formats, design_dir=run, plot=False)
    return root / "fab"


def copy_fab(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def refresh_checksum(fab: Path, name: str) -> None:
    """Make the manifest agree with an edited file (a fab tool rewrote it and the manifest)."""
    m = json.loads((fab / "manifest.json").read_text())
    for layer in m["layers"]:
        for info in layer["files"].values():
            if info["name"] == name:
                info["sha256"] = sha256_file(fab / name)
                info["bytes"] = (fab / name).stat().st_size
    (fab / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("source", ["gds", "stl"])
def test_trained_metric_reproduced_exactly(d2nn: Path, source: str) -> None:
    trained = Design.load(d2nn / "run")
    fab = read_fab(d2nn / "fab", source=source)
    assert fab.source == source and fab.trained_levels_equal
    assert np.array_equal(fab.levels, trained.levels)
    # what the trainer scored: its level table, cast to complex64, indexed by the levels
    want = trained.transmissions().astype(np.complex64)
    assert np.array_equal(fab.transmissions().astype(np.complex64), want)
    r = verify_fab(d2nn / "fab", errors=ZERO, samples=1, source=source, sweep=False)
    # the training model line: exactly what training scored
    assert r.readback["accuracy"] == trained.metrics["accuracy"]
    # beside it, the converged model's number and the gap between them
    assert r.convergence is not None and r.model == r.convergence.chosen
    assert not r.model.is_training(trained)
    assert r.model_gap == r.nominal["accuracy"] - r.readback["accuracy"]
    assert r.round_trip_exact is True
    # no errors: the combined errors reproduce the nominal of the simulation model
    assert r.combined.values.tolist() == [r.nominal["accuracy"]]
    fast = verify_fab(d2nn / "fab", errors=ZERO, samples=1, source=source, sweep=False,
                      fast=True)
    assert fast.convergence is None and fast.model.is_training(trained)
    assert fast.nominal == fast.readback and fast.model_gap == 0
    assert fast.combined.values.tolist() == [trained.metrics["accuracy"]]


def test_auto_source_is_stl_for_print(d2nn: Path) -> None:
    assert read_fab(d2nn / "fab").source == "stl"


def test_hologram_psnr_round_trip(tmp_path: Path) -> None:
    p = load_process("thz-printed")
    rng = np.random.default_rng(1)
    target = np.zeros((20, 20))
    target[5:8, 5:8] = target[12:15, 11:14] = 1.0
    d = Design(setup=HologramSetup(), wavelength=p.wavelength, pitch=0.4e-3,
               levels=rng.integers(0, 4, (1, 20, 20)), level_tables=p.level_table(4),
               distances=(0.0, 0.02), target=target)
    psnr = Evaluator.from_design(d).evaluate(d.transmissions())["psnr"]
    fab = export(d.with_levels(d.levels, metrics={"psnr": psnr}), p, tmp_path)
    for source in ("gds", "stl"):
        r = verify_fab(fab, errors=ZERO, samples=1, source=source, sweep=False)
        assert r.readback["psnr"] == pytest.approx(psnr, rel=1e-6, abs=0)


@pytest.mark.parametrize("name,L,pitch,dist", [("tio2-pillars", None, 325e-9, 5e-6),
                                               ("fused-silica-etch4", 4, 2e-6, 100e-6)])
def test_etch_and_pillars_read_back_exactly(tmp_path: Path, name: str, L, pitch: float,
                                            dist: float) -> None:
    p = load_process(name)
    table = p.level_table(L) if L else p.level_table()
    rng = np.random.default_rng(2)
    d = Design(setup=HologramSetup(), wavelength=p.wavelength, pitch=pitch,
               levels=rng.integers(0, table.size, (1, 12, 12)), level_tables=table,
               distances=(0.0, dist), target=np.ones((12, 12)))
    fab = export(d, p, tmp_path, formats="gds")
    stack = read_fab(fab)
    assert stack.source == "gds" and stack.trained_levels_equal
    # equal up to float64 rounding (the manifest's heights come from the table's phases)
    np.testing.assert_allclose(stack.transmissions(), d.transmissions(), rtol=0, atol=1e-14)
    # a line-width bias changes the result, continuously
    t1 = stack.transmissions(perturb(stack.physical, ErrorModel(linewidth_bias=pitch / 40),
                                     seed=0, sample=0))
    t2 = stack.transmissions(perturb(stack.physical, ErrorModel(linewidth_bias=pitch / 20),
                                     seed=0, sample=0))
    d1 = np.abs(t1 - d.transmissions()).max()
    d2 = np.abs(t2 - d.transmissions()).max()
    assert 0 < d1 < d2


# ---------------------------------------------------------------------------- error models
def test_zero_error_is_bit_identical(d2nn: Path) -> None:
    fab = read_fab(d2nn / "fab")
    phys = perturb(fab.physical, ErrorModel(), seed=3, sample=5)
    assert phys is fab.physical
    assert np.array_equal(fab.transmissions(phys), fab.transmissions())
    ev = Evaluator.from_design(fab.design)
    r = monte_carlo(fab, ErrorModel(), samples=3, scorer=Scorer(ev), metric="accuracy")
    assert r.computed == 1 and np.all(r.values == ev.evaluate(fab.transmissions())["accuracy"])


def test_height_offset_of_one_level_shifts_levels(tmp_path: Path, lossless) -> None:
    L = 4
    d = lens_design(lossless, L=L)
    fab = read_fab(export(d, lossless, tmp_path))
    step = lossless.height_per_2pi / L
    t = fab.transmissions(perturb(fab.physical, ErrorModel(height_offset=step), seed=0,
                                  sample=0))
    shifted = d.level_tables[0][(d.levels[0] + 1) % L]
    np.testing.assert_allclose(t[0], shifted, rtol=0, atol=1e-12)
    assert not np.allclose(t[0], d.transmissions()[0])


def test_height_scale_and_index_scale_the_phase(tmp_path: Path, lossless) -> None:
    d = lens_design(lossless, L=4)
    fab = read_fab(export(d, lossless, tmp_path))
    phi = 2 * np.pi * d.levels[0] / 4
    for model, factor in ((ErrorModel(height_scale=0.1), 1.1),
                          (ErrorModel(index_error=0.05), 0.55 / 0.5),
                          (ErrorModel(wavelength_shift=0.75e-3 * 0.02), 1 / 1.02)):
        t = fab.transmissions(perturb(fab.physical, model, seed=0, sample=0))[0]
        np.testing.assert_allclose(t, np.exp(1j * phi * factor), rtol=0, atol=1e-12)


def test_kappa_attenuates_by_height(tmp_path: Path, lossless) -> None:
    d = lens_design(lossless, L=4)
    fab = read_fab(export(d, lossless, tmp_path))
    t = fab.transmissions(perturb(fab.physical, ErrorModel(kappa=0.01), seed=0, sample=0))[0]
    h = fab.physical.heights[0]
    np.testing.assert_allclose(np.abs(t), np.exp(-2 * np.pi * 0.01 * h / 0.75e-3), atol=1e-12)


def test_height_sigma_statistics_and_reproducibility(d2nn: Path) -> None:
    fab = read_fab(d2nn / "fab")
    sigma = 5e-6
    a = perturb(fab.physical, ErrorModel(height_sigma=sigma), seed=7, sample=2)
    b = perturb(fab.physical, ErrorModel(height_sigma=sigma, misalignment=1e-5), seed=7,
                sample=2)
    c = perturb(fab.physical, ErrorModel(height_sigma=sigma), seed=7, sample=3)
    dh = a.heights - fab.physical.heights
    assert np.array_equal(a.heights, b.heights)  # other errors do not change this draw
    assert not np.array_equal(a.heights, c.heights)
    assert abs(dh.mean()) < 4 * sigma / math.sqrt(dh.size)
    assert dh.std() == pytest.approx(sigma, rel=0.1)


def test_integer_misalignment_is_a_zero_filled_shift(d2nn: Path) -> None:
    fab = read_fab(d2nn / "fab")
    grid = fab.design.grid
    p = grid.pitch
    t0 = fab.transmissions()
    shifts = np.array([[2 * p, -1 * p], [0.0, 3 * p]])
    t = place(t0, grid=grid, shifts=shifts)
    want = np.zeros_like(t0)
    want[0, 2:, :-1] = t0[0, :-2, 1:]
    want[1, :, 3:] = t0[1, :, :-3]
    assert np.array_equal(t, want)  # exact, and zero-filled (not rolled)
    # half a pixel: the area-weighted mean of the two pixels a moved pixel overlaps
    half = place(t0, grid=grid, shifts=np.array([[0.0, 0.5 * p], [0.0, 0.0]]))
    np.testing.assert_allclose(half[0, :, 1:], 0.5 * (t0[0, :, 1:] + t0[0, :, :-1]),
                               atol=1e-15)
    np.testing.assert_allclose(half[0, :, 0], 0.5 * t0[0, :, 0], atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(sy=st.integers(-6, 6), sx=st.integers(-8, 8), seed=st.integers(0, 2**16))
def test_integer_shifts_in_metres_are_exact(sy: int, sx: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(1, 5, 7)) + 1j * rng.normal(size=(1, 5, 7))
    pitch = 0.7e-4  # sy * pitch / pitch is not always an integer in floating point
    out = place(a, grid=Grid((5, 7), pitch), shifts=np.array([[sy * pitch, sx * pitch]]))
    want = np.zeros_like(a)
    for i in range(5):
        for j in range(7):
            if 0 <= i - sy < 5 and 0 <= j - sx < 7:
                want[0, i, j] = a[0, i - sy, j - sx]
    assert np.array_equal(out, want)


def test_rotation_direction_and_centre() -> None:
    n = 9
    a = np.zeros((1, n, n), dtype=np.complex128)
    a[0, 4, 7] = 1.0  # x = +3 px from the centre, y = 0
    grid = Grid((n, n), 1.0)
    r = place(a, grid=grid, rotations=np.array([np.pi / 2]))
    assert abs(r[0, 7, 4] - 1) < 1e-12  # counter-clockwise: +x goes to +y
    assert np.abs(r).sum() == pytest.approx(1.0, abs=1e-12)
    small = place(a, grid=grid, rotations=np.array([1e-3]))
    assert abs(small[0, 4, 7]) > 0.99
    with pytest.raises(GridMismatchError, match=r"\(9, 9\).*\(9, 8\)"):
        place(a, grid=Grid((9, 8), 1.0), rotations=np.array([1e-3]))


def test_linewidth_bias_single_pixel_analytic(lossless) -> None:
    from optodesign.process import Physical
    from optodesign.verify.readback import element_transmissions

    p = 0.4e-3
    h = np.zeros((1, 7, 7))
    h[0, 3, 3] = 0.375e-3  # phase π/2
    t1, t0 = 1j, 1.0

    def run(bias: float) -> np.ndarray:
        phys = Physical(kind="thin", heights=h, base=0.5e-3, n=1.5, n0=1.0,
                        element_wavelength=0.75e-3, wavelength=0.75e-3,
                        distances=(0.0, 0.01), bias=bias, oversample=8)
        return element_transmissions(phys, lossless, grid=Grid((7, 7), p))[0]

    for f in (1 / 8, 1 / 16, 3 / 16):  # a whole sub-pixel, half of one, one and a half
        t = run(f * p)
        np.testing.assert_allclose(t[3, 3], t1, atol=1e-12)
        np.testing.assert_allclose(t[3, 4], (1 - f) * t0 + f * t1, atol=1e-12)
        np.testing.assert_allclose(t[2, 3], (1 - f) * t0 + f * t1, atol=1e-12)
        np.testing.assert_allclose(t[0, 0], t0, atol=1e-12)
    f = 1 / 8
    t = run(-f * p)  # erosion: the raised pixel keeps a (1 - 2f)² square
    a = (1 - 2 * f) ** 2
    np.testing.assert_allclose(t[3, 3], a * t1 + (1 - a) * t0, atol=1e-12)
    np.testing.assert_allclose(t[3, 4], t0, atol=1e-12)
    fine = dilate_heights(h[0], bias=p / 8, pitch=p, oversample=8)
    assert fine.shape == (56, 56) and (fine > 0).sum() == 10 * 10


def test_linewidth_bias_sigma_is_a_signed_bias_per_sample() -> None:
    """``linewidth_bias_sigma`` draws one bias per sample from N(0, σ²), of either sign, added
    to the systematic ``linewidth_bias``; switching it on leaves the other draws unchanged."""
    from optodesign.process import Physical

    phys = Physical(kind="thin", heights=np.zeros((2, 5, 5)), base=0.5e-3, n=1.5, n0=1.0,
                    element_wavelength=0.75e-3, wavelength=0.75e-3, distances=(0.0, 0.01, 0.01),
                    bias=0.0, oversample=8)
    sigma = 1e-5
    drawn = np.array([perturb(phys, ErrorModel(linewidth_bias_sigma=sigma), seed=3,
                              sample=i).bias for i in range(400)])
    assert (drawn > 0).any() and (drawn < 0).any()
    assert abs(drawn.mean()) < 4 * sigma / 20 and drawn.std() == pytest.approx(sigma, rel=0.15)
    both = perturb(phys, ErrorModel(linewidth_bias=2e-5, linewidth_bias_sigma=sigma), seed=3,
                   sample=7)
    assert both.bias == pytest.approx(2e-5 + drawn[7], abs=1e-18)
    alone = perturb(phys, ErrorModel(misalignment=1e-4), seed=3, sample=7)
    with_bias = perturb(phys, ErrorModel(misalignment=1e-4, linewidth_bias_sigma=sigma), seed=3,
                        sample=7)
    np.testing.assert_array_equal(alone.shift_array(), with_bias.shift_array())


def test_spacing_sigma_perturbs_nonzero_distances_only(tmp_path: Path, lossless) -> None:
    d = lens_design(lossless)
    fab = read_fab(export(d, lossless, tmp_path))
    m = ErrorModel(spacing_sigma=1e-4)
    a = apply_random(fab.physical, m, seed=1, sample=0)
    b = apply_random(fab.physical, m, seed=1, sample=1)
    assert a.distances[0] == 0.0 and b.distances[0] == 0.0
    assert a.distances[1] != d.distances[1] != b.distances[1] != a.distances[1]
    assert apply_random(fab.physical, m, seed=1, sample=0).distances == a.distances


# ---------------------------------------------------------------------------- sweep, MC
def test_sweep_is_monotone_and_finds_the_limit(tmp_path: Path, lossless) -> None:
    d = lens_design(lossless)
    fab = read_fab(export(d, lossless, tmp_path))
    ev = Evaluator.from_design(fab.design)
    nominal = ev.evaluate(fab.transmissions())["strehl"]
    # errors that can only hurt a lens (a height *scale* can help a quantized one a little)
    base = ErrorModel(height_sigma=40e-6, kappa=0.01, misalignment=0.2e-3)
    res = tolerance_sweep(fab, base, names=["kappa", "height_sigma", "misalignment"],
                          factors=(0, 0.5, 1, 2, 4), scales=fab.scales(), scorer=Scorer(ev),
                          metric="strehl", tolerance=Tolerance(), max_drop=0.1,
                          nominal=nominal, samples=4)
    for sw in res:
        assert sw.magnitudes[0] == 0 and sw.statistic[0] == nominal
        assert all(b <= a + 1e-12 for a, b in zip(sw.statistic, sw.statistic[1:], strict=False)), \
            (sw.name, sw.statistic)
        assert sw.statistic[-1] < sw.statistic[0]
        # the limit: the last magnitude before the first failure, and the crossing between
        fails = [i for i, ok in enumerate(sw.passed) if not ok]
        if fails:
            i = fails[0]
            assert sw.max_ok == sw.magnitudes[i - 1]
            assert sw.magnitudes[i - 1] <= sw.estimate <= sw.magnitudes[i]
            assert nominal - sw.statistic[i] > 0.1 >= nominal - sw.statistic[i - 1]
        else:
            assert sw.estimate is None and sw.max_ok == sw.magnitudes[-1]
    assert len(res[0].values[1]) == 1 and len(res[1].values[1]) == 4  # systematic vs random
    assert any(not all(sw.passed) for sw in res)  # the tolerance line is crossed somewhere


def test_batched_samples_equal_one_at_a_time(tmp_path: Path, lossless) -> None:
    d = lens_design(lossless)
    fab = read_fab(export(d, lossless, tmp_path))
    ev = Evaluator.from_design(fab.design)
    m = ErrorModel(height_sigma=20e-6, misalignment=50e-6, rotation=0.2)
    batched = monte_carlo(fab, m, samples=5, scorer=Scorer(ev), metric="strehl", seed=4)
    single = monte_carlo(fab, m, samples=5, scorer=Scorer(ev, max_fields=1), metric="strehl",
                         seed=4)
    np.testing.assert_allclose(batched.values, single.values, rtol=1e-5)
    assert np.ptp(batched.values) > 0


# ---------------------------------------------------------------------------- errors files
def test_errors_file_parsing() -> None:
    cfg = parse_errors({"errors": {"height_sigma": "10 um", "height_scale": "2 %",
                                   "rotation": "2 mrad", "linewidth_bias": "-50 nm",
                                   "misalignment": 1e-6},
                        "tolerance": {"max_drop": 1.5, "statistic": "p5"},
                        "sweep": {"factors": [0, 1, 3], "samples": 2, "errors": ["rotation"]}})
    e = cfg.errors
    assert e.height_sigma == pytest.approx(1e-5) and e.height_scale == pytest.approx(0.02)
    assert e.rotation == pytest.approx(math.degrees(2e-3))
    assert e.linewidth_bias == pytest.approx(-5e-8) and e.misalignment == 1e-6
    assert cfg.tolerance.resolve("hologram") == ("psnr", 1.5)
    assert cfg.sweep.factors == (0, 1, 3) and cfg.sweep.errors == ("rotation",)
    assert set(ErrorModel().to_dict()) == set(ERRORS)


@pytest.mark.parametrize("raw,field", [
    ({"errors": {"height_sigmaa": "1 um"}}, "errors.height_sigmaa"),
    ({"errors": {"height_sigma": "-1 um"}}, "errors.height_sigma"),
    ({"errors": {"misalignment": "3 parsecs"}}, "errors.misalignment"),
    ({"tolerance": {"statistic": "max"}}, "tolerance.statistic"),
    ({"sweep": {"factors": [1, 2]}}, "sweep.factors"),
    ({"extra": {}}, "extra"),
])
def test_errors_file_rejects_bad_values(raw: dict, field: str) -> None:
    from optodesign.errors import ConfigError

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_errors(raw)


def test_tolerance_metric_must_belong_to_task() -> None:
    from optodesign.errors import ConfigError

    with pytest.raises(ConfigError, match="tolerance.metric"):
        Tolerance(metric="psnr").resolve("d2nn")


# ---------------------------------------------------------------------------- CLI
def invoke(*args: str):
    from optodesign.cli import main

    return CliRunner().invoke(main, ["verify", *map(str, args)])


def one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_cli_passes_writes_report_exit_0(d2nn: Path, tmp_path: Path) -> None:
    errs = tmp_path / "errors.toml"
    errs.write_text('[errors]\nheight_sigma = "1 um"\nmisalignment = "2 um"\n'
                    '[tolerance]\nmax_drop = 0.1\n'
                    '[sweep]\nfactors = [0, 1, 4]\nsamples = 1\n'
                    'errors = ["misalignment", "kappa"]\n')
    out = tmp_path / "rep"
    res = invoke(d2nn / "fab", "--samples", "2", "--errors", errs, "--report", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert "exactly reproduced" in res.stdout and "PASS" in res.stdout
    rep = json.loads((out / "report.json").read_text())
    trained = Design.load(d2nn / "run").metrics["accuracy"]
    assert rep["readback"]["training_model"]["accuracy"] == trained
    assert rep["trained"]["round_trip_exact"]
    assert rep["model"]["gap"] == rep["nominal"]["accuracy"] - trained
    assert rep["tolerance"]["passed"] and len(rep["combined"]["values"]) == 2
    assert [s["error"] for s in rep["sweep"]] == ["misalignment", "kappa"]
    assert rep["sweep"][0]["magnitudes"] == pytest.approx([0, 2e-6, 8e-6])
    assert len(rep["nominal_confusion"]) == 10
    for png in rep["figures"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"sweep.png", "histogram.png", "confusion.png"} <= set(rep["figures"])
    md = (out / "report.md").read_text()
    assert "PASS" in md
    # the report states export's design-rule result and the model it simulated with
    assert "Design-rule check at export (drc.json): **passed**" in md
    assert "training model" in md


def test_cli_absurd_errors_fail_exit_1(d2nn: Path, tmp_path: Path) -> None:
    errs = tmp_path / "errors.toml"
    errs.write_text('[errors]\nheight_sigma = "0.5 mm"\nmisalignment = "3 mm"\n')
    res = invoke(d2nn / "fab", "--samples", "3", "--errors", errs, "--report",
                 tmp_path / "rep", "--no-sweep", "--quiet")
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.stdout
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["tolerance"]["passed"] \
        is False


def test_cli_checksum_mismatch_exit_2(d2nn: Path, tmp_path: Path) -> None:
    fab = copy_fab(d2nn / "fab", tmp_path / "fab")
    with open(fab / "layer2.stl", "ab") as f:
        f.write(b"\0")
    line = one_line_error(invoke(fab, "--report", tmp_path / "rep"))
    assert "layer2.stl" in line and "SHA-256" in line


def test_cli_gds_without_expected_layers_exit_2(d2nn: Path, tmp_path: Path) -> None:
    import gdstk

    fab = copy_fab(d2nn / "fab", tmp_path / "fab")
    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    cell = lib.new_cell("THZ_PRINTED_L1")
    cell.add(gdstk.rectangle((-6400, -6400), (6400, 6400), layer=50, datatype=0))
    lib.write_gds(fab / "layer1.gds")
    refresh_checksum(fab, "layer1.gds")
    line = one_line_error(invoke(fab, "--source", "gds", "--report", tmp_path / "rep"))
    assert "layer1.gds" in line and "expected layers" in line and "50/0" in line


def test_cli_stl_not_watertight_exit_2(d2nn: Path, tmp_path: Path) -> None:
    fab = copy_fab(d2nn / "fab", tmp_path / "fab")
    tri = np.zeros(1, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    tri["v"] = [[[0, 0, 0], [1, 0, 0], [0, 1, 0]]]
    (fab / "layer1.stl").write_bytes(b"\0" * 80 + np.uint32(1).tobytes() + tri.tobytes())
    refresh_checksum(fab, "layer1.stl")
    line = one_line_error(invoke(fab, "--source", "stl", "--report", tmp_path / "rep"))
    assert "layer1.stl" in line and "watertight" in line


def test_cli_bad_inputs_exit_2(d2nn: Path, tmp_path: Path) -> None:
    line = one_line_error(invoke(tmp_path / "nope", "--report", tmp_path / "rep"))
    assert "nope" in line
    errs = tmp_path / "errors.toml"
    errs.write_text('[errors]\nwobble = "1 um"\n')
    line = one_line_error(invoke(d2nn / "fab", "--errors", errs, "--report", tmp_path / "r"))
    assert "errors.wobble" in line
    errs.write_text('[tolerance]\nmetric = "psnr"\n')
    line = one_line_error(invoke(d2nn / "fab", "--errors", errs, "--report", tmp_path / "r"))
    assert "tolerance.metric" in line
    fab = copy_fab(d2nn / "fab", tmp_path / "fab_nostl")
    m = json.loads((fab / "manifest.json").read_text())
    for layer in m["layers"]:
        layer["files"].pop("stl")
    (fab / "manifest.json").write_text(json.dumps(m))
    line = one_line_error(invoke(fab, "--source", "stl", "--report", tmp_path / "r"))
    assert "--source stl" in line
    fab = copy_fab(d2nn / "fab", tmp_path / "fab_nobase")
    m = json.loads((fab / "manifest.json").read_text())
    del m["base_thickness"]
    (fab / "manifest.json").write_text(json.dumps(m))
    line = one_line_error(invoke(fab, "--report", tmp_path / "r"))
    assert "manifest.json" in line and "base_thickness" in line


@pytest.mark.parametrize("name", ["errors_thz_printed.toml", "errors_fused_silica.toml"])
def test_example_errors_files_parse(name: str) -> None:
    from optodesign.variation.spec import load_errors

    cfg = load_errors(Path(__file__).resolve().parents[1] / "examples" / name)
    assert cfg.errors.is_random and len(cfg.errors.active()) >= 5


def test_manifest_describes_how_to_resimulate(d2nn: Path) -> None:
    """Issue #12 item 4: the frame, the face towards the source, one viewing convention, the
    distances' reference planes, the training model and the task setup (input encoding,
    detector boxes, test split) are in manifest.json."""
    from optodesign.export.manifest import VIEWING

    m = json.loads((d2nn / "fab" / "manifest.json").read_text())
    c = m["conventions"]
    design = Design.load(d2nn / "run")
    assert c["viewing"] == VIEWING and "from the source towards the detector" in VIEWING
    assert c["training_model"]["pad"] == design.pad
    assert c["training_model"]["pixels"] == design.pixels == "cells"
    assert "sinc(pitch fx)" in c["training_model"]["pixel_model"]
    assert c["setup"] == json.loads(json.dumps(design.setup.to_json()))
    assert {"encoding", "detectors", "test_samples"} <= set(c["setup"])
    assert "detector" in c["faces"] and "distances[0]" in c["distances"]
    assert read_fab(d2nn / "fab").manifest.conventions == c


def test_report_names_the_rules_a_design_failed() -> None:
    from types import SimpleNamespace

    from optodesign.verify.report import _drc_line

    layer = SimpleNamespace(drc={"counts": {"diagonal_necks": 3, "min_feature": 0}})
    m = SimpleNamespace(drc={"passed": False, "file": "drc.json"}, layers=(layer, layer))
    assert _drc_line(m) == ("Design-rule check at export (drc.json): **FAILED** "
                            "(diagonal_necks 6).")
    assert "not recorded" in _drc_line(SimpleNamespace(drc={}, layers=()))


def test_allow_edited_verifies_what_the_edited_files_make(d2nn: Path, tmp_path: Path) -> None:
    """A fab edits layer 1 (a 3 x 3 block made another level, as OPC or a repair might):
    plain verify refuses the changed checksum; --allow-edited re-derives the levels from the
    geometry, lists every pixel that differs, and simulates the edited files. The design
    itself may not change."""
    import shutil

    from optodesign.verify.readback import read_fab

    fab = tmp_path / "fab"
    shutil.copytree(d2nn / "fab", fab)
    design = Design.load(fab)
    edited = design.levels.copy()
    edited[0, 10:13, 20:23] = (edited[0, 10:13, 20:23] + 2) % design.n_levels
    other = tmp_path / "other"
    export_design(design.with_levels(edited), load_process("thz-printed"), other,
                  formats="gds", plot=False)
    # ... and adds dummy fill around the array, on the layers the reader reads
    import gdstk

    lib = gdstk.read_gds(other / "layer1.gds")
    top = lib.top_level()[0]
    lay = top.polygons[0]
    for i in range(4):
        top.add(gdstk.rectangle((1e5 + 200 * i, 1e5), (1e5 + 200 * i + 100, 1e5 + 100),
                                layer=lay.layer, datatype=lay.datatype))
    lib.write_gds(fab / "layer1.gds")

    res = invoke(fab, "--report", tmp_path / "r0", "--quiet", "--fast", "--samples", "1",
                 "--no-sweep", "--source", "gds")
    assert res.exit_code == 2
    assert "layer1.gds: SHA-256 differs" in res.output and "--allow-edited" in res.output

    back = read_fab(fab, source="gds", allow_edited=True)
    assert np.array_equal(back.levels, edited)  # what is simulated is what the files make
    assert back.edits.files == ("layer1.gds",) and back.edits.count == 9
    assert sorted(map(tuple, back.edits.pixels[:, :3])) == [
        (0, r, c) for r in range(10, 13) for c in range(20, 23)]

    out = tmp_path / "r1"
    res = invoke(fab, "--report", out, "--quiet", "--fast", "--samples", "1", "--no-sweep",
                 "--source", "gds", "--allow-edited")
    assert res.exit_code in (0, 1), res.output  # 1 when the edit costs beyond tolerance
    rep = json.loads((out / "report.json").read_text())
    e = rep["readback"]["edits"]
    assert e["files"] == ["layer1.gds"] and e["pixels"] == 9 and e["per_layer"][0] == 9
    assert [1, 10, 20, int(design.levels[0, 10, 20]), int(edited[0, 10, 20])] in \
        e["differences"]
    assert "**Edited files**" in (out / "report.md").read_text()

    # the design is the reference: editing it is refused even with --allow-edited
    (fab / "design.json").write_text((fab / "design.json").read_text() + " ")
    res = invoke(fab, "--report", tmp_path / "r2", "--quiet", "--fast", "--allow-edited")
    assert res.exit_code == 2 and "design.json: SHA-256 differs" in res.output


def test_a_drawn_lens_is_scored_against_the_drawn_ideal_lens(lossless) -> None:
    """Under a drawn model the output is read as pixel averages, which lowers any focal peak
    (here by 17 %: a focus of 1.5 pixels); the lens's Strehl reference, the ideal continuous
    lens's peak, is simulated under the same model (:meth:`optodesign.tasks.lens.Lens.under`),
    so the drawn Strehl of a 16-level lens (0.987 trained) measures what the flat-topped
    pixels lose at NA 0.45 (0.87), not the readout (0.72 against the point-sampled reference
    of the design's setup)."""
    import torch

    from optodesign.verify.model import SimModel, evaluator_for

    d = lens_design(lossless, n=32, L=16, focal=0.01)
    ev = Evaluator.from_design(d)
    trained = ev.evaluate(d.transmissions())["strehl"]
    drawn = evaluator_for(ev, SimModel(4.0, 2))
    t = torch.as_tensor(np.kron(np.asarray(d.transmissions()), np.ones((1, 2, 2))))
    strehl = drawn.evaluate(t.to(torch.complex64))["strehl"]
    ratio = drawn.task.setup.ideal_peak / d.setup.ideal_peak
    # the training model with pixels as cells reads its reference the same way
    assert ev.task.setup.ideal_peak / d.setup.ideal_peak == pytest.approx(ratio, rel=0.01)
    assert trained > 0.98
    assert ratio < 0.9  # the reference moved with the readout
    assert 0.8 < strehl < trained
    assert strehl * ratio < strehl - 0.1  # what the point-sampled reference would say


def test_the_manifest_records_the_test_split_and_verify_checks_it(d2nn: Path) -> None:
    """export hashes the test images a D2NN is scored on; verify refuses another split."""
    import dataclasses

    from optodesign.data.datasets import split_digest
    from optodesign.errors import UserError
    from optodesign.verify.montecarlo import _check_test_split

    fab = read_fab(d2nn / "fab")
    rec = fab.manifest.conventions["test_split"]
    ev = Evaluator.from_design(fab.design)
    images, labels = ev.test_split()
    assert rec == {"count": len(labels), "sha256": split_digest(images, labels)}
    _check_test_split(fab, ev)  # the same split: accepted
    other = dataclasses.replace(ev.dataset, test_labels=np.roll(ev.dataset.test_labels, 1))
    ev_other = Evaluator.from_design(fab.design, dataset=other)
    with pytest.raises(UserError, match=r"^data: the test split read here .* not the one "
                                        r"manifest.json records"):
        _check_test_split(fab, ev_other)


def test_training_at_two_samples_per_pixel_is_verify_s_drawn_model(tmp_path: Path) -> None:
    """``optics.oversample = 2`` (issue #12): training propagates each layer and the input
    held over 2 × 2 samples, which is verify's drawn model at s = 2; verify reproduces the
    trained metric from the files exactly, and the manifest and design say so."""
    import dataclasses
    import tomllib

    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer
    from optodesign.verify.model import ModelEvaluator, SimModel

    text = TINY_D2NN.format(method="psq-li").replace(
        "levels = 4", 'levels = 4\nprocess = "thz-printed"').replace(
        "epochs = 2", "epochs = 1").replace("train_samples = 128", "train_samples = 64").replace(
        "[optics]\n", "[optics]\noversample = 2\n").replace("\nsize = 32", "\nsize = 16").replace(
        "size = 3\n", "size = 2\n").replace("image_size = 16", "image_size = 8")
    res = Trainer(parse_config(tomllib.loads(text)), tmp_path / "run", progress=False).run()
    design = res.design
    assert design.oversample == 2 and Design.load(tmp_path / "run").oversample == 2
    ev = Evaluator.from_design(design)
    assert ev.grid.shape == (32, 32) and ev.grid.pitch == design.pitch / 2
    # the training evaluator is verify's model at (pad 2, s 2) given the upsampled layers
    drawn = ModelEvaluator(design, ev.device, ev.dataset,
                           model=SimModel(design.pad, 2, design.propagation))
    images, _ = ev.test_split(8)
    t = torch.as_tensor(design.transmissions().astype(np.complex64))
    mine = ev.output_intensity(ev.images_to_field(images), t)
    theirs = drawn.output_intensity(drawn.images_to_field(images),
                                    t.repeat_interleave(2, -2).repeat_interleave(2, -1))
    assert mine.shape == (8, 16, 16) and torch.allclose(mine, theirs, rtol=1e-5, atol=1e-9)
    # ... and not the one-sample model it replaces
    one_ev = Evaluator(dataclasses.replace(design, oversample=1), ev.device, ev.dataset)
    assert one_ev.oversample == 1
    assert (one_ev.output_intensity(one_ev.images_to_field(images), t) - mine).abs().max() > \
        1e-3 * mine.abs().max()
    export_design(design, load_process("thz-printed"), tmp_path / "fab",
                  design_dir=tmp_path / "run", plot=False)
    m = json.loads((tmp_path / "fab" / "manifest.json").read_text())
    assert m["conventions"]["training_model"]["samples_per_pixel"] == 2
    r = verify_fab(tmp_path / "fab", samples=2, sweep=False, fast=True)
    assert r.model == SimModel(design.pad, 2, design.propagation) and r.model.is_training(design)
    assert r.readback["accuracy"] == design.metrics["accuracy"]


@pytest.mark.parametrize(("extra", "message"), [
    ("oversample = 0", r"optics\.oversample.*>= 1"),
    ("oversample = 9", r"optics\.oversample: must be 1 to 8"),
    ('oversample = "2"', r"optics\.oversample"),
])
def test_bad_oversample_is_refused_naming_the_field(extra: str, message: str) -> None:
    import tomllib

    from optodesign.errors import ConfigError
    from optodesign.train.config import parse_config

    text = TINY_D2NN.format(method="psq-li").replace("[optics]\n", f"[optics]\n{extra}\n")
    with pytest.raises(ConfigError, match=message):
        parse_config(tomllib.loads(text))


def test_error_aware_training_at_two_samples_per_pixel_is_refused(tmp_path: Path) -> None:
    import tomllib

    from optodesign.errors import ConfigError
    from optodesign.train.config import parse_config

    errors = tmp_path / "errors.toml"
    errors.write_text('[errors]\nheight_sigma = "10 um"\n')
    text = TINY_D2NN.format(method="psq-li").replace("[optics]\n", "[optics]\noversample = 2\n")
    text += f'\n[fabrication]\nprocess = "thz-printed"\nerrors = "{errors}"\n'
    with pytest.raises(ConfigError, match=r"fabrication: errors: not supported with "
                                          r"optics\.oversample > 1"):
        parse_config(tomllib.loads(text))

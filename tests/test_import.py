"""``optodesign import``: a map made elsewhere becomes a design that exports and verifies."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.design import Design
from optodesign.export.fab import export_design
from optodesign.grid import Grid
from optodesign.importer import MapError, import_map, parse_phase_range, quantize_map, read_map
from optodesign.models.functional import forward_stack
from optodesign.process import load_process
from optodesign.tasks.lens import ideal_lens_phase
from optodesign.verify.readback import read_fab

LAM, PITCH, F = 0.749e-3, 0.4e-3, 0.03  # thz-printed: 0.4 THz, 400 um pixels


def fresnel(n: int = 24, f: float = F) -> np.ndarray:
    """An analytic (hyperbolic) Fresnel lens phase map, radians in [0, 2π)."""
    return ideal_lens_phase(Grid((n, n), PITCH), wavelength=LAM, focal_length=f)


@pytest.fixture(autouse=True)
def _quiet_sampling():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_fresnel_lens_round_trips_exactly_through_gds_and_stl(tmp_path: Path) -> None:
    design = import_map(fresnel(), pitch="0.4 mm", wavelength="0.4 THz",
                        process="thz-printed", distance="3 cm", levels=4,
                        method="error-diffusion", out=tmp_path / "run")
    loaded = Design.load(tmp_path / "run")
    assert loaded.task == "imported" and loaded.n_levels == 4
    assert np.array_equal(loaded.levels, design.levels)
    assert loaded.metrics == design.metrics
    process = load_process("thz-printed")
    # the level table is the process's own: a trained design on 4 levels would have it
    assert np.allclose(loaded.level_tables[0], process.level_table(4))
    export_design(loaded, process, tmp_path / "fab", formats=("gds", "stl"),
                  design_dir=tmp_path / "run", plot=False)
    for source in ("gds", "stl"):
        fab = read_fab(tmp_path / "fab", source=source)
        assert fab.trained_levels_equal, source
        assert np.array_equal(fab.levels, design.levels)


def _focus_error(n: int, f: float, method: str) -> tuple[float, float]:
    """Quantized vs continuous lens: (field error near the focus after the best complex
    scale, fraction of the demodulated transmission error at low spatial frequencies)."""
    phase = fresnel(n, f)
    grid = Grid((n, n), PITCH)
    table = np.exp(2j * np.pi * np.arange(4) / 4)
    t_c = np.exp(1j * phase)
    t_q = table[quantize_map(phase, table, method=method)]

    def focal(t: np.ndarray) -> np.ndarray:
        u = forward_stack(torch.ones((1, n, n), dtype=torch.complex64),
                          torch.as_tensor(t[None].astype(np.complex64)), (0.0, f), grid=grid,
                          wavelength=LAM)
        return u[0].numpy().astype(np.complex128)

    u_c, u_q = focal(t_c), focal(t_q)
    w, c = n // 4, n // 2
    win = (slice(c - w, c + w + 1), slice(c - w, c + w + 1))
    a = np.vdot(u_c[win], u_q[win]) / np.vdot(u_c[win], u_c[win])
    near = np.linalg.norm(u_q[win] - a * u_c[win]) ** 2 / np.linalg.norm(a * u_c[win]) ** 2
    # in the lens's own frame the focal plane is the Fourier transform of t_q conj(t_c)
    err = np.fft.fft2(t_q * np.conj(t_c) - (t_q * np.conj(t_c)).mean())
    fy = np.fft.fftfreq(n)
    low = np.hypot(*np.meshgrid(fy, fy)) < 0.125
    return near, float((np.abs(err[low]) ** 2).sum() / (np.abs(err) ** 2).sum())


@pytest.mark.physics
def test_error_diffusion_moves_quantization_error_away_from_the_focus() -> None:
    # Nearest-level quantization of a Fresnel lens leaves a structured (sawtooth) phase
    # error; Floyd–Steinberg diffusion pushes it to high spatial frequencies, i.e. to large
    # angles, away from the focal region: less error in the focal window and at low
    # frequencies of the demodulated transmission.
    near_n, low_n = _focus_error(64, 0.08, "nearest")
    near_e, low_e = _focus_error(64, 0.08, "error-diffusion")
    assert near_e < 0.5 * near_n
    assert low_e < 0.25 * low_n


@pytest.mark.property
def test_nearest_keeps_maps_already_on_the_levels_and_wraps() -> None:
    table = np.exp(2j * np.pi * np.arange(8) / 8)
    idx = np.random.default_rng(1).integers(0, 8, (9, 7))
    phase = 2 * np.pi * idx / 8
    for method in ("nearest", "error-diffusion"):
        assert np.array_equal(quantize_map(phase, table, method=method), idx)
        # a whole turn added (or taken) changes nothing: the error is wrap-aware
        assert np.array_equal(quantize_map(phase - 2 * np.pi, table, method=method), idx)
        assert np.array_equal(quantize_map(np.exp(1j * phase), table, method=method), idx)
    # just below 2π is nearest to level 0, not to level 7
    assert quantize_map(np.array([[2 * np.pi - 0.1]]), table)[0, 0] == 0


@pytest.mark.property
def test_uniform_levels_shortcut_equals_the_search() -> None:
    from optodesign.importer import _diffuse_phase

    rng = np.random.default_rng(8)
    phase = rng.uniform(-7, 7, (23, 19))
    for n, offset in ((2, 0.0), (4, 0.3), (8, -1.0)):
        levels = np.angle(np.exp(1j * (offset + 2 * np.pi * np.arange(n) / n)))
        assert np.array_equal(_diffuse_phase(phase, levels),
                              _diffuse_phase(phase, levels, search=True))


@pytest.mark.property
def test_error_diffusion_keeps_the_local_mean_phase() -> None:
    # a constant phase between two levels: the pixel mix has the right mean phase
    table = np.exp(2j * np.pi * np.arange(4) / 4)
    phase = np.full((40, 40), 0.3 * np.pi / 2)  # 30 % of the way from level 0 to level 1
    idx = quantize_map(phase, table, method="error-diffusion")
    assert set(np.unique(idx)) <= {0, 1}
    assert abs(idx.mean() - 0.3) < 0.02
    assert np.all(quantize_map(phase, table) == 0)


def test_grey_png_with_a_range_imports_like_the_npy(tmp_path: Path) -> None:
    from PIL import Image

    idx = np.random.default_rng(2).integers(0, 4, (12, 10))
    Image.fromarray((idx * 16384).astype(np.uint16)).save(tmp_path / "m.png")
    Image.fromarray((idx * 64).astype(np.uint8)).save(tmp_path / "m8.tif")
    a = read_map(tmp_path / "m.png", phase_range="0,2pi")
    b = read_map(tmp_path / "m8.tif", phase_range=parse_phase_range("0, 2*pi"))
    assert np.allclose(a, 2 * np.pi * idx * 16384 / 65535)
    assert np.allclose(b, 2 * np.pi * idx * 64 / 255)
    table = np.exp(2j * np.pi * np.arange(4) / 4)
    assert np.array_equal(quantize_map(a, table), idx)
    assert parse_phase_range("-pi,pi") == (-np.pi, np.pi)
    with pytest.raises(MapError, match="--phase-range: required"):
        read_map(tmp_path / "m.png")


def test_complex_map_on_the_meta_atom_table(tmp_path: Path) -> None:
    process = load_process("tio2-pillars")
    table = process.level_table(None)
    idx = np.random.default_rng(3).integers(0, len(table), (8, 8))
    design = import_map(table[idx] * 0.999, pitch=process.spec.lattice,
                        wavelength="532 nm", process=process, distance="5 um")
    assert design.layer_kind == "complex" and design.setup.map_kind == "complex"
    assert np.array_equal(design.levels[0], idx)
    export_design(design, process, tmp_path / "fab", formats=("gds",), plot=False)
    assert np.array_equal(read_fab(tmp_path / "fab").levels[0], idx)


@pytest.mark.e2e
def test_bad_maps_and_options_are_one_line_exit_2(tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, fresnel(8))
    nan = fresnel(8)
    nan[2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "cube.npy", np.zeros((2, 8, 8)))
    np.save(tmp_path / "gain.npy", np.full((8, 8), 1.2 + 0j))
    (tmp_path / "x.txt").write_text("no")
    base = ["--pitch", "0.4 mm", "--wavelength", "0.4 THz", "--process", "thz-printed",
            "--distance", "3 cm", "--out", str(tmp_path / "run")]

    def run(path: str, *extra: str) -> str:
        args = ["import", str(tmp_path / path), *base, *extra]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        line = r.output.strip()
        assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line
        return line

    assert "1 pixel(s) are NaN" in run("nan.npy")
    assert "must be a 2-D map" in run("cube.npy")
    assert "|t| <= 1" in run("gain.npy")
    assert "unknown map type" in run("x.txt")
    assert "not found" in run("missing.npy")
    assert "thz-printed" in run("good.npy", "--process", "no-such-process")
    assert "--pitch" in run("good.npy", "--pitch", "10 um")      # below the process minimum
    assert "--wavelength" in run("good.npy", "--wavelength", "532 nm")
    assert "--pitch" in run("good.npy", "--pitch", "0.4")        # no unit
    assert "--levels" in run("good.npy", "--levels", "1")
    assert run("good.npy", "--process", "fused-silica-etch4", "--wavelength", "633 nm",
               "--pitch", "2 um", "--distance", "0.1 mm", "--levels", "8").startswith(
        "error: --levels: process 'fused-silica-etch4' etches 2 binary masks")
    assert not (tmp_path / "run").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_import_export_verify_cli(tmp_path: Path) -> None:
    np.save(tmp_path / "lens.npy", fresnel())
    r = CliRunner().invoke(main, ["import", str(tmp_path / "lens.npy"), "--pitch", "0.4 mm",
                                  "--wavelength", "0.4 THz", "--process", "thz-printed",
                                  "--distance", "3 cm", "--levels", "4", "--method",
                                  "error-diffusion", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "fidelity" in r.output
    r = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--process", "thz-printed",
                                  "--out", str(tmp_path / "fab"), "--format", "gds,stl"])
    assert r.exit_code == 0, r.output
    for source in ("gds", "stl"):
        r = CliRunner().invoke(main, ["verify", str(tmp_path / "fab"), "--report",
                                      str(tmp_path / f"rep-{source}"), "--samples", "4",
                                      "--no-sweep", "--quiet", "--source", source,
                                      "--device", "cpu"])
        assert r.exit_code == 0, r.output
        assert "exactly reproduced" in r.output and "metric fidelity" in r.output

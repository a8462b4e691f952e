"""``optodesign compare``: runs side by side (settings, metrics, fab/verify) and curves."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.export.fab import export_design
from optodesign.importer import import_map
from optodesign.process import load_process


def _design(path: Path, n: int, method: str) -> None:
    rng = np.random.default_rng(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_map(rng.uniform(0, 2 * np.pi, (n, n)), pitch="0.4 mm", wavelength="0.4 THz",
                   process="thz-printed", distance="4 mm", levels=4, method=method, out=path)


def _curves(path: Path, epochs: int, start: float) -> None:
    lines = ["epoch,train_loss,test_fidelity_soft,test_fidelity_hard"]
    lines += [f"{e},{1 / e:.4f},{start + 0.01 * e:.4f},{start + 0.005 * e:.4f}"
              for e in range(1, epochs + 1)]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    (path / "run.json").write_text(json.dumps({"epochs": epochs}))


def _rows(output: str) -> dict[str, dict[str, str]]:
    """The printed table as {run: {column: value}} (columns separated by 2+ spaces)."""
    import re

    lines = [ln for ln in output.splitlines() if ln and not ln.startswith("  ")]
    header = re.split(r"\s{2,}", lines[0])
    return {cells[0]: dict(zip(header, cells)) for cells in
            (re.split(r"\s{2,}", ln) for ln in lines[1:])}


def test_compare_prints_settings_metrics_and_fab_results(tmp_path: Path) -> None:
    _design(tmp_path / "a", 8, "nearest")
    _design(tmp_path / "b", 12, "error-diffusion")
    _curves(tmp_path / "a", 3, 0.5)
    _curves(tmp_path / "b", 5, 0.6)
    from optodesign.design import Design

    a = Design.load(tmp_path / "a")
    export_design(a, load_process("thz-printed"), tmp_path / "a" / "fab", formats=("stl",),
                  design_dir=tmp_path / "a", plot=False)
    (tmp_path / "a" / "fab" / "verify").mkdir()
    (tmp_path / "a" / "fab" / "verify" / "report.json").write_text(json.dumps({
        "passed": True, "nominal": {"fidelity": 0.9}, "trained": {"passed": True},
        "tolerance": {"metric": "fidelity", "statistic": "mean", "value": 0.85}}))
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "a"), str(tmp_path / "b"),
                                  "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    rows = _rows(r.output)
    assert rows["a"]["method"] == "import-nearest" and rows["b"]["levels"] == "4"
    assert rows["a"]["size"] == "8x8 @ 400 um" and rows["b"]["size"] == "12x12 @ 400 um"
    assert rows["a"]["epochs"] == "3" and rows["b"]["epochs"] == "5"
    assert rows["a"]["fidelity"] == f"{a.metrics['fidelity']:.4g}"
    assert rows["a"]["drc"] == "pass" and rows["a"]["verify"] == "PASS"
    assert rows["a"]["read back"] == "fidelity 0.9" and rows["a"]["under errors"] == "mean 0.85"
    assert rows["b"]["verify"] == "-"
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.count("\n") == 4 and "| a | imported |" in md
    from PIL import Image

    with Image.open(tmp_path / "cmp" / "curves.png") as im:
        px = np.asarray(im.convert("L"))
    assert px.shape[0] > 300 and px.std() > 10  # drawn, not blank

    # a design that changed after its export: the fab result is marked stale
    _design(tmp_path / "a", 8, "error-diffusion")
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "a")])
    assert r.exit_code == 0 and "stale" in _rows(r.output)["a"]["drc"]


@pytest.mark.parametrize("make", ["missing", "empty", "badjson"])
def test_compare_bad_input_is_one_line_exit_2(tmp_path: Path, make: str) -> None:
    run = tmp_path / "r"
    if make != "missing":
        run.mkdir()
    if make == "badjson":
        (run / "design.json").write_text("{not json")
    r = CliRunner().invoke(main, ["compare", str(run)])
    assert r.exit_code == 2
    assert r.output.startswith("error: ") and r.output.count("\n") == 1


@pytest.mark.slow
def test_compare_real_training_runs(tmp_path: Path, tiny_d2nn_config) -> None:
    # two trained runs with the same directory name: the table names them by path, and the
    # curves come from their metrics.csv
    for name, method in (("a", "psq-li"), ("b", "ste")):
        r = CliRunner().invoke(main, ["train", str(tiny_d2nn_config(method)), "--out",
                                      str(tmp_path / name / "run")])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "a" / "run"),
                                  str(tmp_path / "b" / "run"), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    rows = _rows(r.output)
    a, b = rows[str(tmp_path / "a" / "run")], rows[str(tmp_path / "b" / "run")]
    assert (a["task"], a["method"], a["epochs"], a["layers"]) == ("d2nn", "psq-li", "2", "2")
    assert b["method"] == "ste" and a["size"] == "32x32 @ 400 um"
    assert float(a["accuracy"]) >= 0 and (tmp_path / "c" / "curves.png").stat().st_size > 10_000

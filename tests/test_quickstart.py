"""``optodesign quickstart`` end to end (a --tiny run: 32x32, 2 layers, 1 epoch)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from optodesign.design import Design

pytestmark = pytest.mark.filterwarnings(
    "ignore::optodesign.optics.propagation.SamplingWarning")


def test_packaged_config_is_the_documented_default() -> None:
    from optodesign.commands.quickstart import quickstart_config_text
    from optodesign.train.config import parse_config

    cfg = parse_config(tomllib.loads(quickstart_config_text()))
    assert cfg.task == "d2nn" and cfg.quantization.process == "thz-printed"
    assert cfg.data.dataset == "digits" and cfg.optics.layers == 3
    assert cfg.optics.size == 64 and cfg.quantization.levels == 4


@pytest.mark.slow
def test_quickstart_tiny_end_to_end(tmp_path: Path) -> None:
    from optodesign.cli import main

    out = tmp_path / "qs"
    res = CliRunner().invoke(main, ["quickstart", "--out", str(out), "--tiny", "--samples", "2",
                                    "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    design = Design.load(out / "run")
    assert design.shape == (32, 32) and design.n_layers == 2
    manifest = json.loads((out / "fab" / "manifest.json").read_text())
    assert manifest["process"]["name"] == "thz-printed"
    assert {"gds", "oas", "stl"} <= set(manifest["layers"][0]["files"])
    rep = json.loads((out / "verify" / "report.json").read_text())
    assert rep["source"] == "stl"
    # the files reproduce the trained accuracy, and the CLI says so and where things are
    assert rep["readback"]["training_model"]["accuracy"] == design.metrics["accuracy"]
    assert rep["trained"]["round_trip_exact"] is True
    assert f"test accuracy {design.metrics['accuracy']:.4f}" in res.stdout
    assert "reproduced exactly" in res.stdout
    for path in (out / "run" / "design.json", out / "fab" / "manifest.json",
                 out / "verify" / "report.md"):
        assert str(path) in res.stdout
    # the tiny config is recorded, so the run directory reproduces the run
    cfg = tomllib.loads((out / "run" / "config.toml").read_text())
    assert cfg["optics"]["size"] == 32 and cfg["train"]["epochs"] == 1

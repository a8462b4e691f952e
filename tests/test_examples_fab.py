"""Every example is fabricable with a shipped process at the wavelength it is trained for:
each example config, shrunk to a tiny grid and a few steps, trains, and its design exports
with its process under ``--strict`` (the DRC passes)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from optodesign.export.fab import export_design
from optodesign.fileio import read_toml
from optodesign.process import load_process
from optodesign.train.config import parse_config
from optodesign.train.trainer import Trainer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "examples").glob("*.toml")
                 if not p.name.startswith("errors_"))

#: examples that train on uniform phase levels and name no process: the process they are
#: exported with (made at their wavelength)
EXPORT_PROCESS = {
    "d2nn_mnist4.toml": "thz-printed",
    "d2nn_mnist4_full.toml": "thz-printed",
    "d2nn_mnist4_large.toml": "thz-printed",
}


def process_of(name: str, raw: dict) -> str:
    fab = raw.get("fabrication", {}).get("process")
    quant = raw.get("quantization", {}).get("process")
    found = fab or quant or EXPORT_PROCESS.get(name)
    assert found, f"{name}: names no process and none is listed for it"
    return found


def tiny(raw: dict) -> dict:
    """The example on a 32 x 32 grid for a few steps (its physics otherwise unchanged)."""
    raw = copy.deepcopy(raw)
    o = raw["optics"]
    scale = 32 / o["size"]
    o["size"] = 32
    raw.setdefault("train", {}).update(epochs=1, steps_per_epoch=2, batch_size=16)
    raw["train"].pop("qat_start", None)
    if raw.get("task") == "d2nn":
        raw["data"] = {"dataset": "digits", "image_size": 16, "train_samples": 32,
                       "test_samples": 32}
        raw["detectors"] = {"size": 3}
    tg = raw.get("target", {})
    if "spacing" in tg:
        tg["spacing"] = max(4, int(tg["spacing"] * scale * 1.5))
        tg["spot_size"] = max(2, int(tg.get("spot_size", 4) * scale))
    return raw


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_example_exports_drc_clean_with_its_process(path, tmp_path):
    raw = read_toml(path, what="example")
    process = load_process(process_of(path.name, raw))
    cfg = parse_config(tiny(raw))  # the process's wavelength is checked here
    process.check_geometry(wavelength=cfg.optics.wavelength, pitch=cfg.optics.pitch)
    result = Trainer(cfg, tmp_path / "run", progress=False).run()
    manifest = export_design(result.design, process, tmp_path / "fab", formats=("gds",),
                             strict=True, design_dir=tmp_path / "run")
    assert all(layer.drc["passed"] for layer in manifest.layers)

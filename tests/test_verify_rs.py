"""``optics.propagation = "rs"``: training, export and verify under the Rayleigh–Sommerfeld
convolution (issue #12), and the refusals of geometries it cannot represent."""

from __future__ import annotations

import json
import tomllib
import warnings
from pathlib import Path

import pytest

from optodesign.design import Design
from optodesign.errors import ConfigError
from optodesign.evaluate import Evaluator
from optodesign.export.fab import export_design
from optodesign.optics.propagation import SamplingWarning
from optodesign.process import load_process
from optodesign.train.config import parse_config
from optodesign.train.trainer import Trainer
from optodesign.verify.model import SimModel
from optodesign.verify.montecarlo import verify_fab
from optodesign.verify.report import write_report

from .conftest import TINY_D2NN

SMALL = TINY_D2NN.format(method="psq-li").replace(
    "levels = 4", 'levels = 4\nprocess = "thz-printed"').replace(
    "epochs = 2", "epochs = 1").replace("train_samples = 128", "train_samples = 64").replace(
    "\nsize = 32", "\nsize = 16").replace("size = 3\n", "size = 2\n").replace(
    "image_size = 16", "image_size = 8")


def test_trained_exported_and_verified_under_rayleigh_sommerfeld(tmp_path: Path) -> None:
    text = SMALL.replace("[optics]\n", '[optics]\npropagation = "rs"\n')
    with warnings.catch_warnings():
        # nothing is band-limited and nothing wraps: training's stack check stays silent
        warnings.simplefilter("error", SamplingWarning)
        res = Trainer(parse_config(tomllib.loads(text)), tmp_path / "run", progress=False).run()
    design = res.design
    assert design.propagation == "rs" and Design.load(tmp_path / "run").propagation == "rs"
    assert Evaluator.from_design(design).grid.method == "rs"
    export_design(design, load_process("thz-printed"), tmp_path / "fab",
                  design_dir=tmp_path / "run", plot=False)
    m = json.loads((tmp_path / "fab" / "manifest.json").read_text())
    assert m["conventions"]["training_model"]["propagation"] == "rs"
    assert "Rayleigh-Sommerfeld" in m["conventions"]["training_model"]["method"]
    fast = verify_fab(tmp_path / "fab", samples=2, sweep=False, fast=True)
    assert fast.model == SimModel(design.pad, 1, "rs") and fast.model.is_training(design)
    assert fast.readback["accuracy"] == design.metrics["accuracy"]
    # the converged model: the same method at pad 2, the oversampling raised from 1
    full = verify_fab(tmp_path / "fab", samples=2, sweep=False)
    steps = full.convergence.steps
    assert [s.model for s in steps[:2]] == [SimModel(2.0, 1, "rs"), SimModel(2.0, 2, "rs")]
    assert all(s.model.method == "rs" and s.model.pad == 2 for s in steps)
    assert full.model.method == "rs"
    write_report(full, tmp_path / "report")
    model = json.loads((tmp_path / "report" / "report.json").read_text())["model"]
    assert model["training"] == {"pad": 2.0, "oversample": 1, "method": "rs"}
    assert model["method"] == "rs" and "Rayleigh-Sommerfeld" in model["label"]


def test_verify_of_an_angular_spectrum_design_chooses_rayleigh_sommerfeld(tmp_path: Path) -> None:
    """A design trained by the angular spectrum at pad 2: verify's ladder leaves it for the
    Rayleigh–Sommerfeld convolution at pad 2 (no pad steps), and the report says so."""
    asm = SMALL.replace("[optics]\n", '[optics]\npropagation = "asm"\n')
    res = Trainer(parse_config(tomllib.loads(asm)), tmp_path / "run", progress=False).run()
    export_design(res.design, load_process("thz-printed"), tmp_path / "fab",
                  design_dir=tmp_path / "run", plot=False)
    r = verify_fab(tmp_path / "fab", samples=2, sweep=False)
    models = [s.model for s in r.convergence.steps]
    assert models[0] == SimModel(2.0, 1, "asm") and models[1] == SimModel(2.0, 1, "rs")
    assert all(m.method == "rs" and m.pad == 2 for m in models[1:])
    assert r.model.method == "rs" and r.convergence.converged


@pytest.mark.parametrize(("optics", "message"), [
    ('propagation = "fft"', r"optics\.propagation: .*asm, rs"),
    ('propagation = "rs"\npad = 1.5', r"optics\.propagation: rs: pad: .*pad >= 2"),
    # LightRidge's tutorial geometry: 36 µm pixels at 532 nm over 0.3 m alias the kernel
    ('propagation = "rs"\nwavelength = "532 nm"\npitch = "36 um"\ndistance = "30 cm"\nsize = 200',
     r"optics\.propagation: rs: pitch: the Rayleigh–Sommerfeld kernel reaches"),
])
def test_propagation_is_checked_when_the_config_is_read(optics: str, message: str) -> None:
    text = TINY_D2NN.format(method="psq-li")
    for line in optics.split("\n"):
        key = line.split(" = ")[0]
        text = "\n".join(x for x in text.split("\n") if not x.startswith(f"{key} ="))
    text = text.replace("[optics]\n", f"[optics]\n{optics}\n")
    with pytest.raises(ConfigError, match=message):
        parse_config(tomllib.loads(text))


def test_the_angular_spectrum_warning_names_the_exact_alternative(tmp_path: Path) -> None:
    with pytest.warns(SamplingWarning, match=r"band limit removes .* or propagate by "
                                             r"Rayleigh-Sommerfeld \(optics\.propagation = "
                                             r"\"rs\"\), which is exact"):
        asm = SMALL.replace("[optics]\n", '[optics]\npropagation = "asm"\n')
        Trainer(parse_config(tomllib.loads(asm)), tmp_path / "run", progress=False).run()


def test_the_d2nn_default_is_rayleigh_sommerfeld_where_it_holds() -> None:
    d2nn = TINY_D2NN.format(method="psq-li")
    assert parse_config(tomllib.loads(d2nn)).optics.propagation == "rs"
    # LightRidge's geometry aliases the kernel: the default falls back to the angular spectrum
    far = "\n".join(x for x in d2nn.split("\n") if not x.startswith(
        ("wavelength =", "pitch =", "distance =", "size =")))
    far = far.replace("[optics]\n", '[optics]\nwavelength = "532 nm"\npitch = "36 um"\n'
                      'distance = "30 cm"\nsize = 200\n')
    assert parse_config(tomllib.loads(far)).optics.propagation == "asm"
    # other tasks keep the angular spectrum unless asked
    lens = (Path(__file__).parents[1] / "examples" / "lens.toml").read_text()
    assert parse_config(tomllib.loads(lens)).optics.propagation == "asm"

"""The Design artifact: a numpy/json-only contract between train, export and verify."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from optodesign.design import Design, DesignError


def tiny_design(**changes: object) -> Design:
    rng = np.random.default_rng(0)
    kw: dict = dict(
        task="d2nn",
        wavelength=0.75e-3,
        pitch=0.4e-3,
        levels=rng.integers(0, 4, size=(2, 8, 8)),
        level_tables=np.exp(1j * 2 * np.pi * np.arange(4) / 4),
        distances=(0.03, 0.03, 0.03),
        detectors=((0, 0, 2, 2), (6, 6, 2, 2)),
        metrics={"accuracy": 0.5},
    )
    kw.update(changes)
    return Design(**kw)


def test_round_trip_is_exact(tmp_path) -> None:
    d = tiny_design(target=np.ones((8, 8)), fixed_mask=np.zeros((2, 8, 8), bool))
    d.save(tmp_path / "run")
    e = Design.load(tmp_path / "run")
    assert np.array_equal(e.levels, d.levels) and e.levels.dtype == np.int16
    assert np.array_equal(e.level_tables, d.level_tables)
    assert e.distances == d.distances and e.detectors == d.detectors
    assert np.array_equal(e.target, d.target) and e.fixed_mask.dtype == bool
    np.testing.assert_allclose(e.level_phases()[0], [0, np.pi / 2, np.pi, 3 * np.pi / 2],
                               atol=1e-12)
    t = e.transmissions()
    assert t.shape == (2, 8, 8) and np.allclose(t[1, 3, 4], d.level_tables[1, d.levels[1, 3, 4]])


def test_saving_is_deterministic(tmp_path, monkeypatch) -> None:
    import time

    tiny_design().save(tmp_path / "a")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 365)  # a year later
    monkeypatch.setattr(time, "localtime", lambda *a: __import__("time").gmtime(real() + 3e7))
    tiny_design().save(tmp_path / "b")
    for name in ("design.json", "design.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_loadable_with_numpy_and_json_alone(tmp_path) -> None:
    tiny_design().save(tmp_path)
    code = (
        "import json, numpy as np, sys; "
        f"m = json.load(open(r'{tmp_path / 'design.json'}')); "
        f"z = np.load(r'{tmp_path / 'design.npz'}'); "
        "assert z['levels'].shape == (2, 8, 8) and m['n_levels'] == 4; "
        "from optodesign.design import Design; "
        f"Design.load(r'{tmp_path}'); "
        "assert 'torch' not in sys.modules, 'optodesign.design must not import torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(task="microscope"), "^task: unknown task"),
        (dict(wavelength=-1.0), "^wavelength: must be"),
        (dict(distances=(0.03, 0.03)), "^distances: expected 3"),
        (dict(distances=(0.03, -0.03, 0.03)), "^distances: must be finite and >= 0"),
        (dict(levels=np.full((2, 8, 8), 4)), r"^levels: values must lie in 0\.\.3"),
        (dict(level_tables=2 * np.ones(4)), r"^level_tables: every transmission"),
        (dict(detectors=((7, 7, 2, 2),)), "^detectors: box"),
    ],
)
def test_invalid_designs_name_the_field(changes: dict, match: str) -> None:
    with pytest.raises(DesignError, match=match):
        tiny_design(**changes)


def test_corrupt_files_give_clear_errors(tmp_path) -> None:
    with pytest.raises(DesignError, match="design.json: not found"):
        Design.load(tmp_path)
    tiny_design().save(tmp_path)
    (tmp_path / "design.npz").write_bytes(b"not a zip")
    with pytest.raises(DesignError, match="design.npz: cannot read"):
        Design.load(tmp_path)
    tiny_design().save(tmp_path)
    meta = json.loads((tmp_path / "design.json").read_text())
    del meta["pitch"]
    (tmp_path / "design.json").write_text(json.dumps(meta))
    with pytest.raises(DesignError, match="missing field 'pitch'"):
        Design.load(tmp_path)

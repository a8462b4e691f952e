"""The Design artifact: a numpy/json-only contract between train, export and verify."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from optodesign.design import Design, DesignError
from optodesign.grid import Grid
from optodesign.tasks import D2NNSetup, LensSetup, SplitterSetup

DETECTORS = ((0, 0, 2, 2), (6, 6, 2, 2))


def tiny_design(**changes: object) -> Design:
    rng = np.random.default_rng(0)
    kw: dict = dict(
        setup=D2NNSetup(detectors=DETECTORS, image_size=4),
        wavelength=0.75e-3,
        pitch=0.4e-3,
        levels=rng.integers(0, 4, size=(2, 8, 8)),
        level_tables=np.exp(1j * 2 * np.pi * np.arange(4) / 4),
        distances=(0.03, 0.03, 0.03),
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
    assert e.distances == d.distances and e.setup == d.setup and e.task == "d2nn"
    assert np.array_equal(e.target, d.target) and e.fixed_mask.dtype == bool
    np.testing.assert_allclose(e.level_phases()[0], [0, np.pi / 2, np.pi, 3 * np.pi / 2],
                               atol=1e-12)
    t = e.transmissions()
    assert t.shape == (2, 8, 8) and np.allclose(t[1, 3, 4], d.level_tables[1, d.levels[1, 3, 4]])


def test_the_design_carries_its_grid_and_the_file_format_is_unchanged(tmp_path) -> None:
    d = tiny_design(pad=1.5)
    assert d.grid == Grid((8, 8), 0.4e-3, pad=1.5)
    d.save(tmp_path)
    meta = json.loads((tmp_path / "design.json").read_text())
    assert "grid" not in meta and (meta["shape"], meta["pitch"], meta["pad"]) == ([8, 8],
                                                                               0.4e-3, 1.5)
    assert Design.load(tmp_path).grid == d.grid


def test_pixels_is_saved_and_older_files_read_as_point_samples(tmp_path) -> None:
    """New designs model pixels as cells; a design.json without ``pixels`` was trained on
    point samples and is simulated so (verify reproduces its trained metric)."""
    d = tiny_design()
    assert d.pixels == "cells"
    d.save(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "design.json").read_text())["pixels"] == "cells"
    assert Design.load(tmp_path / "a").pixels == "cells"
    tiny_design(pixels="points").save(tmp_path / "b")
    assert Design.load(tmp_path / "b").pixels == "points"
    meta = json.loads((tmp_path / "a" / "design.json").read_text())
    del meta["pixels"]
    (tmp_path / "a" / "design.json").write_text(json.dumps(meta))
    assert Design.load(tmp_path / "a").pixels == "points"


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
        (dict(wavelength=-1.0), "^wavelength: must be"),
        (dict(distances=(0.03, 0.03)), "^distances: expected 3"),
        (dict(distances=(0.03, -0.03, 0.03)), "^distances: must be finite and >= 0"),
        (dict(levels=np.full((2, 8, 8), 4)), r"^levels: values must lie in 0\.\.3"),
        (dict(level_tables=2 * np.ones(4)), r"^level_tables: every transmission"),
        (dict(setup=D2NNSetup(detectors=((7, 7, 2, 2),), image_size=4)),
         "^setup.detectors: box"),
        (dict(setup=D2NNSetup(detectors=(), image_size=4)), "^setup.detectors: a classifier"),
        (dict(setup=D2NNSetup(detectors=DETECTORS, image_size=9)), "^setup.image_size"),
        (dict(setup=D2NNSetup(detectors=DETECTORS, image_size=4, encoding="x")),
         "^setup.encoding"),
        (dict(free_levels=(0, 4)), "^free_levels: must be distinct levels in 0..3"),
        (dict(pixels="smooth"), "^pixels: must be one of cells, points, got 'smooth'"),
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


def test_unknown_task_in_design_json_names_the_field(tmp_path) -> None:
    tiny_design().save(tmp_path)
    meta = json.loads((tmp_path / "design.json").read_text())
    meta["task"] = "microscope"
    (tmp_path / "design.json").write_text(json.dumps(meta))
    with pytest.raises(DesignError, match="design.json: task: unknown task 'microscope'"):
        Design.load(tmp_path)


# ---------------------------------------------------------------------------- format 1
def write_v1(path, task: str, *, levels: np.ndarray, tables: np.ndarray, target=None,
             **fields: object) -> None:
    """A design directory exactly as format 1 (optodesign.design/1) wrote it."""
    path.mkdir(parents=True, exist_ok=True)
    arrays = {"levels": levels.astype(np.int16), "level_tables": tables}
    if target is not None:
        arrays["target"] = target
    np.savez(path / "design.npz", **arrays)
    meta = {"format": "optodesign.design/1", "task": task,
            "units": {"length": "m", "phase": "rad"}, "wavelength": 0.75e-3, "pitch": 0.4e-3,
            "shape": list(levels.shape[1:]), "n_layers": levels.shape[0],
            "n_levels": tables.shape[-1], "distances": [0.03] * (levels.shape[0] + 1),
            "pad": 2.0, "layer_kind": "phase", "detectors": [], "input": {}, "dataset": {},
            "quantizer": {}, "metrics": {}, "extra": {}}
    meta.update(fields)
    (path / "design.json").write_text(json.dumps(meta))


TABLES = np.exp(2j * np.pi * np.arange(4) / 4)[None].repeat(2, axis=0)
LEVELS = np.random.default_rng(0).integers(0, 4, (2, 8, 8))


def test_format_1_d2nn_reads_into_the_setup_record(tmp_path) -> None:
    write_v1(tmp_path / "a", "d2nn", levels=LEVELS, tables=TABLES,
             detectors=[[0, 0, 2, 2], [6, 6, 2, 2]],
             input={"encoding": "phase", "image_size": 6},
             dataset={"name": "digits", "path": None, "test_samples": 32},
             quantizer={"method": "binary", "n_levels": 4}, metrics={"accuracy": 0.5},
             extra={"refine": [{"method": "dbs"}]})
    d = Design.load(tmp_path / "a")
    assert d.task == "d2nn" and d.setup == D2NNSetup(
        detectors=DETECTORS, image_size=6, encoding="phase", dataset="digits", data_path=None,
        test_samples=32, loss="ce", temperature=10.0)
    assert d.free_levels == (0, 1) and d.allowed_levels() == (0, 1)
    assert d.extra == {"refine": [{"method": "dbs"}]} and d.metrics == {"accuracy": 0.5}
    np.testing.assert_array_equal(d.levels, LEVELS)
    d.save(tmp_path / "b")  # written as format 2, read back the same
    meta = json.loads((tmp_path / "b" / "design.json").read_text())
    assert meta["format"] == "optodesign.design/2" and meta["setup"]["image_size"] == 6
    assert "detectors" not in meta and "input" not in meta and "dataset" not in meta
    assert Design.load(tmp_path / "b").setup == d.setup


def test_format_1_lens_and_splitter_move_extra_into_the_setup(tmp_path) -> None:
    write_v1(tmp_path / "lens", "lens", levels=LEVELS[:1], tables=TABLES[:1],
             extra={"focal_length": 0.03, "focus_radius": 2, "ideal_peak": 5.5, "note": 1})
    d = Design.load(tmp_path / "lens")
    assert d.setup == LensSetup(focal_length=0.03, focus_radius=2, ideal_peak=5.5)
    assert d.extra == {"note": 1} and d.allowed_levels() == (0, 1, 2, 3)
    write_v1(tmp_path / "split", "splitter", levels=LEVELS[:1], tables=TABLES[:1],
             target=np.ones((8, 8)), extra={"spot_boxes": [[1, 1, 2, 2], [5, 5, 2, 2]]})
    d = Design.load(tmp_path / "split")
    assert d.setup == SplitterSetup(spot_boxes=((1, 1, 2, 2), (5, 5, 2, 2)))
    assert d.extra == {}


@pytest.mark.parametrize(("task", "fields", "needle"), [
    ("lens", {"extra": {"ideal_peak": 1.0}}, "extra.focus_radius"),
    ("splitter", {"extra": {}}, "extra.spot_boxes"),
    ("d2nn", {"detectors": [[0, 0, 2, 2]], "input": {"image_size": 99}}, "input.image_size"),
])
def test_format_1_missing_task_fields_are_named(tmp_path, task, fields, needle) -> None:
    write_v1(tmp_path, task, levels=LEVELS[:1], tables=TABLES[:1], **fields)
    with pytest.raises(DesignError, match=f"design.json: {needle}"):
        Design.load(tmp_path)

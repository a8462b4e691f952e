"""``optodesign export`` end to end on tiny designs (CliRunner, tmp_path only)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.commands.export import export
from optodesign.design import Design
from optodesign.export import fab as fab_module
from optodesign.export.fab import export_design
from optodesign.export.manifest import check_files, load_manifest
from optodesign.process import load_process
from optodesign.tasks import D2NNSetup
from optodesign.verify.gds_reader import read_gds_levels


def make_run(tmp_path: Path, process_name: str, *, shape=(9, 12), layers=2, L=None,
             pitch=None, seed=0, levels=None) -> tuple[Path, Design]:
    p = load_process(process_name)
    table = p.level_table(L) if L else p.level_table()
    rng = np.random.default_rng(seed)
    pitch = pitch or getattr(p.spec, "lattice", None) or 400e-6
    d = Design(
        setup=D2NNSetup(detectors=((0, 0, 1, 1),), image_size=1),
        wavelength=p.wavelength,
        pitch=pitch,
        levels=rng.integers(0, table.size, (layers, *shape)) if levels is None else levels,
        level_tables=table,
        distances=(0.03,) * (layers + 1),
    )
    run = tmp_path / "run"
    d.save(run)
    return run, d


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_export_print_end_to_end(tmp_path: Path) -> None:
    from optodesign.verify.stl_reader import read_stl_heights

    run, d = make_run(tmp_path, "thz-printed", L=4)
    fab = tmp_path / "fab"
    res = CliRunner().invoke(export, [str(run), "--process", "thz-printed", "--out", str(fab)])
    assert res.exit_code == 0, res.output
    assert "layer1.gds" in res.output and "drc ok" in res.output
    m = load_manifest(fab)
    assert check_files(fab) == []
    # manifest checksums are those of the files on disk
    for layer in m.layers:
        for fmt in ("gds", "oas", "stl"):
            info = layer.files[fmt]
            assert info.sha256 == sha(fab / info.name)
    assert m.design["files"]["design.npz"] == sha(run / "design.npz")
    assert m.process is not None
    assert m.process.sha256 == hashlib.sha256(m.process.toml.encode()).hexdigest()
    p = load_process("thz-printed")
    per = p.height_per_2pi
    assert [row["height"] for row in m.levels[0]] == pytest.approx(
        [0, per / 4, per / 2, 3 * per / 4])
    assert m.base_thickness == 0.5e-3 and m.units["stl"] == "mm"
    # the typed record writes exactly the JSON on disk
    assert m.to_dict() == json.loads((fab / "manifest.json").read_text())
    # read the files back: exactly the design
    for k in range(d.n_layers):
        lv = read_gds_levels(fab / f"layer{k + 1}.gds", process=p, shape=d.shape,
                             pitch=d.pitch, n_levels=4)
        assert np.array_equal(lv[0], d.levels[k])
        h = read_stl_heights(fab / f"layer{k + 1}.stl", shape=d.shape, pitch=d.pitch,
                             base=m.base_thickness, offset=m.stl_offset)
        np.testing.assert_allclose(h, p.heights(d.levels[k], d.level_phases()[k]), atol=1e-9)
    assert Design.load(fab).levels.tolist() == d.levels.tolist()


def test_export_is_reproducible_and_replaces_previous_fab_dir(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "fused-silica-etch4", pitch=2e-6)
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b, a):  # a is written twice: the second replaces the first
        res = CliRunner().invoke(export, [str(run), "--process", "fused-silica-etch4",
                                          "--out", str(out), "--format", "gds,oas"])
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for f in a.iterdir():
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    assert not list(a.glob("*.stl")) and leftovers(tmp_path) == []


def test_pillars_export_skips_stl_with_a_note(tmp_path: Path) -> None:
    run, d = make_run(tmp_path, "tio2-pillars", layers=1)
    fab = tmp_path / "fab"
    res = CliRunner().invoke(main, ["export", str(run), "--process", "tio2-pillars",
                                    "--out", str(fab)])
    assert res.exit_code == 0, res.output
    m = json.loads((fab / "manifest.json").read_text())
    assert "stl" not in m["layers"][0]["files"] and any("stl" in n for n in m["notes"])
    assert [r["size"] for r in m["levels"][0]] == list(load_process("tio2-pillars")
                                                       .spec.sizes)
    lv = read_gds_levels(fab / "layer1.oas", process=load_process("tio2-pillars"),
                         shape=d.shape, pitch=d.pitch, level_tables=d.level_tables[0])
    assert np.array_equal(lv[0], d.levels[0])


def test_strict_exits_1_on_rule_failure_but_writes_the_report(tmp_path: Path) -> None:
    levels = np.full((1, 8, 8), 3)
    levels[0, 2, 2] = levels[0, 3, 3] = 0  # a diagonal neck
    run, _ = make_run(tmp_path, "fused-silica-etch4", layers=1, pitch=2e-6, levels=levels)
    fab = tmp_path / "fab"
    args = [str(run), "--process", "fused-silica-etch4", "--out", str(fab), "--format", "gds"]
    res = CliRunner().invoke(export, args)
    assert res.exit_code == 0 and "drc FAIL" in res.output
    res = CliRunner().invoke(export, args + ["--strict"])
    assert res.exit_code == 1
    assert "diagonal_necks" in res.output
    report = json.loads((fab / "drc.json").read_text())
    assert report["passed"] is False
    (neck_rule,) = [v for v in report["layers"][0]["violations"]
                    if v["rule"] == "diagonal_necks"]
    assert neck_rule["count"] == 2  # masks 0 and 1 both neck at that corner
    assert {(e["row"], e["col"]) for e in neck_rule["examples"]} == {(3, 3)}
    clean = np.full((1, 8, 8), 3)
    run2 = tmp_path / "run2"
    Design(setup=D2NNSetup(detectors=((0, 0, 1, 1),), image_size=1), wavelength=633e-9,
           pitch=2e-6, levels=clean,
           level_tables=load_process("fused-silica-etch4").level_table(),
           distances=(1e-3, 1e-3)).save(run2)
    res = CliRunner().invoke(export, [str(run2), "--process", "fused-silica-etch4", "--out",
                                      str(tmp_path / "fab2"), "--strict", "--format", "gds"])
    assert res.exit_code == 0, res.output


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "thz-printed", L=4)
    cases = [
        (["--process", "nope"], "unknown process"),
        (["--process", "fused-silica-etch4"], "wavelength"),
        (["--process", "thz-printed", "--format", "gds,png"], "format"),
    ]
    for extra, needle in cases:
        res = CliRunner().invoke(export, [str(run), "--out", str(tmp_path / "x"), *extra])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert not (tmp_path / "x").exists()
    res = CliRunner().invoke(export, [str(tmp_path / "missing"), "--process", "thz-printed",
                                      "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "design.json" in res.output


def test_unwritable_output_leaves_nothing(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "thz-printed", L=4)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    res = CliRunner().invoke(export, [str(run), "--process", "thz-printed",
                                      "--out", str(blocker / "fab")])
    assert res.exit_code == 2 and res.output.startswith("error: --out:")
    assert blocker.read_text() == "x" and leftovers(tmp_path) == []
    # a non-empty directory that is not a fab directory is never overwritten
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    res = CliRunner().invoke(export, [str(run), "--process", "thz-printed", "--out", str(other)])
    assert res.exit_code == 2 and "refusing" in res.output
    assert (other / "notes.txt").read_text() == "keep"


def test_failure_midway_leaves_no_partial_fab_dir(tmp_path: Path, monkeypatch) -> None:
    run, d = make_run(tmp_path, "thz-printed", L=4)
    fab = tmp_path / "fab"
    p = load_process("thz-printed")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fab_module, "_plot_levels", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_design(d, p, fab, design_dir=run)
    assert not fab.exists() and leftovers(tmp_path) == []
    # a previous fab directory survives a failed re-export untouched
    monkeypatch.undo()
    export_design(d, p, fab, formats="gds", design_dir=run)
    before = {f.name: f.read_bytes() for f in fab.iterdir()}
    monkeypatch.setattr(fab_module, "_plot_levels", boom)
    with pytest.raises(RuntimeError):
        export_design(d, p, fab, design_dir=run)
    assert {f.name: f.read_bytes() for f in fab.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_spacers_follow_design_distances(tmp_path: Path) -> None:
    import trimesh

    run, d = make_run(tmp_path, "thz-printed", L=4, layers=3)
    fab = tmp_path / "fab"
    res = CliRunner().invoke(export, [str(run), "--process", "thz-printed", "--out", str(fab),
                                      "--spacer"])
    assert res.exit_code == 0, res.output
    m = load_manifest(fab)
    assert [s.between for s in m.spacers] == [(1, 2), (2, 3)]
    mesh = trimesh.load(fab / "spacer1-2.stl")
    # holder height in mm = distance (plates base-down on its ledge; see test_stl.py)
    assert mesh.extents[2] == pytest.approx(0.03 * 1e3, rel=1e-6)
    assert check_files(fab) == []


@pytest.mark.parametrize("shape", [(6, 8), (7, 5)])
def test_centre_pixel_lands_on_the_optical_axis_in_gds_and_stl(tmp_path: Path,
                                                               shape: tuple[int, int]) -> None:
    """One centre convention: pixel (ny // 2, nx // 2) is centred at x = y = 0 in the GDS and
    the STL (even grids included), and both read back to the same level map."""
    import gdstk
    import trimesh

    ny, nx = shape
    lv = np.zeros((1, ny, nx), dtype=np.int64)
    lv[0, ny // 2, nx // 2] = 3
    run, d = make_run(tmp_path, "thz-printed", shape=shape, layers=1, L=4, levels=lv)
    fab = tmp_path / "fab"
    p = load_process("thz-printed")
    export_design(d, p, fab, design_dir=run, plot=False)
    lib = gdstk.read_gds(str(fab / "layer1.gds"), unit=1e-6)
    (top,) = lib.top_level()
    layer, datatype = p.gds_layers(4)[3]
    (poly,) = top.get_polygons(layer=layer, datatype=datatype)
    (x0, y0), (x1, y1) = poly.bounding_box()
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((0.0, 0.0), abs=1e-6)  # um
    assert x1 - x0 == pytest.approx(d.pitch / 1e-6)
    mesh = trimesh.load(fab / "layer1.stl")
    tri = mesh.triangles
    top_z = tri[:, :, 2].max()
    up = np.all(np.isclose(tri[:, :, 2], top_z), axis=1)
    pts = tri[up].reshape(-1, 3)
    centre = (pts[:, :2].min(axis=0) + pts[:, :2].max(axis=0)) / 2
    assert tuple(centre) == pytest.approx((0.0, 0.0), abs=1e-6)  # mm
    assert np.ptp(pts[:, 0]) == pytest.approx(d.pitch * 1e3, rel=1e-5)
    from optodesign.verify.stl_reader import read_stl_heights

    got = read_gds_levels(fab / "layer1.gds", process=p, shape=shape, pitch=d.pitch, n_levels=4)
    assert np.array_equal(got, lv)
    m = load_manifest(fab)
    assert m.stl_offset == (0.0, 0.0)
    h = read_stl_heights(fab / "layer1.stl", shape=shape, pitch=d.pitch,
                         base=m.base_thickness, offset=m.stl_offset)
    np.testing.assert_allclose(h, p.heights(lv[0], d.level_phases()[0]), atol=1e-9)


@pytest.mark.parametrize(("name", "pitch"), [("fused-silica-etch4", 2e-6),
                                             ("tio2-pillars", 325e-9)])
def test_levels_png_labels_are_whole_and_in_physical_units(name: str, pitch: float) -> None:
    """Colorbar labels were clipped by a fixed margin ("0 0 0 0 1" for 0.2 .. 1.0 um, the
    pillar sizes cut to one digit): every label lies inside the figure, the colorbar's
    labels differ, and a micrometre-size layer has axes in um."""
    from optodesign.export.fab import levels_figure

    p = load_process(name)
    L = p.level_table().size
    levels = np.tile(np.arange(24) * L // 24, (24, 1))
    fig = levels_figure([p.structure.level_values(p.level_table())[levels]], process=p,
                        pitch=pitch)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = fig.bbox
    def shown(axis):  # tick labels the axis draws (the locator also returns ticks past it)
        lo, hi = sorted(axis.get_view_interval())
        return [t for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs())
                if lo - 1e-9 <= v <= hi + 1e-9]

    texts = [t for ax in fig.axes for t in (*shown(ax.xaxis), *shown(ax.yaxis),
                                            ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    for t in texts:
        e = t.get_window_extent(r)
        assert e.x0 >= box.x0 - 0.5 and e.x1 <= box.x1 + 0.5, t.get_text()
        assert e.y0 >= box.y0 - 0.5 and e.y1 <= box.y1 + 0.5, t.get_text()
    bar = fig.axes[-1]
    labels = [t.get_text() for t in shown(bar.yaxis) if t.get_text()]
    assert len(labels) >= 3 and len(set(labels)) == len(labels)
    assert fig.axes[0].get_xlabel() == "x (µm)"

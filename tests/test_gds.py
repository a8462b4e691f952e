"""GDSII/OASIS export and read-back: exact level maps, positions, areas, bytes; DRC."""

from __future__ import annotations

import math
from pathlib import Path

import gdstk
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optodesign.errors import UserError
from optodesign.export.drc import check_layer, diagonal_necks, isolated_pixels
from optodesign.export.gds import (
    build_library,
    layout_origin,
    merge_rectangles,
    top_cell_name,
    write_gds,
    write_oas,
)
from optodesign.process import load_process, process_from_dict
from optodesign.process.pillars import pillar_polygon_points
from optodesign.raster import narrow_runs
from optodesign.verify.gds_reader import read_gds_levels

RNG = np.random.default_rng(7)


def write_both(tmp_path: Path, levels, table, process, pitch, name="l") -> tuple[Path, Path]:
    lib = build_library([(1, levels, table)], process=process, pitch=pitch,
                        wavelength=process.wavelength)
    return (write_gds(lib, tmp_path / f"{name}.gds"), write_oas(lib, tmp_path / f"{name}.oas"))


def is_cross(poly) -> bool:
    """An alignment cross: 12 vertices, not convex (pillars and rectangles are convex)."""
    q = np.asarray(poly.points)
    if len(q) != 12:
        return False
    e = np.roll(q, -1, axis=0) - q
    turn = e[:, 0] * np.roll(e[:, 1], -1) - e[:, 1] * np.roll(e[:, 0], -1)
    return bool((turn > 0).any() and (turn < 0).any())


def polys_on(path: Path, layer: int, datatype: int = 0, *, marks: bool = False) -> list:
    """The polygons of ``layer`` in the top cell (alignment crosses only if ``marks``)."""
    lib = gdstk.read_oas(str(path)) if path.suffix == ".oas" else gdstk.read_gds(str(path))
    (top,) = lib.top_level()
    return [q for q in top.get_polygons(layer=layer, datatype=datatype)
            if marks or not is_cross(q)]


def area(polys: list) -> float:
    return float(sum(p.area() for p in polys))


# ---------------------------------------------------------------------------- merging
@settings(max_examples=60, deadline=None)
@given(arrays(np.int8, st.tuples(st.integers(1, 12), st.integers(1, 12)),
              elements=st.integers(0, 3)))
def test_merged_rectangles_tile_the_map_exactly(labels: np.ndarray) -> None:
    r = merge_rectangles(labels)
    out = np.full(labels.shape, -1)
    count = np.zeros(labels.shape, int)
    for k in range(len(r)):
        out[r.r0[k]:r.r1[k], r.c0[k]:r.c1[k]] = r.label[k]
        count[r.r0[k]:r.r1[k], r.c0[k]:r.c1[k]] += 1
    assert np.array_equal(out, labels) and np.all(count == 1)
    assert r.area().sum() == labels.size


def test_merging_is_not_one_polygon_per_pixel() -> None:
    assert len(merge_rectangles(np.zeros((50, 40), int))) == 1
    yy, xx = np.mgrid[:64, :64]
    lens = ((((xx - 31.5) ** 2 + (yy - 31.5) ** 2) // 300) % 4).astype(int)  # 7 rings
    assert len(merge_rectangles(lens)) < lens.size / 10


# ---------------------------------------------------------------------------- thin processes
def test_single_pixel_lands_at_the_right_coordinates(tmp_path: Path) -> None:
    p = load_process("thz-printed")
    pitch = 400e-6
    lv = np.zeros((6, 8), int)
    lv[2, 5] = 3
    gds, _ = write_both(tmp_path, lv, p.level_table(4), p, pitch)
    (poly,) = polys_on(gds, layer=4)  # level 3 -> layer 4
    (x0, y0), (x1, y1) = poly.bounding_box()
    # pixel (3, 4) = (ny // 2, nx // 2) centred on 0: pixel (row 2, col 5) spans
    # x = -1.8 + 5*0.4 mm, y = -1.4 + 2*0.4 mm
    assert (x0, y0, x1, y1) == pytest.approx((200.0, -600.0, 600.0, -200.0), abs=1e-6)
    assert layout_origin((6, 8), pitch) == pytest.approx((-1.8e-3, -1.4e-3))


@pytest.mark.parametrize("name", ["thz-printed", "ip-dip-2pp"])
def test_per_level_round_trip_and_area(tmp_path: Path, name: str) -> None:
    p = load_process(name)
    pitch = 400e-6 if name == "thz-printed" else 1e-6
    L = 5
    lv = RNG.integers(0, L, (17, 23))
    gds, oas = write_both(tmp_path, lv, p.level_table(L), p, pitch)
    for path in (gds, oas):
        back = read_gds_levels(path, process=p, shape=lv.shape, pitch=pitch, n_levels=L)
        assert back.shape == (1, 17, 23) and np.array_equal(back[0], lv)
        for k in range(L):
            got = area(polys_on(path, layer=k + 1))
            assert got == pytest.approx((lv == k).sum() * (pitch / 1e-6) ** 2, rel=1e-9)


def test_binary_etch_masks_recombine(tmp_path: Path) -> None:
    p = load_process("fused-silica-etch4")
    pitch = 2e-6
    lv = RNG.integers(0, 4, (19, 13))
    gds, oas = write_both(tmp_path, lv, p.level_table(), p, pitch)
    code = 3 - lv
    for path in (gds, oas):
        for j in range(2):  # mask j = pixels etched d*2^j deep
            assert area(polys_on(path, layer=j + 1)) == pytest.approx(
                ((code >> j) & 1).sum() * 4.0, rel=1e-9)
        back = read_gds_levels(path, process=p, shape=lv.shape, pitch=pitch)
        assert np.array_equal(back[0], lv)
    # alignment crosses outside the four corners; label names the layer and process
    lib = gdstk.read_gds(str(gds))
    (top,) = lib.top_level()
    assert top.name == top_cell_name(p, 1) == "FUSED_SILICA_ETCH4_L1"
    # ... on the mark layer and on both mask layers, at the same places (each mask carries
    # the crosses it is aligned by)
    where = {}
    for layer in (101, 1, 2):
        marks = [m for m in top.get_polygons(layer=layer, datatype=0) if is_cross(m)]
        assert len(marks) == 4, layer
        for m in marks:
            (x0, y0), (x1, y1) = m.bounding_box()
            assert abs((x0 + x1) / 2) > 13 and abs((y0 + y1) / 2) > 19  # outside the array
        where[layer] = sorted(tuple(np.round(np.ravel(m.bounding_box()), 6)) for m in marks)
    assert where[1] == where[2] == where[101]
    (label,) = top.labels
    assert "layer 1/1" in label.text and "fused-silica-etch4" in label.text


def test_same_design_writes_the_same_bytes(tmp_path: Path) -> None:
    p = load_process("fused-silica-etch4")
    lv = RNG.integers(0, 4, (30, 30))
    a = write_both(tmp_path, lv, p.level_table(), p, 2e-6, name="a")
    b = write_both(tmp_path, lv, p.level_table(), p, 2e-6, name="b")
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()


def test_oasis_has_the_same_geometry_as_gds(tmp_path: Path) -> None:
    p = load_process("thz-printed")
    lv = RNG.integers(0, 3, (15, 11))
    gds, oas = write_both(tmp_path, lv, p.level_table(3), p, 400e-6)

    def boxes(path: Path) -> list:
        out = []
        for k in range(3):
            out += sorted(tuple(np.round(np.ravel(q.bounding_box()), 6)) + (k,)
                          for q in polys_on(path, layer=k + 1))
        return out

    assert boxes(gds) == boxes(oas)


# ---------------------------------------------------------------------------- pillars
def test_pillar_polygon_area_is_exact() -> None:
    for n in (16, 64):
        pts = pillar_polygon_points(200e-9, shape="circle", points=n)
        x, y = pts[:, 0], pts[:, 1]
        a = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        assert a == pytest.approx(math.pi * (100e-9) ** 2, rel=1e-12)
    # the naive inscribed 9-gon loses 7.9 %
    assert 1 - 9 / (2 * math.pi) * math.sin(2 * math.pi / 9) == pytest.approx(0.079, abs=1e-3)


def test_pillars_round_trip_position_size_area(tmp_path: Path) -> None:
    p = load_process("tio2-pillars")
    s = p.spec
    pitch = s.lattice
    table = p.level_table()
    lv = np.zeros((5, 6), int)
    lv[1, 4] = 6  # one 224 nm pillar
    gds, oas = write_both(tmp_path, lv, table, p, pitch)
    for path in (gds, oas):
        (poly,) = polys_on(path, layer=1)
        (x0, y0), (x1, y1) = poly.bounding_box()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # origin -3 pitches (x) and -2.5 pitches (y), snapped down to the 1 nm grid
        ox, oy = layout_origin((5, 6), pitch)
        assert cx == pytest.approx((ox + 4.5 * pitch) / 1e-6, abs=1e-3)
        assert cy == pytest.approx((oy + 1.5 * pitch) / 1e-6, abs=1e-3)
        want = math.pi * (s.sizes[6] / 2e-6) ** 2
        assert abs(poly.area() - want) / want < 0.01
        assert x1 - x0 == pytest.approx(0.224, rel=0.01)
    lv = RNG.integers(0, 8, (21, 18))
    lv[3:9, 2:10] = 5  # a block -> rectangular array reference
    gds, oas = write_both(tmp_path, lv, table, p, pitch, name="r")
    for path in (gds, oas):
        assert np.array_equal(read_gds_levels(path, process=p, shape=lv.shape, pitch=pitch)[0],
                              lv)
    lib = gdstk.read_gds(str(gds))
    assert sorted(c.name for c in lib.cells if c not in lib.top_level()) == [
        "D118", "D148", "D175", "D200", "D224", "D247", "D81"]
    # hierarchy: one polygon per pillar size (+ 4 alignment crosses on the mark layer and 4
    # on the pillar layer), the rest references
    info = gdstk.gds_info(str(gds))
    assert info["num_polygons"] == 7 + 8 and info["num_references"] < lv.size
    # design levels mapped through the design's own table (a subset, reordered)
    sub = table[[0, 5, 2]]
    lv = RNG.integers(0, 3, (7, 9))
    gds, _ = write_both(tmp_path, lv, sub, p, pitch, name="s")
    assert np.array_equal(read_gds_levels(gds, process=p, shape=lv.shape, pitch=pitch,
                                          level_tables=sub)[0], lv)


def test_pillar_arrays_are_on_the_database_grid(tmp_path: Path) -> None:
    # 325 nm lattice at 1 nm: site centres fall on half nanometres; every reference origin,
    # array vector and repetition offset must still be a whole number of database units
    p = load_process("tio2-pillars")
    pitch, table = p.spec.lattice, p.level_table()
    lv = RNG.integers(0, 8, (40, 37))
    lv[5:20, 3:30] = 4
    lv[22:31, 8:12] = 6
    gds, oas = write_both(tmp_path, lv, table, p, pitch, name="grid")
    lib = gdstk.read_gds(str(gds))
    (top,) = lib.top_level()
    db = p.gds.precision / p.gds.unit  # user units per database unit
    arrays = 0

    def on_grid(values) -> bool:
        q = np.asarray(values, dtype=np.float64) / db
        return bool(np.all(np.abs(q - np.round(q)) < 1e-6))

    for ref in top.references:
        assert on_grid(ref.origin), ref.origin
        rep = ref.repetition
        if rep.columns:  # an AREF: its vectors v1 = spacing_x * columns, v2 = ...
            arrays += 1
            assert on_grid(rep.spacing) and on_grid(np.multiply(rep.spacing,
                                                                (rep.columns, rep.rows)))
        if rep.size > 1:
            assert on_grid(rep.get_offsets())
    assert arrays >= 2
    # a pillar sits at its site's centre rounded down to the grid: at most 0.5 nm off, and the
    # centre pixel's pillar exactly on the optical axis
    ox, oy = layout_origin(lv.shape, pitch)
    for path in (gds, oas):
        assert np.array_equal(read_gds_levels(path, process=p, shape=lv.shape, pitch=pitch)[0],
                              lv)
    one = np.zeros((5, 6), int)
    one[2, 3] = 6
    g1, _ = write_both(tmp_path, one, table, p, pitch, name="axis")
    (poly,) = polys_on(g1, layer=1)
    (x0, y0), (x1, y1) = poly.bounding_box()
    assert abs((x0 + x1) / 2) < 1e-9 and abs((y0 + y1) / 2) < 1e-9
    assert ox < 0 and oy < 0


# ---------------------------------------------------------------------------- reader errors
def test_reader_errors_name_file_and_problem(tmp_path: Path) -> None:
    p = load_process("fused-silica-etch4")
    bad = tmp_path / "corrupt.gds"
    bad.write_bytes(b"\x00\x06\x00\x02\x02X" + b"junk" * 5)
    with pytest.raises(UserError) as e:
        read_gds_levels(bad, process=p, shape=(4, 4), pitch=2e-6)
    assert "corrupt.gds" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="not found"):
        read_gds_levels(tmp_path / "missing.gds", process=p, shape=(4, 4), pitch=2e-6)
    # a file for another layer map: none of the expected layers
    other = process_from_dict({
        "name": "other", "kind": "print", "wavelength": "633 nm", "material": {"n": 1.457},
        "pitch": {"min": "1 um"}, "rules": {"min_feature": "1 um"}, "print": {"base": "1 mm"},
        "gds": {"layers": [[40, 0], [41, 0], [42, 0], [43, 0]]},
    })
    lv = RNG.integers(0, 4, (6, 6))
    gds, _ = write_both(tmp_path, lv, other.level_table(4), other, 2e-6, name="other")
    with pytest.raises(UserError) as e:
        read_gds_levels(gds, process=p, shape=(6, 6), pitch=2e-6)
    msg = str(e.value)
    assert "other.gds" in msg and "1/0, 2/0" in msg and "40/0" in msg
    # wrong shape: polygons outside the pixel area
    gds, _ = write_both(tmp_path, RNG.integers(0, 4, (8, 8)), p.level_table(), p, 2e-6, "big")
    with pytest.raises(UserError, match="outside"):
        read_gds_levels(gds, process=p, shape=(4, 4), pitch=2e-6)
    # a per-level layout missing a level layer
    q = load_process("thz-printed")
    lv = RNG.integers(0, 3, (5, 5))
    lib = build_library([(1, lv, q.level_table(3))], process=q, pitch=400e-6,
                        wavelength=q.wavelength)
    lib.top_level()[0].filter([(2, 0)])  # drop level 1's layer
    gds = write_gds(lib, tmp_path / "three.gds")
    with pytest.raises(UserError) as e:
        read_gds_levels(gds, process=q, shape=(5, 5), pitch=400e-6, n_levels=3)
    assert f"{(lv == 1).sum()} pixels lie on none of the level layers" in str(e.value)


def test_pitch_off_the_database_grid_is_refused() -> None:
    p = load_process("ip-dip-2pp")
    with pytest.raises(UserError, match="database units"):
        build_library([(1, np.zeros((2, 2), int), p.level_table(2))], process=p,
                      pitch=1.0004e-6, wavelength=p.wavelength)


# ---------------------------------------------------------------------------- DRC
def test_drc_primitives_find_planted_violations() -> None:
    lv = np.zeros((8, 9), int)
    lv[3, 4] = 2  # isolated pixel
    lv[6, 1] = lv[7, 2] = 1  # diagonal neck between (6,1) and (7,2): corner at row 7, col 2
    r, c = isolated_pixels(lv)
    assert (3, 4) in set(zip(r.tolist(), c.tolist(), strict=True))
    r, c, lab = diagonal_necks(lv)
    assert list(zip(r.tolist(), c.tolist(), lab.tolist(), strict=True)) == [(7, 2, 1), (7, 2, 0)]
    lv2 = np.zeros((6, 10), int)
    lv2[:, 4:6] = 1  # a 2-pixel wide stripe: too narrow for 3 px
    r, c, w = narrow_runs(lv2, 3)
    assert set(zip(r.tolist(), c.tolist(), w.tolist(), strict=True)) == {
        (i, 4, 2) for i in range(6)}


def test_drc_report_for_etch_process() -> None:
    base = load_process("fused-silica-etch4")
    p = process_from_dict({
        "name": "etch2um", "kind": "etch", "wavelength": "633 nm", "material": {"n": 1.457},
        "pitch": {"min": "1 um"}, "rules": {"min_feature": "2 um", "max_aspect_ratio": 0.5},
        "etch": {"masks": 2},
    })
    lv = np.full((10, 10), 3)  # unetched top
    lv[2, 2] = 0  # isolated, narrow, deep (1.04 um in 1 um): aspect ratio 1.04 > 0.5
    lv[6, 6] = lv[7, 7] = 1  # diagonal neck in mask 1 (code 2)
    rep = check_layer(lv, process=p, pitch=1e-6, level_table=p.level_table())
    got = {v.rule: v for v in rep.violations}
    assert not rep.passed
    assert got["isolated_pixels"].count == 3
    assert got["diagonal_necks"].count == 1
    (neck,) = got["diagonal_necks"].examples
    assert (neck["row"], neck["col"]) == (7, 7)
    # the corner of pixel (7, 7); the origin is at -5.5 um (pixel (5, 5) centred on 0)
    assert (neck["x_um"], neck["y_um"]) == pytest.approx((1.5, 1.5))
    assert got["min_feature"].count > 0
    first = got["min_feature"].examples[0]
    assert (first["row"], first["col"]) == (2, 2)
    assert (first["x_um"], first["y_um"]) == pytest.approx((-3.0, -3.0))  # (2 - 5) pixels
    ar = {(e["row"], e["col"]) for e in got["aspect_ratio"].examples}
    assert (2, 2) in ar
    # a flat map passes everything
    assert check_layer(np.full((5, 5), 3), process=base, pitch=2e-6,
                       level_table=base.level_table()).passed


def test_drc_pillars_min_feature_and_aspect_ratio() -> None:
    p = load_process("tio2-pillars")
    lv = np.zeros((4, 4), int)
    lv[1, 2] = 7  # 247 nm: gap 78 nm ok
    assert check_layer(lv, process=p, pitch=p.spec.lattice,
                       level_table=p.level_table()).passed
    strict = process_from_dict({
        "name": "tight", "kind": "pillars", "wavelength": "532 nm", "material": {"n": 2.4},
        "rules": {"min_feature": "90 nm", "max_aspect_ratio": 7},
        "pillars": {"height": "600 nm", "lattice": "325 nm",
                    "atoms": [{"size": "0 nm", "t": [1, 0]}, {"size": "81 nm", "t": [0, 0.9]},
                              {"size": "247 nm", "t": [-0.9, 0]}]},
    })
    lv = np.array([[0, 1], [2, 0]])
    rep = check_layer(lv, process=strict, pitch=325e-9, level_table=strict.level_table())
    got = {v.rule: v for v in rep.violations}
    assert got["min_feature"].count == 2  # 81 nm pillar and the 78 nm gap of the 247 nm one
    assert got["aspect_ratio"].count == 1  # 600/81 = 7.4 > 7
    assert (got["aspect_ratio"].examples[0]["row"], got["aspect_ratio"].examples[0]["col"]) == (
        0, 1)

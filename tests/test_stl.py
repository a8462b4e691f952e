"""STL export: watertight height-map solids, read back from the written file.

Every solid property is asserted on the mesh that ``trimesh.load`` rebuilds from the written
STL file (float32 coordinates, vertices merged by position), not on the in-memory mesh.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.ndimage import gaussian_filter

from optodesign.errors import UserError
from optodesign.export.stl import (
    STL_HEADER,
    Z_SNAP_MM,
    heightmap_mesh,
    naive_heightmap_mesh,
    spacer_frame,
    write_stl,
)
from optodesign.grid import Grid
from optodesign.verify.stl_reader import read_stl_heights

PITCH = 4e-4  # 0.4 mm, a THz-printed D2NN
BASE = 1e-3  # 1 mm plate
STEP = 1.2e-4  # height per level


def _reload(mesh: trimesh.Trimesh, path: Path) -> trimesh.Trimesh:
    write_stl(mesh, path)
    loaded = trimesh.load(path)
    assert isinstance(loaded, trimesh.Trimesh)
    return loaded


def _assert_solid(
    heights: np.ndarray,
    path: Path,
    *,
    pitch: float = PITCH,
    base: float = BASE,
    offset: tuple[float, float] = (0.0, 0.0),
) -> trimesh.Trimesh:
    """Write, reload, and check the solid: closed, oriented, genus 0, volume, bounding box."""
    mesh = _reload(heightmap_mesh(heights, pitch=pitch, base=base, offset=offset), path)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.euler_number == 2
    assert mesh.is_volume
    ny, nx = heights.shape
    expected_volume = (pitch * 1e3) ** 2 * np.sum((base + heights) * 1e3)  # mm^3
    assert mesh.volume == pytest.approx(expected_volume, rel=1e-3)
    # pixel edges: the centre of pixel (ny // 2, nx // 2) at offset (optodesign.grid.Grid)
    lo = np.array([(-(nx // 2) - 0.5) * pitch + offset[0], (-(ny // 2) - 0.5) * pitch + offset[1],
                   0.0]) * 1e3
    hi = np.array([(nx - nx // 2 - 0.5) * pitch + offset[0],
                   (ny - ny // 2 - 0.5) * pitch + offset[1], base + heights.max()]) * 1e3
    scale = np.abs(np.r_[lo, hi]).max()
    # exact up to float32 coordinates and the 0.1 nm snapping of top heights (Z_SNAP_MM)
    np.testing.assert_allclose(mesh.bounds, [lo, hi], rtol=0, atol=2e-7 * scale + Z_SNAP_MM / 2)
    return mesh


def _smooth_levels(n: int, *, sigma: float, seed: int = 0, n_levels: int = 4) -> np.ndarray:
    """A trained-like map: wrapped, quantized low-pass noise (smooth level regions)."""
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    phase = (noise / noise.std() * 0.8) % 1.0
    return np.floor(phase * n_levels).astype(np.int64)


def _lens_levels(n: int, *, n_levels: int = 4) -> np.ndarray:
    """A quantized Fresnel lens phase: concentric level rings."""
    y, x = Grid((n, n), 1.0).meshgrid()
    phase = ((x**2 + y**2) / (6.0 * n)) % 1.0
    return np.floor(phase * n_levels).astype(np.int64)


# ----------------------------------------------------------------------------- solids


def test_single_step(tmp_path: Path) -> None:
    h = np.array([[0.0, STEP]])
    mesh = _assert_solid(h, tmp_path / "step.stl")
    # plate (2 x 1 pixels) plus one raised pixel
    assert mesh.volume == pytest.approx(0.4 * 0.4 * (2 * 1.0 + 0.12), rel=1e-6)


def test_flat_plate_is_a_box(tmp_path: Path) -> None:
    mesh = _assert_solid(np.zeros((5, 7)), tmp_path / "flat.stl")
    # top and bottom are each two triangles, the four sides are one wall each
    assert len(mesh.faces) == 12


def test_checkerboard_every_corner_pinched(tmp_path: Path) -> None:
    h = (np.indices((9, 8)).sum(axis=0) % 2) * STEP
    mesh = _assert_solid(h, tmp_path / "checker.stl")
    # the pinch slivers cost far less volume than the 1e-3 tolerance
    expected = 0.4**2 * np.sum(1.0 + h * 1e3)
    assert abs(mesh.volume / expected - 1) < 1e-4


def test_pinch_with_four_different_heights(tmp_path: Path) -> None:
    # diagonal pixels 3 and 2 above 0 and 1 around the centre corner
    h = np.array([[0.0, 3.0], [2.0, 1.0]]) * STEP
    _assert_solid(h, tmp_path / "pinch4.stl")
    h = np.array([[1.0, 3.0], [2.0, 0.0]]) * STEP
    _assert_solid(h, tmp_path / "pinch4b.stl")


def test_all_zero_heights_are_the_plate(tmp_path: Path) -> None:
    mesh = _assert_solid(np.zeros((3, 3)), tmp_path / "zero.stl")
    assert mesh.bounds[1, 2] == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    levels=hnp.arrays(
        np.int64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7),
        elements=st.integers(0, 3),
    ),
    offset=st.tuples(st.floats(-5e-3, 5e-3), st.floats(-5e-3, 5e-3)),
)
def test_random_four_level_maps(
    levels: np.ndarray, offset: tuple[float, float], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("rand") / "layer.stl"
    h = levels * STEP
    _assert_solid(h, path, offset=offset)
    got = read_stl_heights(path, shape=h.shape, pitch=PITCH, base=BASE, offset=offset)
    np.testing.assert_allclose(got, h, rtol=0, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(
    heights=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 6)),
        elements=st.floats(0.0, 2e-6, allow_subnormal=False),
    )
)
def test_arbitrary_heights_at_visible_scale(
    heights: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # a two-photon-printed element: 400 nm pixels, 1 um plate, continuous heights (tiny
    # differences collapse to one level instead of breaking the solid)
    path = tmp_path_factory.mktemp("vis") / "layer.stl"
    _assert_solid(heights, path, pitch=4e-7, base=1e-6)
    got = read_stl_heights(path, shape=heights.shape, pitch=4e-7, base=1e-6)
    np.testing.assert_allclose(got, heights, rtol=0, atol=1e-9)


def test_smooth_trained_like_map(tmp_path: Path) -> None:
    h = _smooth_levels(48, sigma=4.0) * STEP
    _assert_solid(h, tmp_path / "smooth.stl", offset=(2e-3, -1e-3))


def test_lens_map(tmp_path: Path) -> None:
    _assert_solid(_lens_levels(40) * STEP, tmp_path / "lens.stl")


# ----------------------------------------------------------------------------- geometry


def test_axis_convention_and_units(tmp_path: Path) -> None:
    """Row i -> +y, column j -> +x, pixel centres on Grid.x()/y() + offset, millimetres."""
    grid = Grid((3, 4), PITCH)
    offset = (1e-3, -2e-3)
    h = np.zeros(grid.shape)
    h[0, 2] = STEP  # one raised pixel: first row (lowest y), third column
    mesh = _reload(heightmap_mesh(h, pitch=PITCH, base=BASE, offset=offset), tmp_path / "a.stl")
    top = mesh.vertices[np.isclose(mesh.vertices[:, 2], (BASE + STEP) * 1e3)]
    xc = (grid.x()[2] + offset[0]) * 1e3
    yc = (grid.y()[0] + offset[1]) * 1e3
    np.testing.assert_allclose(
        np.sort(np.unique(top[:, 0].round(6))), [xc - 0.2, xc + 0.2], atol=1e-5
    )
    np.testing.assert_allclose(
        np.sort(np.unique(top[:, 1].round(6))), [yc - 0.2, yc + 0.2], atol=1e-5
    )


def test_round_trip_smooth_map_exact(tmp_path: Path) -> None:
    levels = _smooth_levels(64, sigma=5.0, seed=3)
    h = levels * STEP
    path = tmp_path / "rt.stl"
    write_stl(heightmap_mesh(h, pitch=PITCH, base=BASE, offset=(3e-4, 0.0)), path)
    got = read_stl_heights(path, shape=h.shape, pitch=PITCH, base=BASE, offset=(3e-4, 0.0))
    np.testing.assert_allclose(got, h, rtol=0, atol=1e-9)
    assert np.array_equal(np.rint(got / STEP).astype(np.int64), levels)
    # base read from the file: the lowest pixel is taken as height 0
    got = read_stl_heights(path, shape=h.shape, pitch=PITCH, offset=(3e-4, 0.0))
    np.testing.assert_allclose(got, h - h.min(), rtol=0, atol=1e-9)


def test_merged_mesh_has_3x_fewer_triangles_than_naive() -> None:
    # same statistics as the 1000 x 1000 benchmark map (features ~20 pixels, 4 levels)
    h = _smooth_levels(256, sigma=20.0, seed=1) * STEP
    ours = len(heightmap_mesh(h, pitch=PITCH, base=BASE).faces)
    naive = naive_heightmap_mesh(h, pitch=PITCH, base=BASE)
    walls = np.count_nonzero(np.diff(h, axis=0)) + np.count_nonzero(np.diff(h, axis=1))
    assert len(naive.faces) == 2 * h.size + 2 * walls + 2 * 2 * sum(h.shape) + 2
    assert len(naive.faces) >= 3 * ours


def test_naive_mesh_is_not_watertight(tmp_path: Path) -> None:
    # with two heights no T-junctions arise except pinches; a stripe pattern has none
    h = np.zeros((4, 6))
    h[:, 2:4] = STEP
    mesh = _reload(naive_heightmap_mesh(h, pitch=PITCH, base=BASE), tmp_path / "naive.stl")
    # the unmerged bottom (one quad against per-pixel rim walls) leaves T-junctions
    assert not mesh.is_watertight
    assert mesh.bounds[1, 2] == pytest.approx((BASE + STEP) * 1e3)


# ----------------------------------------------------------------------------- files


def test_writing_is_deterministic(tmp_path: Path) -> None:
    h = _smooth_levels(24, sigma=3.0, seed=7) * STEP
    a, b = tmp_path / "a.stl", tmp_path / "b.stl"
    write_stl(heightmap_mesh(h, pitch=PITCH, base=BASE), a)
    write_stl(heightmap_mesh(h, pitch=PITCH, base=BASE), b)
    data = a.read_bytes()
    assert data == b.read_bytes()
    assert data[:80] == STL_HEADER.ljust(80, b"\0")
    n = int(np.frombuffer(data[80:84], "<u4")[0])
    assert len(data) == 84 + 50 * n


def test_unwritable_output_clear_error_no_partial_file(tmp_path: Path) -> None:
    mesh = heightmap_mesh(np.zeros((2, 2)), pitch=PITCH, base=BASE)
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write STL"):
        write_stl(mesh, blocker / "layer.stl")
    target = tmp_path / "is_a_dir.stl"
    target.mkdir()
    with pytest.raises(UserError, match="cannot write STL"):
        write_stl(mesh, target)
    assert sorted(os.listdir(tmp_path)) == ["is_a_dir.stl", "not_a_dir"]
    assert os.listdir(target) == []


def test_corrupt_stl_gives_one_line_user_error(tmp_path: Path) -> None:
    good = tmp_path / "good.stl"
    write_stl(heightmap_mesh(np.eye(3) * STEP, pitch=PITCH, base=BASE), good)
    data = good.read_bytes()
    cases = {
        "truncated.stl": data[:-7],
        "garbage.stl": b"\x00\x01 this is not a mesh",
        "empty.stl": b"",
        "ascii.stl": b"solid x\n facet normal 0 0 1\n  outer loop\n   vertex 0 0\n",
    }
    for name, payload in cases.items():
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(UserError) as err:
            read_stl_heights(path, shape=(3, 3), pitch=PITCH)
        msg = str(err.value)
        assert "\n" not in msg and name in msg
    with pytest.raises(UserError, match="not found"):
        read_stl_heights(tmp_path / "missing.stl", shape=(3, 3), pitch=PITCH)


def test_open_mesh_is_rejected(tmp_path: Path) -> None:
    mesh = heightmap_mesh(np.eye(3) * STEP, pitch=PITCH, base=BASE)
    holed = trimesh.Trimesh(mesh.vertices, mesh.faces[1:], process=False)
    path = tmp_path / "holed.stl"
    write_stl(holed, path)
    with pytest.raises(UserError, match="not watertight"):
        read_stl_heights(path, shape=(3, 3), pitch=PITCH)


def test_reader_rejects_wrong_grid(tmp_path: Path) -> None:
    path = tmp_path / "l.stl"
    write_stl(heightmap_mesh(np.zeros((4, 5)), pitch=PITCH, base=BASE), path)
    with pytest.raises(UserError, match="does not match"):
        read_stl_heights(path, shape=(5, 4), pitch=PITCH)
    with pytest.raises(UserError, match="does not match"):
        read_stl_heights(path, shape=(4, 5), pitch=2 * PITCH)


def test_ascii_stl_is_read(tmp_path: Path) -> None:
    h = np.array([[0.0, 2.0], [1.0, 3.0]]) * STEP
    mesh = heightmap_mesh(h, pitch=PITCH, base=BASE)
    path = tmp_path / "ascii.stl"
    path.write_text(trimesh.exchange.stl.export_stl_ascii(mesh))
    got = read_stl_heights(path, shape=h.shape, pitch=PITCH, base=BASE)
    np.testing.assert_allclose(got, h, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"heights": -np.ones((2, 2))}, "heights"),
        ({"heights": np.full((2, 2), np.nan)}, "heights"),
        ({"heights": np.zeros(3)}, "heights"),
        ({"pitch": 0.0}, "pitch"),
        ({"base": 0.0}, "base"),
        ({"base": -1e-3}, "base"),
        ({"offset": (0.0,)}, "offset"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    args = {"heights": np.zeros((2, 2)), "pitch": PITCH, "base": BASE} | kwargs
    with pytest.raises(UserError, match=f"^{field}:"):
        heightmap_mesh(**args)


# ----------------------------------------------------------------------------- spacer


def test_spacer_frame(tmp_path: Path) -> None:
    mesh = _reload(
        spacer_frame(outer=(0.05, 0.04), inner=(0.03, 0.02), height=0.01), tmp_path / "spacer.stl"
    )
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.is_volume
    assert mesh.euler_number == 0  # a ring: genus 1
    assert mesh.volume == pytest.approx((50 * 40 - 30 * 20) * 10, rel=1e-6)
    np.testing.assert_allclose(mesh.bounds, [[-25, -20, 0], [25, 20, 10]], atol=1e-5)


def test_spacer_frame_rejects_aperture_larger_than_frame() -> None:
    with pytest.raises(UserError, match="^inner:"):
        spacer_frame(outer=(0.05, 0.04), inner=(0.05, 0.02), height=0.01)
    with pytest.raises(UserError, match="^height:"):
        spacer_frame(outer=(0.05, 0.04), inner=(0.03, 0.02), height=0.0)


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize("units, per_m", [("mm", 1e3), ("um", 1e6)])
def test_stl_units_set_the_bounding_box_and_read_back(tmp_path: Path, units: str,
                                                      per_m: float) -> None:
    pitch, base = 1e-6, 2e-6  # a two-photon-printed part: 1 um pixels on a 2 um base
    h = np.random.default_rng(4).integers(0, 4, (7, 10)) * 0.375e-6
    mesh = _reload(heightmap_mesh(h, pitch=pitch, base=base, units=units),
                   tmp_path / f"{units}.stl")
    assert mesh.is_watertight and mesh.is_volume
    # the footprint is 10 x 7 pixels and the part base + max(h) tall, in the stated unit
    np.testing.assert_allclose(mesh.extents, [10 * pitch * per_m, 7 * pitch * per_m,
                                              (base + h.max()) * per_m], rtol=1e-6)
    assert (tmp_path / f"{units}.stl").read_bytes()[:80].rstrip(b"\0").endswith(
        f"units: {units}".encode())
    back = read_stl_heights(tmp_path / f"{units}.stl", shape=h.shape, pitch=pitch, base=base)
    np.testing.assert_allclose(back, h, atol=1e-12)


def test_export_records_stl_units_and_verify_reads_them(tmp_path: Path) -> None:
    from optodesign.design import Design
    from optodesign.export.fab import export_design
    from optodesign.export.manifest import load_manifest
    from optodesign.process import load_process
    from optodesign.tasks import HologramSetup
    from optodesign.verify.readback import read_fab

    p = load_process("ip-dip-2pp")
    lv = np.random.default_rng(5).integers(0, 4, (1, 9, 12))
    d = Design(setup=HologramSetup(), wavelength=p.wavelength, pitch=1e-6, levels=lv,
               level_tables=p.level_table(4), distances=(0.0, 50e-6),
               target=np.ones((9, 12)))
    export_design(d, p, tmp_path / "fab", formats=("stl",), plot=False, stl_units="um")
    assert load_manifest(tmp_path / "fab").units["stl"] == "um"
    mesh = trimesh.load(tmp_path / "fab" / "layer1.stl")
    assert mesh.extents[0] == pytest.approx(12.0, rel=1e-6)  # 12 pixels of 1 um, in um
    fab = read_fab(tmp_path / "fab", source="stl")
    assert fab.trained_levels_equal and np.array_equal(fab.levels, lv)


def test_stl_units_default_to_the_process_and_the_option_overrides(tmp_path: Path) -> None:
    """ip-dip-2pp says ``[print] stl_units = "um"`` (two-photon software takes um); a process
    that says nothing writes mm; ``stl_units=`` (the CLI's --stl-units) overrides either."""
    from optodesign.design import Design
    from optodesign.export.fab import export_design
    from optodesign.export.manifest import load_manifest
    from optodesign.process import load_process
    from optodesign.tasks import HologramSetup
    from optodesign.verify.stl_reader import stl_units

    for name, override, want in (("ip-dip-2pp", None, "um"), ("ip-dip-2pp", "mm", "mm"),
                                 ("thz-printed", None, "mm"), ("thz-printed", "um", "um")):
        p = load_process(name)
        pitch = 1e-6 if name == "ip-dip-2pp" else 400e-6
        lv = np.random.default_rng(5).integers(0, 4, (1, 6, 8))
        d = Design(setup=HologramSetup(), wavelength=p.wavelength, pitch=pitch, levels=lv,
                   level_tables=p.level_table(4), distances=(0.0, 50 * pitch),
                   target=np.ones((6, 8)))
        out = tmp_path / f"{name}-{override}"
        export_design(d, p, out, formats=("stl",), plot=False, stl_units=override)
        assert load_manifest(out).units["stl"] == want
        assert stl_units(out / "layer1.stl") == want
        extent = trimesh.load(out / "layer1.stl").extents[0]
        assert extent == pytest.approx(8 * pitch * (1e6 if want == "um" else 1e3), rel=1e-6)


def test_a_process_with_bad_stl_units_is_one_line(tmp_path: Path) -> None:
    from optodesign.errors import ConfigError
    from optodesign.process import load_process

    src = (Path(__file__).parents[1] / "layouts" / "ip-dip-2pp.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace('stl_units = "um"', 'stl_units = "inch"'))
    with pytest.raises(ConfigError, match="stl_units.*mm, um"):
        load_process(str(bad))


def test_unknown_stl_units_are_refused() -> None:
    with pytest.raises(UserError, match="^stl units: must be one of mm, um"):
        heightmap_mesh(np.zeros((2, 2)), pitch=PITCH, base=BASE, units="inch")


# ----------------------------------------------------------------------------- holders


def _inside(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Points strictly inside a closed mesh, by the generalised winding number (solid angles
    of the triangles; no ray casting, no optional dependency)."""
    tri = mesh.triangles[None] - points[:, None, None, :]  # (P, F, 3, 3)
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
    num = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = (la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc
           + np.einsum("pfi,pfi->pf", b, c) * la + np.einsum("pfi,pfi->pf", c, a) * lb)
    winding = 2 * np.arctan2(num, den).sum(-1) / (4 * np.pi)
    return np.abs(winding) > 0.5


def test_plate_holders_hold_the_plates_at_the_design_distances(tmp_path: Path) -> None:
    """Assemble what export --spacer writes, as a person would: plate 1 on the table, holder
    1-2 over it, plate 2 on its ledge, holder 2-3 on holder 1-2, plate 3 on its ledge. Every
    plate rests on a ledge (the opening there is smaller than the plate), no two solids
    overlap, and plate bases are the design distances apart."""
    from optodesign.design import Design
    from optodesign.export.fab import export_design
    from optodesign.export.manifest import load_manifest
    from optodesign.process import load_process
    from optodesign.tasks import HologramSetup

    p = load_process("thz-printed")
    ny, nx = 6, 9
    lv = np.random.default_rng(6).integers(0, 4, (3, ny, nx))
    dist = (0.0, 8e-3, 11e-3, 5e-3)
    d = Design(setup=HologramSetup(), wavelength=p.wavelength, pitch=4e-4, levels=lv,
               level_tables=p.level_table(4), distances=dist, target=np.ones((ny, nx)))
    fab = tmp_path / "fab"
    export_design(d, p, fab, formats=("stl",), plot=False, spacer=True)
    m = load_manifest(fab)
    assert [s.between for s in m.spacers] == [(1, 2), (2, 3)]
    plates = [trimesh.load(fab / f"layer{k}.stl") for k in (1, 2, 3)]
    holders = [trimesh.load(fab / f"spacer{k}-{k + 1}.stl") for k in (1, 2)]
    for h in holders:
        assert h.is_watertight and h.is_volume and h.euler_number == 0

    # stack them: each holder stands on the one below; each plate on the top of its holder
    z_plate, z_holder = [0.0], [0.0]
    for k, h in enumerate(holders):
        top = z_holder[k] + h.bounds[1, 2]
        z_plate.append(top)
        z_holder.append(top)
    plates = [q.copy().apply_translation((0, 0, z)) for q, z in zip(plates, z_plate)]
    holders = [h.copy().apply_translation((0, 0, z)) for h, z in zip(holders, z_holder)]
    # base bottom to base bottom = the design distances (mm)
    np.testing.assert_allclose(np.diff(z_plate), np.array(dist[1:3]) * 1e3, rtol=1e-6)

    for k, h in enumerate(holders):
        plate_above = plates[k + 1]
        top = h.bounds[1, 2]
        # the opening at the top (the ledge) is smaller than the plate resting there ...
        ring = h.vertices[np.isclose(h.vertices[:, 2], top)]
        opening = np.abs(ring[:, :2] - ring[:, :2].mean(0)).min(0)
        plate_half = plate_above.extents[:2] / 2
        assert np.all(opening < plate_half)
        # ... and the plate's bottom face touches it
        assert plate_above.bounds[0, 2] == pytest.approx(top, abs=1e-6)
        # the pocket at the bottom is wider than the plate it surrounds
        low = h.vertices[np.isclose(h.vertices[:, 2], h.bounds[0, 2])]
        pocket = np.abs(low[:, :2] - low[:, :2].mean(0)).min(0)
        assert np.all(pocket > plates[k].extents[:2] / 2)

    # no overlap: sample every plate's volume and every holder's volume, test against all
    # the other solids
    solids = plates + holders
    rng = np.random.default_rng(0)
    for i, s in enumerate(solids):
        pts = rng.uniform(s.bounds[0], s.bounds[1], (4000, 3))
        pts = pts[_inside(s, pts)][:400]
        assert len(pts) > 50
        for j, other in enumerate(solids):
            if j != i:
                assert not _inside(other, pts).any(), (i, j)

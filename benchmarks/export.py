"""Export benchmark: a 1000×1000 four-level layer to GDSII / OASIS / STL, and back.

Maps (all 1000×1000, 4 levels):
    random   i.i.d. levels (the worst case: nothing to merge)
    smooth   Gaussian-smoothed noise (σ = 8 px), one standard deviation = π of phase, wrapped
             and quantized: a trained-D2NN-like layer
    busy     the same noise with one standard deviation = 2π (twice the level boundaries)
    lens     a quantized Fresnel lens phase (concentric zones)

Rows, per map and process (``thz-printed``: one GDS layer per level; ``fused-silica-etch4``:
two binary masks): time to build + write the GDS (ours: merged rectangles, equal sizes
sharing a repetition), its size, the OASIS size, the read-back time
(:func:`optodesign.verify.gds_reader.read_gds_levels`, checked identical), and the naive
baseline (gdstk, one rectangle per pixel on the level's layer, same units). STL rows compare
:func:`optodesign.export.stl.heightmap_mesh` with ``naive_heightmap_mesh`` (when present).

Timings are medians of ``--repeats`` runs (the naive GDS baseline runs once: it takes
seconds). Run: ``python benchmarks/export.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import save_table  # noqa: E402

from optodesign.export.gds import build_library, write_gds, write_oas  # noqa: E402
from optodesign.process import load_process  # noqa: E402
from optodesign.verify.gds_reader import read_gds_levels  # noqa: E402

N = 1000


def maps(n: int) -> dict[str, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    out = {"random": rng.integers(0, 4, (n, n))}
    s = gaussian_filter(rng.standard_normal((n, n)), 8, mode="wrap")
    for name, scale in (("smooth", np.pi), ("busy", 2 * np.pi)):
        wrapped = np.mod(s / s.std() * scale, 2 * np.pi)
        out[name] = np.minimum((wrapped / (np.pi / 2)).astype(int), 3)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    # f = 50 mm at 633 nm with 1 um pixels: phase -k r^2 / 2f, wrapped, 4 levels
    r2 = (xx**2 + yy**2) * (1e-6) ** 2
    phase = np.mod(-np.pi * r2 / (633e-9 * 0.05), 2 * np.pi)
    out["lens"] = np.minimum((phase / (np.pi / 2)).astype(int), 3)
    return out


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def naive_gds(levels: np.ndarray, pitch_um: float, path: Path) -> None:
    import gdstk

    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    cell = lib.new_cell("NAIVE")
    ny, nx = levels.shape
    x0, y0 = -nx * pitch_um / 2, -ny * pitch_um / 2
    for r in range(ny):
        y = y0 + r * pitch_um
        row = levels[r]
        for c in range(nx):
            x = x0 + c * pitch_um
            cell.add(gdstk.rectangle((x, y), (x + pitch_um, y + pitch_um),
                                     layer=int(row[c]) + 1))
    lib.write_gds(str(path), timestamp=datetime.datetime(2000, 1, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N, help="map size (n x n)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-naive", action="store_true", help="skip the slow naive baselines")
    args = ap.parse_args()
    n, reps = args.n, args.repeats
    rows: list[list[object]] = []
    header = ["map", "process", "rects", "gds s", "gds MB", "oas s", "oas MB", "read s",
              "naive s", "naive MB"]
    stl_rows: list[list[object]] = []
    have_stl = importlib.util.find_spec("optodesign.export.stl") is not None
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for mname, lv in maps(n).items():
            for pname, pitch in (("thz-printed", 400e-6), ("fused-silica-etch4", 1e-6)):
                p = load_process(pname)
                table = p.level_table(4)

                def build_write(p=p, lv=lv, pitch=pitch, table=table) -> object:
                    lib = build_library([(1, lv, table)], process=p, pitch=pitch,
                                        wavelength=p.wavelength)
                    write_gds(lib, tmp / "ours.gds")
                    return lib

                t_gds, lib = median_time(build_write, reps)
                t_oas, _ = median_time(lambda lib=lib: write_oas(lib, tmp / "ours.oas"), reps)
                t_read, back = median_time(
                    lambda p=p, pitch=pitch, shape=lv.shape: read_gds_levels(
                        tmp / "ours.gds", process=p, shape=shape, pitch=pitch, n_levels=4),
                    reps)
                assert np.array_equal(back[0], lv), "read-back differs"
                n_rects = sum(max(1, q.repetition.size)
                              for c in lib.top_level() for q in c.polygons)
                t_naive = mb_naive = None
                if not args.no_naive and pname == "thz-printed":
                    t = time.perf_counter()
                    naive_gds(lv, pitch / 1e-6, tmp / "naive.gds")
                    t_naive = time.perf_counter() - t
                    mb_naive = (tmp / "naive.gds").stat().st_size / 1e6
                gds_mb = (tmp / "ours.gds").stat().st_size / 1e6
                oas_mb = (tmp / "ours.oas").stat().st_size / 1e6
                rows.append([mname, pname, n_rects, t_gds, gds_mb, t_oas, oas_mb, t_read,
                             t_naive, mb_naive])
            if have_stl and mname != "busy":
                from optodesign.export import stl

                p = load_process("thz-printed")
                heights = p.heights(lv, np.angle(p.level_table(4)))
                t_stl, mesh = median_time(
                    lambda h=heights: stl.heightmap_mesh(h, pitch=400e-6, base=0.5e-3), reps)
                t_w, _ = median_time(lambda m=mesh: stl.write_stl(m, tmp / "ours.stl"), 1)
                row: list[object] = [mname, len(mesh.faces), t_stl + t_w,
                                     (tmp / "ours.stl").stat().st_size / 1e6, None, None, None]
                naive = getattr(stl, "naive_heightmap_mesh", None)
                if naive is not None and not args.no_naive:
                    t_nv, nmesh = median_time(
                        lambda h=heights, f=naive: f(h, pitch=400e-6, base=0.5e-3), 1)
                    row[4:7] = [len(nmesh.faces), t_nv, (84 + 50 * len(nmesh.faces)) / 1e6]
                    row.append(len(nmesh.faces) / len(mesh.faces))
                else:
                    row.append(None)
                stl_rows.append(row)
    notes = [
        "gds s: build + write the GDSII (median); oas s: write the OASIS of the same library;",
        "read s: read_gds_levels of the GDSII back to the level map (checked identical).",
        "naive: gdstk, one rectangle per pixel, written once (thz-printed rows only).",
        "rects: rectangles after merging (before repetitions are expanded by the GDSII writer).",
        "targets: 1000x1000 four-level trained-like layer: GDS < 2 s and <= 10 MB, OASIS <= 1 MB;",
        "STL >= 3x fewer triangles than a naive height map mesh, < 5 s.",
    ]
    if stl_rows:
        from _machine import format_table

        stl_header = ["map", "triangles", "stl s", "stl MB", "naive tris", "naive s",
                      "naive MB", "tri ratio"]
        notes += ["", "STL (thz-printed heights, 400 um pixels, 0.5 mm base):",
                  format_table(stl_rows, stl_header),
                  "stl s: mesh + write (median); naive MB: binary STL size for its triangles."]
    save_table("export", rows, header, {"n": n, "levels": 4, "repeats": reps}, notes=notes)


if __name__ == "__main__":
    main()

"""STL benchmark: a 1000×1000 four-level layer as a watertight solid, ours against naive.

Maps (1000×1000, 4 levels, THz-printed D2NN geometry: 0.4 mm pixels, 1 mm plate, 0.27 mm per
level, i.e. 2π of phase at 0.75 mm wavelength in a n = 1.7 resin):
    random   i.i.d. levels (the worst case: nothing to merge, every corner busy)
    smooth   Gaussian-smoothed noise (σ = 20 px), 0.8 wraps per standard deviation,
             quantized: a trained-D2NN-like layer
    lens     a quantized Fresnel lens phase (concentric zones)

Per map and mesher: triangles, time to build the mesh and to write the binary STL (medians of
``--repeats``; wall clock and CPU time of this process, since other jobs may share the
cores), file size. For ours also: the written file reloaded with ``trimesh.load`` (vertices
merged by position) is checked watertight / winding-consistent / Euler 2 / volume error, and
the read-back time of :func:`optodesign.verify.stl_reader.read_stl_heights` (checked equal to
the heights within 1 nm). The naive mesh is a straightforward converter's output (two
triangles per pixel top, two per wall pixel edge); it is not watertight.

Run: ``python benchmarks/export_stl.py [--n 1000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import save_table  # noqa: E402

from optodesign.export.stl import heightmap_mesh, naive_heightmap_mesh, write_stl  # noqa: E402
from optodesign.grid import Grid  # noqa: E402
from optodesign.verify.stl_reader import read_stl_heights  # noqa: E402

PITCH = 400e-6
BASE = 1e-3
STEP = 0.75e-3 / 0.7 / 4  # one level: λ / (n - 1) / L


def make_maps(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.standard_normal((n, n)), 20.0, mode="wrap")
    smooth = np.floor(((noise / noise.std() * 0.8) % 1.0) * 4)
    y, x = Grid((n, n), 1.0).meshgrid()
    lens = np.floor((((x**2 + y**2) / (40.0 * n)) % 1.0) * 4)
    return {
        "random": rng.integers(0, 4, (n, n)).astype(np.float64),
        "smooth": smooth,
        "lens": lens,
    }


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of ``repeats`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        out = None
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-reload", action="store_true", help="skip the trimesh reload check")
    args = ap.parse_args()

    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name, levels in make_maps(args.n).items():
            h = levels * STEP
            for mesher in ("ours", "naive"):
                if mesher == "ours":
                    build = lambda h=h: heightmap_mesh(h, pitch=PITCH, base=BASE)  # noqa: E731
                else:
                    build = lambda h=h: naive_heightmap_mesh(h, pitch=PITCH, base=BASE)  # noqa: E731
                bw, bc, mesh = timed(build, args.repeats)
                path = tmp / f"{name}_{mesher}.stl"
                ww, wc, _ = timed(lambda m=mesh, p=path: write_stl(m, p), args.repeats)
                n_tri = len(mesh.faces)
                size = path.stat().st_size / 1e6
                del mesh
                row: list[Any] = [name, mesher, n_tri, bw, bc, ww, wc, size]
                if mesher == "ours" and not args.no_reload:
                    t = time.perf_counter()
                    back = trimesh.load(path)
                    t_load = time.perf_counter() - t
                    vol = (PITCH * 1e3) ** 2 * np.sum((BASE + h) * 1e3)
                    solid = bool(
                        back.is_watertight
                        and back.is_winding_consistent
                        and back.euler_number == 2
                        and back.is_volume
                    )
                    rel = abs(back.volume / vol - 1)
                    del back
                    t = time.perf_counter()
                    got = read_stl_heights(path, shape=h.shape, pitch=PITCH, base=BASE)
                    t_read = time.perf_counter() - t
                    same = bool(np.abs(got - h).max() < 1e-9)
                    row += [solid, rel, t_load, t_read, same]
                else:
                    row += [None] * 5
                rows.append(row)
                path.unlink()
                print(" ".join(str(v) for v in row), file=sys.stderr, flush=True)

    by = {(r[0], r[1]): r for r in rows}
    notes = [
        "build/write: median of repeats, seconds, wall clock and CPU time of this process;",
        "MB: binary STL file size (50 bytes per triangle + 84).",
        "watertight: the written file reloaded by trimesh.load (vertices merged by position) is",
        "watertight, winding-consistent, Euler number 2 and a volume; vol err is relative to",
        "sum(pitch^2 * (base + h)); trimesh load s: that reload; read s: read_stl_heights",
        "(heights at pixel centres, checked equal within 1 nm: 'exact').",
        "naive = two triangles per pixel top and per wall pixel edge; not watertight.",
    ]
    for name in make_maps(8):
        if (name, "ours") in by:
            o, nv = by[(name, "ours")], by[(name, "naive")]
            notes.append(
                f"{name}: naive/ours triangles = {nv[2] / o[2]:.2f}x, "
                f"file {nv[7]:.1f} MB -> {o[7]:.1f} MB"
            )
    save_table(
        "export_stl",
        rows,
        [
            "map",
            "mesher",
            "triangles",
            "build s",
            "build cpu s",
            "write s",
            "write cpu s",
            "MB",
            "watertight",
            "vol err",
            "trimesh load s",
            "read s",
            "exact",
        ],
        {
            "n": args.n,
            "levels": 4,
            "pitch_m": PITCH,
            "base_m": BASE,
            "step_m": STEP,
            "repeats": args.repeats,
        },
        notes=notes,
    )


if __name__ == "__main__":
    main()

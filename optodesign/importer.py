"""Import a phase or transmission map made elsewhere as a Design on a process's levels.

A map from another tool (a Gerchberg–Saxton ``.npy``, an analytic Fresnel lens, a TIFF/PNG
grey-level phase map) becomes a one-layer :class:`~optodesign.design.Design` whose levels are
the process's (:meth:`optodesign.process.Process.level_table`), so it exports and verifies
like a trained design::

    import numpy as np, optodesign
    design = optodesign.import_map("lens.npy", pitch="0.4 mm", wavelength="0.75 mm",
                                   process="thz-printed", distance="5 cm", levels=4,
                                   method="error-diffusion", out="runs/lens")

Two ways to put a continuous map on the levels (``method``):

``nearest``
    every pixel takes the level nearest to it: on the circle for a phase map (the wrapped
    phase difference), in the complex plane for a transmission map.
``error-diffusion``
    Floyd–Steinberg error diffusion (R. W. Floyd and L. Steinberg, "An adaptive algorithm
    for spatial greyscale", Proc. SID 17, 75–77 (1976)), done on the phase and wrap-aware as
    for computer-generated holograms (R. Eschbach, "Comparison of error diffusion methods for
    computer-generated holograms", Appl. Opt. 30, 3702–3710 (1991)): the wrapped error of
    each pixel goes 7/16 to the next pixel of the row, 3/16, 5/16 and 1/16 to the row below,
    on a serpentine path. A transmission map diffuses its complex error. The error that
    remains is pushed to high spatial frequencies (large angles), away from the low
    frequencies that make the image or the focus.

The design's task is ``imported`` (:mod:`optodesign.tasks.imported`): its target is the
output intensity of the *continuous* map at the output plane (``distance`` behind the
element), and its metrics say how closely the quantized (and, in verify, fabricated and read
back) element reproduces it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError
from .units import TWO_PI, parse_length, parse_quantity, wrap_phase

if TYPE_CHECKING:
    from .design import Design
    from .process import Process

__all__ = ["METHODS", "import_map", "read_map", "check_map", "quantize_map",
           "parse_phase_range"]

#: the quantization choices of an imported map
METHODS = ("nearest", "error-diffusion")
#: file types read by :func:`read_map`
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
#: |t| allowed above 1 (rounding in the tool that wrote the map)
UNIT_DISK_SLACK = 1e-6
#: Floyd–Steinberg weights: (dy, dx along the scan direction, weight)
_FS = ((0, 1, 7 / 16), (1, -1, 3 / 16), (1, 0, 5 / 16), (1, 1, 1 / 16))


class MapError(UserError):
    """A map file or array cannot be imported (one line naming it)."""


# ------------------------------------------------------------------------------ reading
def parse_phase_range(text: str | Sequence[float] | None, *,
                      field: str = "--phase-range") -> tuple[float, float] | None:
    """``"0,2pi"`` / ``"-pi,pi"`` / ``"0,6.283"`` / ``(0, 2*pi)`` -> radians ``(lo, hi)``."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    if len(parts) != 2:
        raise MapError(f"{field}: give two phases 'LOW,HIGH' in radians (e.g. '0,2pi'), got "
                       f"{text!r}")
    out = []
    for p in parts:
        out.append(_radians(p, field))
    if not out[1] > out[0]:
        raise MapError(f"{field}: HIGH must exceed LOW, got {text!r}")
    return out[0], out[1]


def _radians(value: Any, field: str) -> float:
    if not isinstance(value, str):
        v = float(value)
    else:
        s = value.strip().lower().replace(" ", "").removesuffix("rad")
        try:
            if s.endswith("pi"):
                head = s[:-2].rstrip("*")
                v = (-1.0 if head == "-" else 1.0 if head in ("", "+") else float(head)) * math.pi
            else:
                v = float(s)
        except ValueError:
            raise MapError(f"{field}: {value!r} is not a phase in radians (e.g. 0, 2pi, "
                           "3.14)") from None
    if not math.isfinite(v):
        raise MapError(f"{field}: phases must be finite, got {value!r}")
    return v


def read_map(path: str | Path, *, phase_range: tuple[float, float] | str | None = None
             ) -> np.ndarray:
    """Read a map file: a real ``.npy`` (phase, radians), a complex ``.npy`` (transmission),
    or a grey-level PNG/TIFF (phase ``lo + (hi - lo) g / g_max``, ``phase_range = (lo, hi)``
    required; a floating-point TIFF holds radians). Checked by :func:`check_map`.

    Raises:
        MapError: one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MapError(f"{path}: map file not found")
    rng = parse_phase_range(phase_range) if not isinstance(phase_range, tuple) else phase_range
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # numpy raises several types for a bad file
            raise MapError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") \
                from None
        if rng is not None:
            raise MapError(f"--phase-range: only for grey-level images; {path} is a .npy map "
                           "in radians")
    elif suffix in IMAGE_SUFFIXES:
        arr = _read_image(path, rng)
    else:
        raise MapError(f"{path}: unknown map type {suffix or '(none)'!r} (allowed: .npy, "
                       f"{', '.join(IMAGE_SUFFIXES)})")
    return check_map(arr, str(path))


def _read_image(path: Path, rng: tuple[float, float] | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except Exception as e:  # PIL raises many types
        raise MapError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None
    if arr.ndim != 2:
        raise MapError(f"{path}: a grey-level map is needed, the image is {mode} with shape "
                       f"{arr.shape} (save it as 8- or 16-bit greyscale)")
    if np.issubdtype(arr.dtype, np.floating):
        if rng is not None:
            raise MapError(f"--phase-range: {path} is a floating-point image holding radians; "
                           "give no range")
        return arr.astype(np.float64)
    if rng is None:
        raise MapError(f"--phase-range: required for the grey-level image {path}: the phases "
                       "of grey 0 and of full scale, e.g. '0,2pi'")
    full = {"1": 1, "L": 255, "P": 255}.get(mode, 65535)
    g = arr.astype(np.float64) / full
    return rng[0] + (rng[1] - rng[0]) * g


def check_map(arr: Any, name: str = "map") -> np.ndarray:
    """A 2-D finite real phase map (float64) or complex transmission map (complex128,
    ``|t| <= 1``); one-line :class:`MapError` naming ``name`` otherwise."""
    a = np.asarray(arr)
    if a.dtype.hasobject or a.dtype.kind not in "biufc":
        raise MapError(f"{name}: holds {a.dtype} values; need phases (real, radians) or "
                       "complex transmissions")
    if a.ndim != 2:
        raise MapError(f"{name}: must be a 2-D map (rows, cols), got shape {a.shape}")
    if min(a.shape) < 2:
        raise MapError(f"{name}: must be at least 2x2 pixels, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise MapError(f"{name}: {bad} pixel(s) are NaN or infinite")
    if a.dtype.kind == "c":
        mag = float(np.abs(a).max())
        if mag > 1 + UNIT_DISK_SLACK:
            raise MapError(f"{name}: a transmission map needs |t| <= 1 (a passive element), "
                           f"found |t| = {mag:.6g}")
        return a.astype(np.complex128)
    return a.astype(np.float64)


# ------------------------------------------------------------------------------ quantizing
def _wrap_pi(x: float) -> float:
    """``x`` wrapped to [-π, π)."""
    return (x + math.pi) % TWO_PI - math.pi


def quantize_map(values: np.ndarray, table: np.ndarray, *, method: str = "nearest"
                 ) -> np.ndarray:
    """Level index of every pixel of a map on a level table.

    Args:
        values: float ``(ny, nx)`` phases (radians: levels compared by the wrapped phase
            difference to ``angle(table)``) or complex ``(ny, nx)`` transmissions (compared in
            the complex plane).
        table: complex ``(L,)`` level transmissions.
        method: ``nearest`` or ``error-diffusion`` (see the module docstring).

    Returns:
        int16 ``(ny, nx)`` level indices.
    """
    if method not in METHODS:
        raise MapError(f"--method: must be one of {', '.join(METHODS)}, got {method!r}")
    values = np.asarray(values)
    table = np.asarray(table, dtype=np.complex128)
    is_phase = values.dtype.kind != "c"
    if method == "nearest":
        if is_phase:
            d = np.abs(np.angle(np.exp(1j * (values[..., None] - np.angle(table)))))
        else:
            d = np.abs(values[..., None] - table)
        return np.argmin(d, axis=-1).astype(np.int16)
    return (_diffuse_phase(values, np.angle(table)) if is_phase
            else _diffuse_complex(values, table)).astype(np.int16)


def _uniform_step(level_phase: np.ndarray) -> float | None:
    """The step Δ when level ``k`` has phase ``θ_0 + kΔ`` (mod 2π) with ``LΔ = 2π``, else
    None (then each pixel searches every level)."""
    n = len(level_phase)
    step = TWO_PI / n
    want = level_phase[0] + step * np.arange(n)
    diff = np.angle(np.exp(1j * (np.asarray(level_phase) - want)))
    return step if np.all(np.abs(diff) < 1e-9) else None


def _diffuse_phase(phase: np.ndarray, level_phase: np.ndarray, *,
                   search: bool = False) -> np.ndarray:
    """Serpentine Floyd–Steinberg on the wrapped phase; ``search`` forces the per-level
    search even for uniform levels (the two give the same levels; a test checks it)."""
    ny, nx = phase.shape
    acc = np.zeros((ny + 1, nx + 2))  # one column of margin on each side, one row below
    out = np.zeros((ny, nx), dtype=np.int64)
    lv = [float(p) for p in level_phase]
    n_levels = len(lv)
    step_u = None if search else _uniform_step(np.asarray(level_phase))
    rows = phase.tolist()
    for y in range(ny):
        step = 1 if y % 2 == 0 else -1  # serpentine
        xs = range(nx) if step == 1 else range(nx - 1, -1, -1)
        row, here, below, out_row = rows[y], acc[y].tolist(), acc[y + 1].tolist(), out[y]
        for x in xs:
            want = row[x] + here[x + 1]
            if step_u is not None:  # uniform levels: the nearest is one division away
                best = round((want - lv[0]) / step_u) % n_levels
                err = _wrap_pi(want - lv[best])
            else:
                best, err = 0, math.inf
                for k, p in enumerate(lv):
                    e = _wrap_pi(want - p)
                    if abs(e) < abs(err):
                        best, err = k, e
            out_row[x] = best
            here[x + 1 + step] += err * 7 / 16
            below[x + 1 - step] += err * 3 / 16
            below[x + 1] += err * 5 / 16
            below[x + 1 + step] += err * 1 / 16
        acc[y + 1] = below
    return out


def _diffuse_complex(t: np.ndarray, table: np.ndarray) -> np.ndarray:
    ny, nx = t.shape
    acc = np.zeros((ny + 1, nx + 2), dtype=np.complex128)
    out = np.zeros((ny, nx), dtype=np.int64)
    levels = [complex(v) for v in table]
    rows = t.tolist()
    for y in range(ny):
        step = 1 if y % 2 == 0 else -1
        xs = range(nx) if step == 1 else range(nx - 1, -1, -1)
        row, here, below, out_row = rows[y], acc[y].tolist(), acc[y + 1].tolist(), out[y]
        for x in xs:
            want = row[x] + here[x + 1]
            best, dist = 0, math.inf
            for k, v in enumerate(levels):
                d = abs(want - v)
                if d < dist:
                    best, dist = k, d
            err = want - levels[best]
            out_row[x] = best
            here[x + 1 + step] += err * 7 / 16
            below[x + 1 - step] += err * 3 / 16
            below[x + 1] += err * 5 / 16
            below[x + 1 + step] += err * 1 / 16
        acc[y + 1] = below
    return out


def map_transmission(values: np.ndarray) -> np.ndarray:
    """The continuous map as a complex transmission: ``exp(iφ)`` or the map itself."""
    values = np.asarray(values)
    return values.astype(np.complex128) if values.dtype.kind == "c" else np.exp(1j * values)


# ------------------------------------------------------------------------------ the design
def import_map(source: str | Path | np.ndarray, *, pitch: str | float,
               wavelength: str | float, process: str | Process, distance: str | float,
               levels: int | None = None, method: str = "nearest",
               phase_range: str | tuple[float, float] | None = None, pad: float = 2.0,
               out: str | Path | None = None) -> Design:
    """A Design of a phase/transmission map on a process's levels (see the module docstring).

    Args:
        source: a map file (:func:`read_map`) or an array (real: phase in radians; complex:
            transmission with ``|t| <= 1``), ``(ny, nx)``, axis order (y, x).
        pitch, wavelength, distance: lengths with units (``"0.4 mm"``, ``"0.4 THz"``) or
            metres; ``distance`` is element -> output plane, where the metrics are read.
        process: a shipped process name, a process file, or a :class:`Process`.
        levels: the level count (processes that make any count; default the process's own
            count, else 8).
        method: ``nearest`` or ``error-diffusion``.
        phase_range: grey-level images: the phases of grey 0 and full scale.
        pad: zero padding of the propagation (as ``optics.pad``).
        out: if given, the design directory written.

    Raises:
        UserError: one line naming the option: a bad map, units, an unknown process, a
            pitch or wavelength the process refuses, a level count it cannot make.
    """
    from .design import Design
    from .grid import Grid
    from .process import Process, load_process
    from .tasks.imported import ImportedSetup

    if method not in METHODS:
        raise MapError(f"--method: must be one of {', '.join(METHODS)}, got {method!r}")
    pitch_m = parse_length(pitch, field="--pitch")
    lam = parse_quantity(wavelength, field="--wavelength")
    dist = parse_length(distance, field="--distance")
    if not (isinstance(pad, (int, float)) and math.isfinite(pad) and pad >= 1):
        raise UserError(f"--pad: must be a number >= 1, got {pad!r}")
    if isinstance(source, (str, Path)):
        name = Path(source).name
        values = read_map(source, phase_range=phase_range)
    else:
        name = "array"
        values = check_map(source, "map")
    proc = process if isinstance(process, Process) else load_process(str(process))
    try:
        proc.check_geometry(wavelength=lam, pitch=pitch_m, whose="the map")
    except UserError as e:  # "wavelength: ..." / "pitch: ...": name the option
        raise UserError(f"--{e}") from None
    n = levels if levels is not None else (proc.fixed_n_levels or 8)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise UserError(f"--levels: must be a whole number >= 2, got {levels!r}")
    try:
        proc.check_n_levels(int(n))
    except UserError as e:  # "n_levels: ...": name the option
        raise UserError(f"--levels: {str(e).removeprefix('n_levels: ')}") from None
    table = np.asarray(proc.level_table(int(n)), dtype=np.complex128)
    if values.dtype.kind != "c":
        values = wrap_phase(values)
    idx = quantize_map(values, table, method=method)

    grid = Grid(values.shape, pitch_m, pad=float(pad))
    reference = _output_intensity(map_transmission(values), grid, lam, dist)
    peak = float(reference.max())
    if not peak > 0:
        raise MapError(f"{name}: the continuous map sends no light to the output plane")
    kind = "complex" if values.dtype.kind == "c" else "phase"
    common = dict(wavelength=lam, pitch=pitch_m, levels=idx[None],
                  level_tables=table[None], distances=(0.0, dist), pad=float(pad),
                  layer_kind=kind, target=reference / peak,
                  quantizer={"method": f"import-{method}", "levels": int(n),
                             "source": name, "process": proc.name})
    probe = Design(setup=ImportedSetup(map_kind=kind, reference_efficiency=1.0), **common)
    ref_eff = _metrics(probe, map_transmission(values)[None])["efficiency"]
    setup = ImportedSetup(map_kind=kind, reference_efficiency=float(ref_eff))
    design = Design(setup=setup, **common)
    design = design.with_levels(design.levels, metrics=_metrics(design, design.transmissions()))
    if out is not None:
        design.save(out)
    return design


def _output_intensity(t: np.ndarray, grid: Any, wavelength: float,
                      distance: float) -> np.ndarray:
    """|u|² on the output plane of a unit plane wave through ``t`` (the training propagator)."""
    import torch

    from .models.functional import forward_stack
    from .optics.cells import cell_band_limit

    # the model of every new design (pixels = "cells", optodesign.evaluate.Evaluator)
    field = cell_band_limit(torch.ones((1, *grid.shape), dtype=torch.complex64))
    ts = cell_band_limit(torch.as_tensor(t[None].astype(np.complex64)))
    with torch.no_grad():
        u = forward_stack(field, ts, (0.0, distance), grid=grid, wavelength=wavelength)[0]
    return (u.abs() ** 2).double().numpy()


def _metrics(design: Design, transmissions: np.ndarray) -> dict[str, Any]:
    from .evaluate import Evaluator

    return Evaluator.from_design(design).evaluate(transmissions)

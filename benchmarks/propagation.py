"""Benchmark: one band-limited angular-spectrum step against the FFT floor and against peers.

For each N (default 256, 512, 1024, 2048) it times, with torch on 2 threads, medians of
repeated calls after a warm-up (so our transfer function is cached):

* ``optodesign.propagate`` in complex64 (pad 2, band-limited) and in complex128;
* the FFT floor: ``ifft2(fft2(padded) * H)`` on the same 2N x 2N grid, with the padded field
  and H precomputed (interleaved with our calls, so both see the same machine load);
* peers, where importable, on the same field, distance and padding: odak's band-limited ASM,
  torchoptics' ASM (it has no band limit), LightPipes' ``Forvard`` (Fresnel transfer
  function, numpy; it has no band limit either).

Accuracy: every result is compared on the N x N field window with our complex128 result
(relative L2 norm). Geometry: 532 nm, 4 µm pitch (max angle 3.8°), and a distance chosen per N
so that the Matsushima band limit keeps 80 % of the usable frequency radius: active but not
dominant. The field is a circular aperture (diameter 0.75 N px) with a smooth random phase.

With ``--profile`` (default on) it also splits our call into its parts (padding inside
fft2, the multiply, crop) and tries cheaper variants, to say where time goes beyond the floor.

Run: ``python benchmarks/propagation.py`` (about 3-5 min on 2 cores);
``--sizes 256 512 --no-peers`` for a quick look. Results go to
``benchmarks/results/propagation.{txt,json}``.

``--batch-step`` instead times one propagation of a training batch forward and backward, as
in ``throughput.py`` (32 fields of 200², pad 2, complex64, the CLI's malloc tuning), on 1 and 2
threads: ``propagate`` as it runs, one batched ``fft2``/``ifft2``, the pruned 1-D FFTs in
cache-sized chunks, and one ``fft2`` per chunk, paired and interleaved
(``results/propagation_batch.{txt,json}``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import format_table, machine_info, save_table  # noqa: E402

import optodesign  # noqa: E402
from optodesign.grid import Grid  # noqa: E402
from optodesign.optics.propagation import transfer_function  # noqa: E402

WAVELENGTH = 532e-9
PITCH = 4e-6
PAD = 2
BAND_KEEP = 0.8  # fraction of min(1/(2 pitch), 1/λ) the band limit keeps at the chosen distance
THREADS = 2
PROFILE_REPEATS = {512: 15, 1024: 5, 2048: 3}


def grid_for(n: int) -> Grid:
    """The N x N grid every call of ours propagates on (pitch PITCH, zero padding PAD)."""
    return Grid((n, n), PITCH, pad=PAD)


def distance_for(n: int) -> float:
    """Distance (m, rounded to 0.1 mm) at which the band limit keeps BAND_KEEP of the band.

    Matsushima & Shimobaba (2009) eq. (13): f_lim = 1 / (λ sqrt((2 z / S)² + 1)), S = 2 N pitch.
    """
    s = PAD * n * PITCH
    f_keep = BAND_KEEP * min(1 / (2 * PITCH), 1 / WAVELENGTH)
    z = 0.5 * s * math.sqrt((1 / (WAVELENGTH * f_keep)) ** 2 - 1)
    return round(z * 1e4) / 1e4


def make_field(n: int, dtype: torch.dtype) -> torch.Tensor:
    """Deterministic test field (n, n): circular aperture with a smooth random phase."""
    rng = np.random.default_rng(1234 + n)
    noise = rng.standard_normal((n, n))
    f = np.fft.fftfreq(n)
    lowpass = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.02**2))
    phase = np.real(np.fft.ifft2(np.fft.fft2(noise) * lowpass))
    phase *= 2 * np.pi / phase.std()
    y, x = np.indices((n, n)) - (n - 1) / 2
    aperture = (x**2 + y**2) <= (0.375 * n) ** 2
    field = aperture * np.exp(1j * phase)
    return torch.from_numpy(field).to(dtype)


def rel_l2(a: torch.Tensor, ref: torch.Tensor, *, drop_global_phase: bool = False) -> float:
    """||a - ref|| / ||ref||; optionally after the best constant phase factor on ``a`` (a
    float32 carrier phase k z of ~1e5-1e6 rad shows up as a global phase error)."""
    a = a.to(torch.complex128)
    if drop_global_phase:
        inner = (a.conj() * ref).sum()
        if inner.abs() > 0:
            a = a * (inner / inner.abs())
    return float((a - ref).norm() / ref.norm())


def time_raw(
    fns: list[Callable[[], object]], repeats: int, *, warmup: bool = True
) -> list[list[float]]:
    """Wall times (s) of each fn, after one warm-up each; calls interleaved per repeat, so
    that all fns see the same load from other processes."""
    for fn in fns if warmup else ():
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return times


def time_calls(
    fns: list[Callable[[], object]], repeats: int, *, warmup: bool = True
) -> list[tuple[float, float]]:
    """(median, min) wall time (s) of each fn; see :func:`time_raw`."""
    return [(statistics.median(t), min(t)) for t in time_raw(fns, repeats, warmup=warmup)]


def adaptive_repeats(first_call_s: float, repeats: int, budget_s: float) -> int:
    """At least 3, at most ``repeats``, and about ``budget_s`` of calls."""
    return max(3, min(repeats, int(budget_s / max(first_call_s, 1e-9))))


# --- peers ------------------------------------------------------------------------------------


def _center(n: int) -> slice:
    return slice(n // 2, n // 2 + n)


def peer_odak(field: torch.Tensor, z: float):
    """odak.learn.wave.propagate_beam, 'Bandlimited Angular Spectrum', zero_padding=[True,
    False, True]: centred 2x zero pad, BL-ASM kernel rebuilt each call (float32 phase),
    crop_center. Returns (callable, description)."""
    import odak

    logging.getLogger("odak").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)  # odak logs a warning per kernel via root
    k = odak.learn.wave.wavenumber(WAVELENGTH)

    def run() -> torch.Tensor:
        out = odak.learn.wave.propagate_beam(
            field, k, z, PITCH, WAVELENGTH, propagation_type="Bandlimited Angular Spectrum",
            zero_padding=[True, False, True])
        return out.reshape(field.shape)

    return run, (f"odak {odak.__version__} propagate_beam('Bandlimited Angular Spectrum', "
                 "zero_padding=[True,False,True]); kernel rebuilt per call")


def peer_odak_cached(field: torch.Tensor, z: float):
    """odak's BL-ASM kernel built once, then odak.learn.wave.custom on the zero-padded field."""
    import odak
    from odak.learn.tools import crop_center, zero_pad

    n = field.shape[-1]
    h = odak.learn.wave.get_band_limited_angular_spectrum_kernel(
        2 * n, 2 * n, dx=PITCH, wavelength=WAVELENGTH, distance=z, device=field.device)

    def run() -> torch.Tensor:
        out = crop_center(odak.learn.wave.custom(zero_pad(field), h, zero_padding=False))
        return out.reshape(field.shape)

    return run, "odak: same BL-ASM kernel precomputed once, custom(zero_pad(f), H), crop_center"


def peer_torchoptics(field: torch.Tensor, z: float, float_dtype: torch.dtype):
    """torchoptics Field.propagate_to_z(z, propagation_method='ASM', asm_pad=N/2 per side)."""
    import torchoptics

    n = field.shape[-1]
    torchoptics.set_default_dtype(float_dtype)
    f = torchoptics.Field(field, wavelength=WAVELENGTH, spacing=(PITCH, PITCH))

    def run() -> torch.Tensor:
        return f.propagate_to_z(z, propagation_method="ASM", asm_pad=(n // 2, n // 2)).data

    name = "float32" if float_dtype == torch.float32 else "float64"
    return run, (f"torchoptics {torchoptics.__version__} Field.propagate_to_z(method='ASM', "
                 f"asm_pad=N/2 per side -> 2N), default dtype {name}; no band limit, H rebuilt "
                 "per call")


def peer_lightpipes(field: torch.Tensor, z: float):
    """LightPipes Forvard (Fresnel transfer function, numpy FFT) on a centred 2N grid."""
    import LightPipes as lp

    n = field.shape[-1]
    a = field.numpy().astype(np.complex128)
    with contextlib.redirect_stdout(io.StringIO()):
        template = lp.Begin(2 * n * PITCH, WAVELENGTH, 2 * n)

    def run() -> torch.Tensor:
        padded = np.zeros((2 * n, 2 * n), np.complex128)
        padded[_center(n), _center(n)] = a
        g = lp.Field.copy(template)
        g.field = padded
        out = lp.Forvard(g, z)
        return torch.from_numpy(np.ascontiguousarray(out.field[_center(n), _center(n)]))

    return run, (f"LightPipes {lp.__version__} Forvard on a centred 2N grid (paraxial Fresnel "
                 "transfer function, no band limit, numpy complex128, 1 thread)")


def odak_grid_diagnosis(n: int) -> tuple[float, float]:
    """Explain odak's difference: our float64 ASM evaluated on odak's frequency grid
    (linspace(-1/(2 dx) + 1/(4 X), 1/(2 dx) - 1/(4 X), 2N): half a bin off and stretched by
    1/(2(2N-1))). Returns (rel L2 of that emulation vs odak, vs our exact result)."""
    from optodesign.optics.propagation import _band_limit

    z, m = distance_for(n), PAD * n
    x = m * PITCH
    field = make_field(n, torch.complex64)
    ref = optodesign.propagate(field.to(torch.complex128), z, grid=grid_for(n),
                               wavelength=WAVELENGTH)
    run_odak, _ = peer_odak(field, z)
    out_odak = run_odak()
    fr = torch.fft.ifftshift(torch.linspace(-1 / (2 * PITCH) + 0.5 / (2 * x),
                                            1 / (2 * PITCH) - 0.5 / (2 * x), m,
                                            dtype=torch.float64))
    phase = 2 * math.pi * torch.sqrt(1 / WAVELENGTH**2 - (fr[:, None] ** 2 + fr[None, :] ** 2)) * z
    lim = _band_limit(m, PITCH, WAVELENGTH, z)
    keep = (fr.abs()[:, None] < lim) & (fr.abs()[None, :] < lim)
    h = torch.polar(keep.to(torch.float64), phase)
    padded = torch.nn.functional.pad(field.to(torch.complex128), (n // 2,) * 4)
    out = torch.fft.ifft2(torch.fft.fft2(padded) * h)[_center(n), _center(n)]
    return rel_l2(out, out_odak.reshape(n, n).to(torch.complex128)), rel_l2(out, ref)


# --- profile ------------------------------------------------------------------------------------


def profile_parts(n: int, repeats: int) -> list[list[object]]:
    """Time the pieces of our call and cheaper variants at N (complex64)."""
    z = distance_for(n)
    m = PAD * n
    field = make_field(n, torch.complex64)
    h = transfer_function((m, m), z, pitch=PITCH, wavelength=WAVELENGTH)
    # what propagate() multiplies by: the inverse FFT's 1/m² folded into H
    h_folded = transfer_function((m, m), z, pitch=PITCH, wavelength=WAVELENGTH, scale=1 / m**2)
    padded = torch.nn.functional.pad(field, (0, m - n, 0, m - n))
    spec = torch.fft.fft2(padded)

    grid = grid_for(n)

    def ours() -> torch.Tensor:
        return optodesign.propagate(field, z, grid=grid, wavelength=WAVELENGTH)

    def floor() -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(padded) * h)

    def fft_s() -> torch.Tensor:
        return torch.fft.fft2(field, s=(m, m))

    def fft_padded() -> torch.Tensor:
        return torch.fft.fft2(padded)

    def pad_only() -> torch.Tensor:
        return torch.nn.functional.pad(field, (0, m - n, 0, m - n))

    def mul_alloc() -> torch.Tensor:
        return spec * h

    s2 = spec.clone()

    def mul_inplace() -> torch.Tensor:
        return s2.mul_(h)

    def ifft() -> torch.Tensor:
        return torch.fft.ifft2(spec)

    def ifft_unnormalised() -> torch.Tensor:
        return torch.fft.ifft2(spec, norm="forward")

    def inplace_variant() -> torch.Tensor:
        s = torch.fft.fft2(field, s=(m, m))
        s.mul_(h_folded)
        return torch.fft.ifft2(s, norm="forward")[..., :n, :n]

    zero_buf = torch.zeros((m, m), dtype=torch.complex64)

    def reused_pad_variant() -> torch.Tensor:
        # A cached zero-padded buffer: only the field window is rewritten, so no 2N x 2N
        # allocation + zero fill per call. Inference only: with autograd the in-place copy
        # would chain each call's graph onto the previous one.
        zero_buf[:n, :n].copy_(field)
        s = torch.fft.fft2(zero_buf)
        s.mul_(h_folded)
        return torch.fft.ifft2(s, norm="forward")[..., :n, :n]

    ref = ours()
    for name, fn in (("inplace", inplace_variant), ("reused pad", reused_pad_variant)):
        err = rel_l2(fn(), ref.to(torch.complex128))
        assert err < 1e-5, f"{name} variant differs from propagate: {err}"
    parts = [("propagate()", ours), ("floor: ifft2(fft2(P)*H)", floor),
             ("fft2(f, s=2N) (pads inside)", fft_s), ("fft2(P) (pre-padded)", fft_padded),
             ("F.pad(f) alone", pad_only), ("S * H (allocates)", mul_alloc),
             ("S.mul_(H) (in place)", mul_inplace), ("ifft2(S)", ifft),
             ("ifft2(S, norm='forward') (unscaled)", ifft_unnormalised),
             ("variant: fft2(s=) + S.mul_(H/m²) + unscaled ifft2", inplace_variant),
             ("variant: reused zero buffer + mul_", reused_pad_variant)]
    timed = time_calls([fn for _, fn in parts], repeats)
    floor_s = timed[1][0]
    return [[n, name, t, t_min, t / floor_s]
            for (name, _), (t, t_min) in zip(parts, timed, strict=True)]


# --- main ------------------------------------------------------------------------------------


def ifft2_2048_check() -> dict[str, float]:
    """DESIGN.md says a single 2048² complex64 ifft2 on 2 threads comes back mis-scaled."""
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(2048, 2048, dtype=torch.complex128, generator=g)
    ref = torch.fft.ifft2(spec)
    out = torch.fft.ifft2(spec.to(torch.complex64))
    x = torch.randn(2048, 2048, dtype=torch.complex64, generator=g)
    back = torch.fft.ifft2(torch.fft.fft2(x))
    return {"ifft2_c64_vs_c128_rel_l2": rel_l2(out, ref),
            "norm_ratio_c64_over_c128": float(out.to(torch.complex128).norm() / ref.norm()),
            "roundtrip_c64_rel_l2": rel_l2(back, x.to(torch.complex128))}


TUNED_GLIBC = ("glibc.malloc.mmap_threshold=1073741824:"
               "glibc.malloc.trim_threshold=1073741824")
#: peers that are slow and add little at the largest N are only run up to this N
PEER_MAX_N = {"odak BL-ASM, H cached": 1024, "torchoptics ASM f64": 1024}


def time_ours_floor(n: int, repeats: int, min_time: float) -> dict[str, float]:
    """Median/min of our complex64 call and of the FFT floor at N, interleaved."""
    z, m = distance_for(n), PAD * n
    field = make_field(n, torch.complex64)
    padded = torch.nn.functional.pad(field, (0, m - n, 0, m - n))
    h = transfer_function((m, m), z, pitch=PITCH, wavelength=WAVELENGTH)
    grid = grid_for(n)

    def ours() -> torch.Tensor:
        return optodesign.propagate(field, z, grid=grid, wavelength=WAVELENGTH)

    def floor() -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(padded) * h)

    ours()  # first call: sampling checks and H; not timed
    t0 = time.perf_counter()
    floor()
    # Small grids are fast and noisy: repeat them for about min_time seconds.
    reps = max(repeats, min(200, int(min_time / max(time.perf_counter() - t0, 1e-6))))
    raw_ours, raw_floor = time_raw([ours, floor], reps)
    # Paired ratio: each of our calls against the floor call right after it (same load).
    paired = statistics.median(a / b for a, b in zip(raw_ours, raw_floor, strict=True))
    return {"t_ours": statistics.median(raw_ours), "m_ours": min(raw_ours),
            "t_floor": statistics.median(raw_floor), "m_floor": min(raw_floor),
            "paired": paired, "reps": reps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="raise repeats of ours/floor so that each gets about this many s")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-allocator-check", action="store_true",
                        help="skip re-running ours/floor at N >= 1024 with tuned glibc malloc")
    parser.add_argument("--peer-budget", type=float, default=6.0,
                        help="seconds of timed calls per peer and N (repeats drop to >= 3)")
    parser.add_argument("--batch-step", action="store_true",
                        help="time a training batch's propagation (forward + backward) instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_step:
        batch_step(args.repeats)
        return
    torch.set_num_threads(THREADS)
    if args.child:  # the allocator check: ours/floor only, JSON on stdout
        warnings.simplefilter("ignore")
        out = {n: time_ours_floor(n, _repeats_for(n, args.repeats), args.min_time)
               for n in args.sizes}
        print(json.dumps(out))
        return
    # Peers and propagate() may warn; record them instead, and list ours under the table.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", optodesign.optics.propagation.SamplingWarning)
        run(args, caught)


def _repeats_for(n: int, repeats: int) -> int:
    return repeats if n < 2048 else max(3, min(repeats, 5))


ALLOCATOR_ROUNDS = 2


def allocator_check(
    sizes: list[int], args: argparse.Namespace
) -> dict[str, dict[int, dict[str, float]]]:
    """Ours/floor in child processes, alternately with the default glibc malloc and with its
    mmap/trim thresholds raised to 1 GiB (DESIGN.md: large tensors are otherwise mmapped and
    zero-filled on every call). Alternating rounds, so both see similar machine load.

    Returns:
        ``{"default": {N: timings}, "tuned": {N: timings}}``, medians over the rounds.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--sizes",
           *map(str, sizes), "--repeats", str(args.repeats), "--min-time", str(args.min_time)]
    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    envs = {"default": plain, "tuned": {**plain, "GLIBC_TUNABLES": TUNED_GLIBC}}
    runs: dict[str, list[dict[int, dict[str, float]]]] = {k: [] for k in envs}
    for _ in range(ALLOCATOR_ROUNDS):
        for name, env in envs.items():
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            out = json.loads(done.stdout.strip().splitlines()[-1])
            runs[name].append({int(k): v for k, v in out.items()})
    return {name: {n: {key: statistics.median(r[n][key] for r in rs) for key in rs[0][n]}
                   for n in sizes}
            for name, rs in runs.items()}


def run(args: argparse.Namespace, sampling_warnings: list[warnings.WarningMessage]) -> None:
    """Measure everything and save the table (see the module docstring)."""
    t_start = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]

    peers: dict[str, Callable] = {}
    skipped: list[str] = []
    if not args.no_peers:
        for modname, entries in (
            ("odak", {"odak BL-ASM": peer_odak, "odak BL-ASM, H cached": peer_odak_cached}),
            ("torchoptics", {
                "torchoptics ASM f32": lambda f, z: peer_torchoptics(f, z, torch.float32),
                "torchoptics ASM f64": lambda f, z: peer_torchoptics(f, z, torch.float64)}),
            ("LightPipes", {"LightPipes Forvard": peer_lightpipes}),
        ):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    __import__(modname)
            except Exception as exc:  # noqa: BLE001 - any import failure means "skip this peer"
                skipped.append(f"{modname}: not importable ({type(exc).__name__}: {exc})")
                print(f"skipping {modname}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            peers.update(entries)

    header = ["N", "z mm", "method", "dtype", "median s", "min s", "reps", "x floor", "x ours c64",
              "rel L2 vs ours c128", "same, global phase removed"]
    rows: list[list[object]] = []
    described: dict[str, str] = {}
    for n in args.sizes:
        z = distance_for(n)
        reps = _repeats_for(n, args.repeats)
        f64 = make_field(n, torch.complex64)
        f128 = make_field(n, torch.complex128)
        grid = grid_for(n)

        def ours128(f128: torch.Tensor = f128, z: float = z, grid: Grid = grid) -> torch.Tensor:
            return optodesign.propagate(f128, z, grid=grid, wavelength=WAVELENGTH)

        ref = ours128()
        tf = time_ours_floor(n, reps, args.min_time)
        t_ours, t_floor, reps = tf["t_ours"], tf["t_floor"], int(tf["reps"])
        reps128 = max(3, reps // 2)
        ((t_128, m_128),) = time_calls([ours128], reps128)
        out64 = optodesign.propagate(f64, z, grid=grid, wavelength=WAVELENGTH)
        err64 = rel_l2(out64, ref)
        err64g = rel_l2(out64, ref, drop_global_phase=True)
        m = PAD * n
        h = transfer_function((m, m), z, pitch=PITCH, wavelength=WAVELENGTH)
        floor_out = torch.fft.ifft2(torch.fft.fft2(f64, s=(m, m)) * h)[..., :n, :n]
        floor_err = rel_l2(floor_out, ref)
        rows.append([n, z * 1e3, "optodesign.propagate", "c64", t_ours, tf["m_ours"], reps,
                     tf["paired"], 1.0, err64, err64g])
        rows.append([n, z * 1e3, "FFT floor", "c64", t_floor, tf["m_floor"], reps, 1.0,
                     t_floor / t_ours, floor_err, None])
        rows.append([n, z * 1e3, "optodesign.propagate", "c128", t_128, m_128, reps128,
                     t_128 / t_floor, t_128 / t_ours, 0.0, 0.0])
        print(f"N={n}: ours {t_ours:.4g} s, floor {t_floor:.4g} s, ratio {tf['paired']:.3f},"
              f" c64 vs c128 {err64:.2e}", file=sys.stderr)
        for name, factory in peers.items():
            if n > PEER_MAX_N.get(name, n):
                continue
            try:
                fn, desc = factory(f64, z)
                described[name] = desc
                t0 = time.perf_counter()
                out = fn()
                first = time.perf_counter() - t0
                r = adaptive_repeats(first, reps, args.peer_budget)
                if first > 4.0:  # the slowest peers at the largest N: first call + 2 timed
                    r = 2
                ((t_peer, m_peer),) = time_calls([fn], r, warmup=False)
                err = rel_l2(out.reshape(n, n), ref)
                errg = rel_l2(out.reshape(n, n), ref, drop_global_phase=True)
                dtype = str(out.dtype).replace("torch.complex", "c")
                rows.append([n, z * 1e3, name, dtype, t_peer, m_peer, r, t_peer / t_floor,
                             t_peer / t_ours, err, errg])
                print(f"  {name}: {t_peer:.4g} s, rel L2 {err:.2e} ({errg:.2e})", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - a failing peer must not stop the benchmark
                skipped.append(f"{name} at N={n}: failed ({type(exc).__name__}: {exc})")
                print(f"  {name}: failed: {exc}", file=sys.stderr)
        if "torchoptics ASM f32" in peers:
            import torchoptics

            torchoptics.set_default_dtype(torch.float64)

    big = [n for n in args.sizes if n >= 1024]
    alloc_meta: dict[str, object] = {}
    if big and not args.no_allocator_check and machine_info()["allocator"] == "glibc default":
        try:
            alloc = allocator_check(big, args)
        except (subprocess.CalledProcessError, ValueError, KeyError) as exc:
            skipped.append(f"allocator check failed: {exc}")
            alloc = {"default": {}, "tuned": {}}
        for n, tf in alloc["tuned"].items():
            base = alloc["default"][n]["t_ours"]
            z = distance_for(n)
            rows.append([n, z * 1e3, "optodesign.propagate, tuned glibc", "c64", tf["t_ours"],
                         tf["m_ours"], int(tf["reps"]), tf["paired"], tf["t_ours"] / base,
                         None, None])
            rows.append([n, z * 1e3, "FFT floor, tuned glibc", "c64", tf["t_floor"],
                         tf["m_floor"], int(tf["reps"]), 1.0, tf["t_floor"] / base, None, None])
        alloc_meta = {k: {str(n): v for n, v in d.items()} for k, d in alloc.items()}
        rows.sort(key=lambda r: r[0])  # stable: keeps the order within each N

    notes = [
        "x floor: median time / FFT-floor median at the same N, except for optodesign.propagate "
        "c64 rows: median over repeats of (our call / the floor call right after it), which is "
        "robust to load from other processes; x ours c64: / our complex64 median.",
        "rel L2 vs ours c128: ||u - u_ours_c128|| / ||u_ours_c128|| on the N x N field window; "
        "'global phase removed': after the best constant phase factor on u.",
        f"tuned glibc rows: ours/floor in child processes with GLIBC_TUNABLES={TUNED_GLIBC}, "
        f"alternated {ALLOCATOR_ROUNDS}x with children on the default allocator (medians over "
        "rounds); 'x floor' is vs the tuned floor, 'x ours c64' vs our time in the default-"
        "allocator children (meta.allocator_check).",
        f"peers only up to N: {PEER_MAX_N}; peers whose first call takes > 4 s: 2 timed calls.",
        "FFT floor: ifft2(fft2(P) * H), P (2N x 2N, zero-padded) and H precomputed, timed "
        "interleaved with our calls; its error column is vs ours c128 on [:N, :N].",
        "optodesign.propagate: pad 2 inside fft2(s=), cached band-limited H (float64-built), "
        "crop [:N, :N] (a view).",
        *[f"{k}: {v}" for k, v in described.items()],
        *[f"skipped: {s}" for s in skipped],
        *sorted({f"SamplingWarning from propagate: {w.message}" for w in sampling_warnings
                 if issubclass(w.category, optodesign.optics.propagation.SamplingWarning)}),
    ]
    meta: dict[str, object] = {
        "wavelength_m": WAVELENGTH, "pitch_m": PITCH, "pad": PAD, "band_keep": BAND_KEEP,
        "distance_rule": "per N, so that the Matsushima limit keeps 80% of the band "
                         "(same distance for all methods at a given N)",
        "field": "circular aperture, diameter 0.75 N px, smooth random phase (Gaussian "
                 "low-pass sigma 0.02 cycles/px, 2 pi rms)",
        "repeats": args.repeats,
        "repeats_note": f"ours/floor: --repeats (max 5 at N=2048), raised to ~{args.min_time:g} s "
                        "of calls on small grids (<= 200); c128: half of that (>= 3); peers: "
                        f"~{args.peer_budget:g} s of calls per peer and N, 3..--repeats, 2 "
                        "when one call takes > 4 s",
    }
    if "odak BL-ASM" in peers:
        n0 = min(args.sizes)
        vs_odak, vs_ours = odak_grid_diagnosis(n0)
        notes.append(f"odak diagnosis at N={n0}: our float64 ASM on odak's frequency grid (half a "
                     f"bin off, stretched by 1/(2(2N-1))) is {vs_odak:.2e} from odak (float32 "
                     f"phase) and {vs_ours:.2e} from our exact result: the grid is odak's error")
    if 2048 in args.sizes or 1024 in args.sizes:
        check = ifft2_2048_check()
        meta["ifft2_2048_c64_2threads"] = check
        notes.append("DESIGN.md claim (single 2048^2 complex64 ifft2 on 2 threads mis-scaled "
                     f"~2.4e-7): c64 vs c128 rel L2 {check['ifft2_c64_vs_c128_rel_l2']:.2e}, "
                     f"norm ratio {check['norm_ratio_c64_over_c128']:.7f}, fft2->ifft2 round "
                     f"trip {check['roundtrip_c64_rel_l2']:.2e}")
    if not args.no_profile:
        prof: list[list[object]] = []
        for n in [s for s in args.sizes if s >= 512]:
            prof += profile_parts(n, PROFILE_REPEATS.get(n, 3))
        if prof:
            notes += ["", f"Profile (complex64, interleaved; repeats {PROFILE_REPEATS}, else 3):",
                      format_table(prof, ["N", "part", "median s", "min s", "x floor"])]
            meta["profile"] = prof
    if alloc_meta:
        meta["allocator_check"] = alloc_meta
    meta["total_runtime_s"] = round(time.perf_counter() - t_start, 1)
    meta["load_avg_before"] = load_before
    load = max(load_before[0], os.getloadavg()[0])
    if load > 0.75 * (os.cpu_count() or 1):
        notes.insert(0, f"WARNING: other processes shared the CPU (1-min load up to {load:.1f} on "
                        f"{os.cpu_count()} cores). With {THREADS} torch threads each parallel "
                        "region then waits for a core, so small-N times measure scheduling, not "
                        "FFTs; trust N >= 1024, the paired ratios and the min column, and rerun "
                        "on a quiet machine.")
    save_table("propagation", rows, header, meta, notes=notes)


def batch_step(repeats: int, batch: int = 32, n: int = 200) -> None:
    """``--batch-step``: see the module docstring. Pitch, distance and wavelength as in
    throughput.py (36 µm, 0.3 m, 532 nm)."""
    from optodesign.allocator import tune_malloc
    from optodesign.optics import propagation as prop

    malloc = tune_malloc()
    grid, z, wl = Grid((n, n), 36e-6, pad=PAD), 0.3, 532e-9
    g = torch.Generator().manual_seed(0)
    field = torch.randn(batch, n, n, dtype=torch.complex64, generator=g)
    weight = torch.rand(n, n, generator=g)
    real_plan = prop._plan

    def chunked(threads: int, pruned: bool) -> Callable:
        size = max(1, min(batch, prop.CHUNK_BYTES * threads // (PAD * n) ** 2 // 8))
        plan = prop.Plan((n, n), tuple(sorted({size, batch % size} - {0})), pruned)
        return lambda *a: plan

    def step(plan: Callable) -> torch.Tensor:
        prop._plan = plan
        x = field.clone().requires_grad_(True)
        out = optodesign.propagate(x, z, grid=grid, wavelength=wl)
        ((out.real**2 + out.imag**2) * weight).sum().backward()
        return out.detach()

    rows: list[list[object]] = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            variants = {"propagate": real_plan, "batched fft2": lambda *a: None,
                        "chunked pruned": chunked(1, True),
                        "chunked fft2": chunked(threads, False)}
            ref = step(variants["batched fft2"]).to(torch.complex128)
            errs = {k: rel_l2(step(f), ref) for k, f in variants.items()}
            raw = time_raw([lambda f=f: step(f) for f in variants.values()], repeats)
            times = dict(zip(variants, raw, strict=True))
            base = times["batched fft2"]
            for k, t in times.items():
                paired = statistics.median(b / a for a, b in zip(t, base, strict=True))
                rows.append([threads, k, round(statistics.median(t) * 1e3, 1),
                             round(min(t) * 1e3, 1), len(t), round(paired, 3), f"{errs[k]:.1e}"])
    finally:
        prop._plan = real_plan
    header = ["threads", "variant", "median ms", "min ms", "reps", "x batched (paired)",
              "rel L2 vs batched"]
    meta = {**machine_info(), "batch": batch, "n": n, "pad": PAD,
            "chunk_bytes_per_thread": prop.CHUNK_BYTES,
            "malloc": malloc, "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    save_table("propagation_batch", rows, header, meta, notes=[
        f"One propagation of {batch} fields {n}x{n} padded to {PAD * n}x{PAD * n}, complex64, "
        "forward + backward (weighted intensity loss); medians over interleaved repeats; "
        "'x batched' = median of batched/variant per repeat (> 1: faster than batched fft2).",
        "propagate() takes the chunked pruned path on 1 CPU thread and one fft2 per chunk on "
        f"more (chunks of about {prop.CHUNK_BYTES >> 20} MiB of padded field per thread)."])


if __name__ == "__main__":
    main()

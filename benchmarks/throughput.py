"""Training throughput (samples/s) of a 5-layer D2NN: ours against LightRidge and torchoptics.

The network is LightRidge's D2NN tutorial geometry: 532 nm, 200×200 phase layers of 36 µm,
0.3 m between planes (input → layer 1 → … → layer 5 → detector: 6 propagations), every
propagation zero-padded to 400×400. One training step = forward through the 5 layers,
intensity, cross-entropy over 10 detector boxes of 20×20 px (``optodesign.tasks``, the same
loss code for every framework), backward and an Adam step. The input is a batch of random
amplitude images (throughput does not depend on the content).

* ours: ``DiffractiveStack`` of ``fp32`` quantizers + ``forward_stack`` (band-limited ASM,
  complex64; at this geometry ``propagate`` runs it as two 1-D convolutions, the transfer
  function factoring within 6.6e-4 rad: ``optics.propagation.separable_transfer``).
* LightRidge (``lightridge.layers.DiffractLayer_Raw``, ``approx="Fresnel"``, ``pad=100``, as
  shipped: its phase parameter is float64, so its modulation runs in complex128).
* torchoptics (``System`` of ``PhaseModulator``; ``measure_at_z`` with ASM, ``asm_pad=100``
  per side, default dtype float32).

Each (framework, allocator) is measured in a fresh subprocess, because the allocator is fixed
per process: glibc default, glibc with raised mmap/trim thresholds (``GLIBC_TUNABLES``), and
tcmalloc (``LD_PRELOAD``) when its library is found. Ours additionally runs as the CLI does
(``optodesign.allocator.tune_malloc()`` before torch is imported): by default the CLI raises
the same thresholds itself with ``mallopt`` ("glibc tuned by the CLI"), and with
``OPTODESIGN_NO_MALLOC_TUNING=1`` it keeps glibc's defaults (our "glibc default" row). Rounds
interleave the configurations, so a noisy neighbour on the shared cores hits all of them
alike; the table gives the median over rounds and ours ÷ LightRidge with the same allocator
(the CLI's mallopt thresholds are compared with LightRidge under ``GLIBC_TUNABLES``).

Usage: ``python benchmarks/throughput.py [--batch 32] [--warmup 2] [--steps 2] [--rounds 3]
[--threads 1] [--frameworks optodesign,lightridge,torchoptics]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WAVELENGTH, PITCH, N, DIST, LAYERS, PAD = 532e-9, 36e-6, 200, 0.3, 5, 100
GLIBC_TUNED = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296"
TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
            "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4")
FRAMEWORKS = ("optodesign", "lightridge", "torchoptics")


def _boxes() -> list[list[int]]:
    from optodesign.models.functional import auto_detectors

    return auto_detectors(10, (N, N), 20)


def build(framework: str) -> tuple[Any, Any, str]:
    """Returns (params, step_intensity(field) -> (B, N, N) intensity, version string)."""
    import torch

    if framework == "optodesign":
        import optodesign
        from optodesign.grid import Grid
        from optodesign.models.functional import forward_stack
        from optodesign.models.stack import DiffractiveStack
        from optodesign.quantize.registry import build_quantizer

        stack = DiffractiveStack([build_quantizer("fp32", levels=4) for _ in range(LAYERS)],
                                 (N, N), generator=torch.Generator().manual_seed(0))

        grid = Grid((N, N), PITCH, pad=(N + 2 * PAD) / N)  # PAD pixels on each side

        def run(field: torch.Tensor) -> torch.Tensor:
            u = forward_stack(field, stack.transmissions("train"), [DIST] * (LAYERS + 1),
                              grid=grid, wavelength=WAVELENGTH)
            return u.real**2 + u.imag**2

        return list(stack.parameters()), run, getattr(optodesign, "__version__", "dev")
    if framework == "lightridge":
        import importlib.metadata as md

        from lightridge import layers

        with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per layer
            mods = torch.nn.ModuleList(
                [layers.DiffractLayer_Raw(wavelength=WAVELENGTH, pixel_size=PITCH, size=N,
                                          pad=PAD, distance=DIST, approx="Fresnel",
                                          phase_mod=True) for _ in range(LAYERS)]
                + [layers.DiffractLayer_Raw(wavelength=WAVELENGTH, pixel_size=PITCH, size=N,
                                            pad=PAD, distance=DIST, approx="Fresnel",
                                            phase_mod=False)])

        def run(field: torch.Tensor) -> torch.Tensor:
            x = field
            for m in mods:
                x = m(x)
            return x.abs() ** 2

        return list(mods.parameters()), run, md.version("lightridge")
    if framework == "torchoptics":
        import torchoptics
        from torchoptics.elements import PhaseModulator

        torchoptics.set_default_dtype(torch.float32)
        phases = [torch.nn.Parameter(torch.zeros(N, N)) for _ in range(LAYERS)]
        system = torchoptics.System(*[PhaseModulator(p, z=DIST * (k + 1), spacing=PITCH)
                                      for k, p in enumerate(phases)])

        def run(field: torch.Tensor) -> torch.Tensor:
            f = torchoptics.Field(field, wavelength=WAVELENGTH, spacing=PITCH)
            out = system.measure_at_z(f, z=DIST * (LAYERS + 1), propagation_method="ASM",
                                      asm_pad=(PAD, PAD))
            return out.intensity()

        return list(system.parameters()), run, torchoptics.__version__
    raise ValueError(f"framework: unknown {framework!r}")


def worker(framework: str, batch: int, steps: int, threads: int,
           warmup: int = 1) -> dict[str, Any]:
    """Time ``steps`` training steps (after ``warmup`` untimed ones) in this process.

    Ours first goes through the CLI's allocator set-up (before torch is imported, as in the
    CLI); ``malloc`` in the result says what it did (None for the peers).
    """
    status = None
    if framework == "optodesign":
        from optodesign.allocator import tune_malloc

        status = tune_malloc()
    import torch

    from optodesign.tasks import D2NN, D2NNSetup

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    params, run, version = build(framework)
    opt = torch.optim.Adam(params, lr=0.01)
    boxes = _boxes()
    task = D2NN(D2NNSetup(detectors=tuple(tuple(b) for b in boxes), image_size=112),
                shape=(N, N))
    img = torch.zeros(batch, N, N)
    img[:, 44:156, 44:156] = torch.rand(batch, 112, 112)
    field = img.to(torch.complex64)
    y = torch.randint(0, 10, (batch,))

    def step() -> float:
        inten = run(field)
        loss = task.loss(inten.float(), y)  # cross-entropy, temperature 10
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(max(1, warmup)):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"framework": framework, "version": version, "malloc": status,
            "samples_per_s": batch / statistics.median(times)}


#: allocator label -> the family compared in the "x LightRidge" column
CLI_TUNED = "glibc tuned by the CLI (mallopt)"
FAMILY = {"glibc default": "glibc default", "glibc tuned (GLIBC_TUNABLES)": "glibc tuned",
          CLI_TUNED: "glibc tuned", "tcmalloc": "tcmalloc"}


def allocators() -> list[tuple[str, dict[str, str], tuple[str, ...] | None]]:
    """(label, environment, frameworks or None for all) per allocator configuration."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "GLIBC_TUNABLES", "OPTODESIGN_NO_MALLOC_TUNING")}
    out: list[tuple[str, dict[str, str], tuple[str, ...] | None]] = [
        ("glibc default", {**base, "OPTODESIGN_NO_MALLOC_TUNING": "1"}, None),
        (CLI_TUNED, base, ("optodesign",)),
        ("glibc tuned (GLIBC_TUNABLES)", {**base, "GLIBC_TUNABLES": GLIBC_TUNED}, None),
    ]
    lib = next((p for p in TCMALLOC if Path(p).exists()), None)
    if lib:
        out.append(("tcmalloc", {**base, "LD_PRELOAD": lib}, None))
    return out


def available(framework: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(framework) is not None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per measurement")
    p.add_argument("--steps", type=int, default=2, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per configuration")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help="comma-separated subset of " + ", ".join(FRAMEWORKS))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.steps, args.threads,
                                args.warmup)))
        return
    asked = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = sorted(set(asked) - set(FRAMEWORKS))
    if unknown:
        p.error(f"--frameworks: unknown {', '.join(unknown)}; choose from {', '.join(FRAMEWORKS)}")
    frameworks = [f for f in FRAMEWORKS if f in asked and available(f)]
    missing = [f for f in asked if f not in frameworks]
    allocs = allocators()
    res: dict[tuple[str, str], list[float]] = {}
    by_round: dict[tuple[str, str], dict[int, float]] = {}
    versions: dict[str, str] = {}
    mallocs: dict[tuple[str, str], set[str]] = {}
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for alloc, env, only in allocs:
            for fw in frameworks:
                if only is not None and fw not in only:
                    continue
                cmd = [sys.executable, __file__, "--worker", fw, "--batch", str(args.batch),
                       "--warmup", str(args.warmup), "--steps", str(args.steps),
                       "--threads", str(args.threads)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"round {r + 1}: {fw} with {alloc} failed: {tail}", flush=True)
                    continue
                rec = json.loads(proc.stdout.strip().splitlines()[-1])
                versions[fw] = rec["version"]
                res.setdefault((fw, alloc), []).append(rec["samples_per_s"])
                by_round.setdefault((fw, alloc), {})[r] = rec["samples_per_s"]
                if rec["malloc"] is not None:
                    mallocs.setdefault((fw, alloc), set()).add(rec["malloc"])
                print(f"round {r + 1}: {fw:11s} {alloc:30s} {rec['samples_per_s']:7.2f} "
                      f"samples/s", flush=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    rows: list[list[Any]] = []
    for fw in frameworks:
        for alloc, *_ in allocs:
            if (fw, alloc) not in med:
                continue
            peer_key = ("lightridge", _peer_alloc(alloc, allocs))
            peer = med.get(peer_key)
            ratio = paired = None
            if peer and fw != "lightridge":
                ratio = round(med[(fw, alloc)] / peer, 2)
                ours, theirs = by_round[(fw, alloc)], by_round[peer_key]
                both = [ours[r] / theirs[r] for r in ours if r in theirs]
                paired = round(statistics.median(both), 2) if both else None
            rows.append([f"{fw} {versions.get(fw, '')}".strip(), alloc,
                         round(med[(fw, alloc)], 2), ratio, paired,
                         " ".join(f"{v:.1f}" for v in res[(fw, alloc)])])
    header = ["framework", "allocator", "samples/s", "x LightRidge (same allocator)",
              "x LightRidge, paired", "per round"]
    meta = {"network": f"{LAYERS} phase layers {N}x{N}, pitch {PITCH * 1e6:g} um, "
                       f"wavelength {WAVELENGTH * 1e9:g} nm, {DIST} m spacing, "
                       f"padded to {N + 2 * PAD}x{N + 2 * PAD}",
            "batch": args.batch, "warmup_steps": args.warmup, "timed_steps": args.steps,
            "rounds": args.rounds, "torch_threads_per_process": args.threads,
            "allocators": {a: _describe(a, env) for a, env, _ in allocs},
            "ours_malloc_status": {a: sorted(v) for (fw, a), v in mallocs.items()
                                   if fw == "optodesign"},
            "frameworks_missing": missing,
            "wall_s": round(time.perf_counter() - t0, 1)}
    notes = [
        "samples/s = batch / median step time (forward + CE loss + backward + Adam), median "
        "over rounds of fresh processes (each round's value in the last column); rounds "
        "interleave every configuration. 'x LightRidge' = ratio of the medians; 'paired' = "
        "median over rounds of the ratio within a round (the two processes ran minutes "
        "apart, so a slow spell of the shared machine hits both).",
        "allocator = what the worker process ran with; ours always goes through the CLI's "
        "tune_malloc(): 'glibc default' is ours with OPTODESIGN_NO_MALLOC_TUNING=1 (the "
        "opt-out), 'glibc tuned by the CLI (mallopt)' is ours as `optodesign train` runs by "
        "default (no environment variable), compared with LightRidge under GLIBC_TUNABLES.",
        "LightRidge: DiffractLayer_Raw(approx='Fresnel', pad=100), as shipped (float64 "
        "phase -> complex128 modulation); torchoptics: System.measure_at_z(ASM, "
        "asm_pad=100), float32; ours: band-limited ASM, complex64, run as two 1-D "
        "convolutions (this geometry's transfer function factors within 6.6e-4 rad).",
        "The header's allocator line describes this parent process only.",
    ]
    save_table("throughput", rows, header, meta, notes=notes)


def _peer_alloc(alloc: str, allocs: list[tuple[str, dict[str, str], Any]]) -> str:
    """The allocator LightRidge ran with that belongs to ``alloc``'s family."""
    return next(a for a, _, only in allocs if only is None and FAMILY[a] == FAMILY[alloc])


def _describe(alloc: str, env: dict[str, str]) -> str:
    if "LD_PRELOAD" in env:
        return f"LD_PRELOAD={env['LD_PRELOAD']}"
    if "GLIBC_TUNABLES" in env:
        return f"GLIBC_TUNABLES={env['GLIBC_TUNABLES']}"
    if env.get("OPTODESIGN_NO_MALLOC_TUNING"):
        return "glibc defaults (ours: OPTODESIGN_NO_MALLOC_TUNING=1)"
    return "no variable set; ours: optodesign.allocator.tune_malloc() calls mallopt"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import save_table

    main()

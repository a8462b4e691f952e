"""Shared helpers for the benchmark scripts: what machine ran them, and how to save a table.

Every benchmark prints one fixed-width table and saves it twice, under
``benchmarks/results/<name>.txt`` (the printed table plus a machine header, for people) and
``benchmarks/results/<name>.json`` (``{"meta": ..., "machine": ..., "header": [...],
"rows": [[...], ...]}``, for scripts). Typical use::

    from _machine import machine_info, save_table

    rows = [[256, 1.2e-3, 1.1e-3], ...]
    save_table("propagation", rows, ["N", "ours s", "floor s"], {"repeats": 7})

Run benchmarks as scripts (``python benchmarks/<name>.py``) so that this module is importable
as ``_machine``. The allocator matters a lot on CPU (see DESIGN.md, "Platform facts"), so
:func:`machine_info` records whether tcmalloc is preloaded or glibc malloc is tuned.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Describe the machine and software a benchmark ran on.

    Returns:
        A JSON-serialisable dict: ``platform``, ``python``, ``cpu`` (model name), ``cores``
        (``os.cpu_count()``), ``affinity`` (cores this process may use), ``load_avg`` (1, 5,
        15 min; other processes on the same cores skew timings), ``torch``, ``torch_threads``,
        ``cuda`` (device name or None), ``numpy``, ``allocator`` (``"tcmalloc (LD_PRELOAD)"``,
        ``"glibc, GLIBC_TUNABLES=..."`` or ``"glibc default"``) and ``date`` (UTC, ISO 8601).
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
    }
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        info["affinity"] = None
    try:
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_avg"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    preload = os.environ.get("LD_PRELOAD", "")
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "tcmalloc" in preload:
        info["allocator"] = f"tcmalloc (LD_PRELOAD={preload})"
    elif "jemalloc" in preload:
        info["allocator"] = f"jemalloc (LD_PRELOAD={preload})"
    elif tunables:
        info["allocator"] = f"glibc, GLIBC_TUNABLES={tunables}"
    else:
        info["allocator"] = "glibc default"
    info["date"] = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    return info


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.2e}"
    return str(value)


def _json_value(value: Any) -> Any:
    """NaN/inf are not JSON; write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Render rows as a fixed-width text table (floats to 4 significant digits, None as '-')."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in header]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def save_table(
    name: str,
    rows: Sequence[Sequence[Any]],
    header: Sequence[str],
    meta: Mapping[str, Any] | None = None,
    *,
    notes: Sequence[str] = (),
) -> str:
    """Print a table and write ``results/<name>.txt`` and ``results/<name>.json``.

    Args:
        name: file stem, e.g. ``"propagation"``.
        rows: table rows; each as long as ``header``; values must be JSON-serialisable.
        header: column titles.
        meta: benchmark settings (geometry, repeats, ...), written to both files.
        notes: free-text lines printed and saved below the table (what exactly was run).

    Returns:
        The text written to the ``.txt`` file.
    """
    machine = machine_info()
    table = format_table(rows, header)
    head = [f"# {name} benchmark, {machine['date']}"]
    head += [f"# {k}: {v}" for k, v in machine.items() if k != "date"]
    head += [f"# {k}: {v}" for k, v in (meta or {}).items()]
    text = "\n".join([*head, "", table, *([""] + list(notes) if notes else [])]) + "\n"
    print(text, end="")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.txt").write_text(text, encoding="utf-8")
    payload = {"meta": dict(meta or {}), "machine": machine, "header": list(header),
               "rows": [[_json_value(v) for v in r] for r in rows], "notes": list(notes)}
    (RESULTS / f"{name}.json").write_text(
        json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8"
    )
    return text

"""``optodesign compare RUN [RUN...] [--out DIR]``: runs side by side.

Each RUN is a training run directory (``design.json``, ``metrics.csv``, ``run.json``), a
design directory (``optodesign import``, ``optodesign refine``) or a fab directory
(``manifest.json``, written by ``optodesign export``). For each, the table shows the key
settings (task, quantizer method, levels, grid, layers, epochs, process), the design's
metrics, and, when a fab directory is given or found inside the run directory, its DRC
result and the verify report found in it (``report.json`` one level down): the read-back
metric, the combined-error mean and PASS/FAIL. A fab directory whose recorded design
checksum is not the run's design is marked ``stale``.

With ``--out DIR`` it also writes ``compare.md`` (the table) and ``curves.png``: every
run's ``metrics.csv`` overlaid (training loss, and the test value of each task's primary
metric with the hard levels, solid, and on the training path, dashed), against the epoch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ._common import check_output_dir, user_errors

#: units of metrics on plot axes and in the table header (others are fractions, 0..1)
METRIC_UNITS = {"psnr": "dB", "uniformity_db": "dB"}


@dataclass
class Entry:
    """What the table shows of one RUN argument."""

    label: str
    path: Path
    settings: dict[str, str]
    metrics: dict[str, float]
    primary: str
    history: list[dict[str, float]] = field(default_factory=list)
    fab: dict[str, str] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: must hold a JSON object")
    return data


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: float(v) for k, v in row.items() if v not in (None, "")})
            except ValueError:
                raise UserError(f"{path}: not a metrics table (a non-number in {row!r})") \
                    from None
    return rows


def _scalar_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def _settings(meta: dict[str, Any], run_json: dict[str, Any] | None) -> dict[str, str]:
    q = meta.get("quantizer") if isinstance(meta.get("quantizer"), dict) else {}
    shape = meta.get("shape") or ["?", "?"]
    pitch = meta.get("pitch")
    size = f"{shape[0]}x{shape[1]}"
    if isinstance(pitch, (int, float)):
        from ..units import format_length

        size += f" @ {format_length(float(pitch), digits=4)}"
    epochs = run_json.get("epochs") if run_json else None
    return {"task": str(meta.get("task", "?")),
            "method": str(q.get("method", "?")),
            "levels": str(meta.get("n_levels", "?")),
            "size": size,
            "layers": str(meta.get("n_layers", "?")),
            "epochs": "-" if epochs is None else str(epochs),
            "process": str(q.get("process") or "-")}


def _fab_result(fab: Path, design_json: Path | None) -> dict[str, str]:
    """DRC and verify of a fab directory (``{}`` if it is none)."""
    manifest = fab / "manifest.json"
    if not manifest.is_file():
        return {}
    m = _read_json(manifest)
    out = {"fab": str(fab)}
    proc = m.get("process") if isinstance(m.get("process"), dict) else {}
    out["fab process"] = str(proc.get("name", "?"))
    drc = m.get("drc") if isinstance(m.get("drc"), dict) else {}
    out["drc"] = {True: "pass", False: "FAIL"}.get(drc.get("passed"), "?")
    recorded = (m.get("design") or {}).get("files", {}).get("design.json") \
        if isinstance(m.get("design"), dict) else None
    if design_json is not None and recorded and recorded != _sha256(design_json):
        out["drc"] += " (stale: design changed)"
    reports = sorted((p for p in fab.glob("*/report.json")), key=lambda p: p.stat().st_mtime)
    if reports:
        r = _read_json(reports[-1])
        tol = r.get("tolerance") if isinstance(r.get("tolerance"), dict) else {}
        trained = r.get("trained") if isinstance(r.get("trained"), dict) else {}
        nominal = _scalar_metrics(r.get("nominal"))
        metric = str(tol.get("metric", "?"))
        ok = bool(r.get("passed")) and trained.get("passed", True) is not False
        if metric in nominal:
            out["read back"] = f"{metric} {_fmt(nominal[metric])}"
        if isinstance(tol.get("value"), (int, float)):
            out["under errors"] = f"{tol.get('statistic', 'mean')} {_fmt(float(tol['value']))}"
        out["verify"] = "PASS" if ok else "FAIL"
    else:
        out["verify"] = "-"
    return out


def load_entry(path: Path) -> Entry:
    """Read one RUN argument (run, design or fab directory); one-line UserError if none."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a directory (give a run, design or fab directory)")
    design_json = path / "design.json"
    if not design_json.is_file():
        raise UserError(f"{path}: no design.json (not a run, design or fab directory)")
    meta = _read_json(design_json)
    run_json = _read_json(path / "run.json") if (path / "run.json").is_file() else None
    from ..tasks import SetupError, get_task

    try:
        primary = get_task(meta.get("task")).primary_metric
    except SetupError as e:
        raise UserError(f"{design_json}: {e}") from None
    entry = Entry(label=path.name or str(path), path=path,
                  settings=_settings(meta, run_json), metrics=_scalar_metrics(meta.get("metrics")),
                  primary=primary, history=_history(path / "metrics.csv"))
    if (path / "manifest.json").is_file():  # a fab directory itself
        entry.fab = _fab_result(path, None)
    else:
        fabs = sorted(p.parent for p in path.glob("*/manifest.json"))
        if fabs:
            entry.fab = _fab_result(fabs[0], design_json)
            if len(fabs) > 1:
                entry.fab["fab"] += f" (+{len(fabs) - 1} more)"
    return entry


def table(entries: list[Entry]) -> list[list[str]]:
    """Header and one row per entry."""
    metric_names = list(dict.fromkeys(k for e in entries for k in e.metrics))
    setting_names = ["task", "method", "levels", "size", "layers", "epochs", "process"]
    fab_names = ["drc", "read back", "under errors", "verify"]
    if not any(e.fab for e in entries):
        fab_names = []
    header = (["run"] + setting_names +
              [f"{m} [{METRIC_UNITS[m]}]" if m in METRIC_UNITS else m for m in metric_names]
              + fab_names)
    rows = [header]
    for e in entries:
        rows.append([e.label] + [e.settings[s] for s in setting_names]
                    + [_fmt(e.metrics[m]) if m in e.metrics else "-" for m in metric_names]
                    + [e.fab.get(f, "-") for f in fab_names])
    return rows


def format_table(rows: list[list[str]], *, markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in rows) + "\n"


def plot_curves(entries: list[Entry], path: Path) -> Path | None:
    """Overlaid training curves of every entry with a metrics.csv; None if none has one."""
    from ..plotting import new_figure, save_png

    with_history = [e for e in entries if e.history]
    if not with_history:
        return None
    primaries = list(dict.fromkeys(e.primary for e in with_history))
    fig = new_figure(4.2 * (1 + len(primaries)), 3.8)
    axes = [fig.add_subplot(1, 1 + len(primaries), i + 1) for i in range(1 + len(primaries))]
    colours = [f"C{i % 10}" for i in range(len(with_history))]
    for e, c in zip(with_history, colours):
        ep = [r["epoch"] for r in e.history if "epoch" in r]
        loss = [r.get("train_loss", math.nan) for r in e.history]
        axes[0].plot(ep, loss, "o-", color=c, label=e.label, ms=3)
        ax = axes[1 + primaries.index(e.primary)]
        for key, style, what in ((f"test_{e.primary}_hard", "o-", "hard levels"),
                                 (f"test_{e.primary}_soft", "s--", "training path")):
            ys = [r.get(key, math.nan) for r in e.history]
            if any(math.isfinite(y) for y in ys):
                ax.plot(ep, ys, style, color=c, ms=3, label=f"{e.label} ({what})")
    from matplotlib.ticker import MaxNLocator

    axes[0].set(xlabel="epoch", ylabel="training loss (the task's, dimensionless)",
                title="training loss")
    for name, ax in zip(primaries, axes[1:]):
        unit = METRIC_UNITS.get(name, "fraction")
        ax.set(xlabel="epoch", ylabel=f"test {name} [{unit}]", title=f"test {name}")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", default=None, type=click.Path(path_type=Path),
              help="Also write compare.md (the table) and curves.png (overlaid training "
                   "curves) here.")
@user_errors
def compare(runs: tuple[Path, ...], out_dir: Path | None) -> None:
    """Compare runs (run, design or fab directories): settings, metrics, fab and verify
    results, and overlaid training curves."""
    if out_dir is not None:
        check_output_dir(out_dir, "--out")
    entries = [load_entry(p) for p in runs]
    labels = [e.label for e in entries]
    if len(set(labels)) < len(labels):  # same basename: use the paths given
        for e in entries:
            e.label = str(e.path)
    rows = table(entries)
    click.echo(format_table(rows), nl=False)
    for e in entries:
        if e.fab.get("fab"):
            click.echo(f"  {e.label}: fab {e.fab['fab']}")
    if out_dir is None:
        if any(e.history for e in entries):
            click.echo("  (--out DIR also writes the table and the overlaid training curves)")
        return
    from ..fileio import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "compare.md", format_table(rows, markdown=True))
    png = plot_curves(entries, out_dir / "curves.png")
    click.echo(f"  table: {out_dir / 'compare.md'}"
               + (f"   curves: {png}" if png else "   (no metrics.csv: no curves)"))

"""The verify report: ``report.json`` (everything, for scripts), ``report.md`` (for people) and
PNG figures.

Files in the report directory (all deterministic: no timestamps, no timings; PNGs without
metadata):

``report.json``   ``format = "optodesign.verify/1"``; nominal metrics, trained metric and
                  whether the round trip reproduced it exactly, the error model (SI units,
                  rotation in degrees), the combined-error samples and their statistics, the
                  tolerance and its verdict, the sweep (magnitudes, per-sample values,
                  statistic, pass/fail, largest tolerated magnitude).
``report.md``     nominal metric; mean, std, min, 5th percentile under the combined errors;
                  the verdict; the sweep as a table.
``report.html``   the same as one self-contained page to share: the figures embedded as
                  ``data:`` URIs, inline style, no script, nothing loaded from elsewhere
                  (:mod:`optodesign.verify.html`).
``sweep.png``     the metric vs each error's magnitude, with the tolerance line.
``histogram.png`` the metric under the combined errors.
``outputs.png``   output intensities, nominal and one perturbed sample (D2NN: first test
                  images with the detector boxes; metasurfaces: target, nominal, perturbed).
``layers.png``    phase of every layer's transmission, nominal and one perturbed sample.
``confusion.png`` D2NN only: confusion matrices, nominal and summed over the samples.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..fileio import (
    atomic_write_json,
    atomic_write_text,
    foreign_entries,
    replace_dir,
)
from ..plotting import new_figure, save_png, show_plane
from ..tasks import get_task, task_of
from ..units import format_length, wrap_phase
from ..variation.spec import ERRORS
from .html import Block, Bullets, Figures, Heading, Para, Table, render_html
from .model import SimModel
from .montecarlo import VerifyResult

__all__ = ["FORMAT", "report_dict", "report_blocks", "report_markdown", "write_report",
           "format_magnitude",
           "tolerated_up_to", "check_report_dir", "verdict", "trained_drop", "trained_passed",
           "REPORT_FILES"]

FORMAT = "optodesign.verify/1"


def tolerated_up_to(sw: Any) -> str:
    """Largest passing magnitude of a sweep, and where the tolerance is crossed if it is."""
    if sw.estimate is None:
        return f">= {format_magnitude(sw.max_ok, sw.unit)} (all passed)"
    return (f"{format_magnitude(sw.max_ok, sw.unit)} (crossing ~"
            f"{format_magnitude(sw.estimate, sw.unit)})")


def format_magnitude(value: float, unit: str) -> str:
    """``4e-05, "m"`` → ``"40 um"``; ``0.1, "deg"`` → ``"0.1 deg"``; plain numbers as %.4g."""
    if unit == "m":
        return "0" if value == 0 else format_length(value, digits=3)
    if unit == "deg":
        return f"{value:.3g} deg"
    return f"{value:.3g}"


def _f(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def report_dict(r: VerifyResult) -> dict[str, Any]:
    """Everything in the report, JSON-serialisable (see module docstring)."""
    fab = r.fab
    tol = r.config.tolerance
    stat = tol.statistic_of(r.combined.values)
    nominal = {k: v for k, v in r.nominal.items() if isinstance(v, (int, float))}
    out: dict[str, Any] = {
        "format": FORMAT,
        "fab_dir": str(fab.fab_dir),
        "process": {"name": fab.process.name, "kind": fab.process.kind},
        "source": fab.source,
        "task": fab.design.task,
        "device": r.device,
        "seed": r.seed,
        "samples": r.samples,
        "samples_simulated": r.combined.computed,
        "test_samples": r.test_samples if _supervised(r) else None,
        "readback": {"levels_equal_design": fab.trained_levels_equal,
                     "notes": list(fab.notes),
                     "edits": _edits_json(fab),
                     "training_model": {k: v for k, v in r.readback.items()
                                        if isinstance(v, (int, float))}},
        "nominal": nominal,
        "model": {**r.model.to_json(), "label": r.model.label(),
                  "errors_model": r.errors_model.to_json(),
                  "training": SimModel.training(fab.design).to_json(),
                  "gap": r.model_gap,
                  "convergence": None if r.convergence is None else r.convergence.to_json()},
        "trained": {"metric": r.metric, "value": r.trained,
                    "round_trip_exact": r.round_trip_exact, "drop": trained_drop(r),
                    "max_drop": r.max_drop, "passed": trained_passed(r)},
        "passed": verdict(r),
        "errors": {"source": r.config.source or "default", "values": r.config.errors.to_dict(),
                   "units": {n: s.unit for n, s in ERRORS.items()},
                   "active": list(r.config.errors.active())},
        "tolerance": {"metric": r.metric, "max_drop": r.max_drop, "statistic": tol.statistic,
                      "value": stat, "drop": r.reference_value - stat,
                      "threshold": r.reference_value - r.max_drop, "passed": r.passed},
        "combined": {**r.combined.summary(),
                     "values": r.combined.values.tolist(),
                     "metrics": {k: v.tolist() for k, v in r.combined.metrics.items()}},
        "sweep": [{"error": s.name, "unit": s.unit, "random": s.random,
                   "magnitudes": list(s.magnitudes), "statistic": list(s.statistic),
                   "passed": list(s.passed), "max_ok": s.max_ok, "estimate": _f(s.estimate),
                   "values": [v.tolist() for v in s.values]} for s in r.sweep],
    }
    if "confusion" in r.nominal:
        out["nominal_confusion"] = r.nominal["confusion"]
    if r.combined.confusion is not None:
        out["combined"]["confusion"] = r.combined.confusion.tolist()
    return out


#: pixels listed one by one in report.json (all are counted)
EDITS_LISTED = 1000


def _edits_json(fab: Any) -> dict[str, Any] | None:
    """``verify --allow-edited``: the edited files and every pixel that differs (the first
    :data:`EDITS_LISTED` listed as ``[layer, row, col, design level, file level]``)."""
    e = getattr(fab, "edits", None)
    if e is None:
        return None
    rows = [[int(k) + 1, int(r), int(c), int(d), int(lv)]
            for (k, r, c, lv), d in zip(e.pixels[:EDITS_LISTED], e.design_levels)]
    return {"files": list(e.files), "pixels": e.count,
            "per_layer": e.per_layer(fab.n_layers),
            "columns": ["layer", "row", "col", "design_level", "file_level"],
            "differences": rows, "listed": len(rows)}


def _edits_blocks(fab: Any) -> list[Block]:
    e = getattr(fab, "edits", None)
    if e is None:
        return []
    head = (f"**Edited files** (`--allow-edited`): {', '.join(e.files) or 'none'} changed "
            f"after export; {e.count} pixel(s) make another structure than the design "
            f"(per layer: {', '.join(map(str, e.per_layer(fab.n_layers)))}); the results "
            "below simulate what the edited files make.")
    if not e.count:
        return [Para((head,))]
    rows = [(str(k + 1), str(r), str(c), str(d), str(lv))
            for (k, r, c, lv), d in list(zip(e.pixels, e.design_levels))[:20]]
    if e.count > 20:
        rows.append(("…", "", "", "", f"({e.count - 20} more in report.json)"))
    return [Para((head,)), Table(("layer", "row", "col", "design level", "file level"),
                                 tuple(rows))]


def _drc_line(manifest: Any) -> str:
    """What export's design-rule check found, as recorded in the manifest."""
    drc = dict(getattr(manifest, "drc", {}) or {})
    if "passed" not in drc:
        return "Design-rule check: not recorded in manifest.json."
    failing: dict[str, int] = {}
    for layer in getattr(manifest, "layers", ()):
        for rule, n in dict(getattr(layer, "drc", {}) or {}).get("counts", {}).items():
            if n:
                failing[rule] = failing.get(rule, 0) + int(n)
    detail = ", ".join(f"{k} {v}" for k, v in sorted(failing.items()))
    verdict_ = "passed" if drc["passed"] else "FAILED"
    return (f"Design-rule check at export ({drc.get('file', 'drc')}): **{verdict_}**"
            + (f" ({detail})." if detail else "."))


def report_blocks(r: VerifyResult, figures: list[str]) -> list[Block]:
    """The human-readable report as a document (headings, paragraphs, tables, figures):
    ``report.md`` and ``report.html`` are two renderings of it."""
    fab = r.fab
    tol = r.config.tolerance
    s = r.combined.summary()
    m = r.metric
    head = [f"Process **{fab.process.name}** ({fab.process.kind}), task {fab.design.task}, "
            f"read from **{fab.source.upper()}** files; {fab.design.n_layers} layer(s) of "
            f"{fab.design.shape[0]}x{fab.design.shape[1]} px, {fab.design.n_levels} levels."]
    if _supervised(r):
        head.append(f"Test images: {r.test_samples}.")
    head.append(_drc_line(fab.manifest))
    edits = _edits_blocks(fab)
    if edits:  # the edits paragraph continues the header's
        head.extend(edits.pop(0).lines)
    blocks: list[Block] = [Heading(1, f"Verify: {fab.fab_dir.name}"), Para(tuple(head)),
                           *edits]
    word = "PASS" if verdict(r) else "FAIL"
    drop = trained_drop(r)
    if drop is not None:
        first = (f"**{word}**: the files read back score {r.readback_value:.4g} under the "
                 f"training model, a drop of "
                 f"{drop:.4g} from the trained {r.trained:.4g} "
                 f"({'within' if trained_passed(r) else 'BEYOND'} the allowed "
                 f"{r.max_drop:.4g});")
    else:
        first = f"**{word}**: no trained {m} to compare the files with;"
    under = ("" if r.errors_model == r.model else
             f" (simulated under the training model, {r.errors_model.label()})")
    blocks.append(Para((first, f"under the combined errors{under}, {tol.statistic} {m} is "
                        f"{tol.statistic_of(r.combined.values):.4g}, "
                        f"a drop of {r.drop:.4g} from the files' {r.reference_value:.4g} "
                        f"({'within' if r.passed else 'BEYOND'} the allowed "
                        f"{r.max_drop:.4g}).")))
    trained = "n/a" if r.trained is None else f"{r.trained:.6g}"
    exact = {True: " (reproduced exactly)", False: " (differs)", None: ""}[r.round_trip_exact]
    training = SimModel.training(fab.design).label()
    blocks.append(Table(("", "value"), (
        (f"trained {m} (design.json)", f"{trained}{exact}"),
        (f"{m} of the files, training model ({training})", f"{r.readback_value:.6g}"),
        (f"{m} of the files, simulation model ({r.model.label()})", f"{r.nominal_value:.6g}"),
        ("model gap (simulation − training)", f"{r.model_gap:+.4g}"),
        (f"mean under errors ({r.samples} samples)", f"{s['mean']:.4g}"),
        ("std", f"{s['std']:.3g}"),
        ("min", f"{s['min']:.4g}"),
        ("5th percentile", f"{s['p5']:.4g}"))))
    blocks += _model_blocks(r)
    active = r.config.errors.active()
    src = r.config.source or "the default model, no --errors file"
    blocks.append(Para((f"Errors ({src}): " + (", ".join(
        f"{n} = {format_magnitude(getattr(r.config.errors, n), ERRORS[n].unit)}"
        for n in active) or "none") + ".",)))
    if fab.notes:
        blocks.append(Bullets(tuple(fab.notes)))
    if r.sweep:
        blocks += [Heading(2, "Tolerance sweep (one error at a time)"),
                   Para((f"{tol.statistic} {m} at each magnitude; the largest magnitude "
                         f"keeping the drop within {r.max_drop:.4g}:",)),
                   Table(("error", "magnitudes", m, "tolerated up to"), tuple(
                       (sw.name, ", ".join(format_magnitude(x, sw.unit) for x in sw.magnitudes),
                        ", ".join(f"{v:.3g}" for v in sw.statistic), tolerated_up_to(sw))
                       for sw in r.sweep))]
    if figures:
        blocks.append(Figures(tuple((f, FIGURE_CAPTIONS.get(f, "")) for f in figures)))
    return blocks


#: what each figure shows (report.html's captions)
FIGURE_CAPTIONS = {
    "sweep.png": "the metric vs each error's magnitude (band: min..max), with the tolerance",
    "histogram.png": "the metric under the combined errors",
    "outputs.png": "output intensities, nominal and one perturbed sample, viewed from the "
                   "source towards the detector",
    "layers.png": "phase of every layer's transmission, nominal and one perturbed sample",
    "confusion.png": "confusion matrices, nominal and summed over the samples"}


def report_markdown(r: VerifyResult, figures: list[str]) -> str:
    """The short human-readable report (:func:`report_blocks` as Markdown)."""
    return markdown(report_blocks(r, figures))


def _md_row(cells: tuple[str, ...]) -> str:
    return "|" + "".join(f" {c} |" if c else " |" for c in cells)


def markdown(blocks: list[Block]) -> str:
    """``blocks`` as Markdown, one blank line between blocks."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append("\n".join(b.lines))
        elif isinstance(b, Table):
            out.append("\n".join([_md_row(b.header), "|" + " --- |" * len(b.header),
                                   *map(_md_row, b.rows)]))
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {x}" for x in b.items))
        else:
            out.append("Figures: " + ", ".join(f"[{f}]({f})" for f, _ in b.items) + ".")
    return "\n\n".join(out) + "\n"


def _model_blocks(r: VerifyResult) -> list[Block]:
    """How the files were simulated: the model, and the convergence ladder that chose it."""
    c = r.convergence
    if c is None:
        return [Para((f"Simulation model: {r.model.label()} (--fast: the training model; not "
                      "checked for convergence).",))]
    state = "converged" if c.converged else "NOT converged (ladder exhausted)"
    rows = []
    for st in c.steps:
        val = "" if math.isnan(st.metric) else f"{st.metric:.6g}"
        de = "" if st.energy_change is None else f"{100 * st.energy_change:.3g} %"
        rows.append(("RS" if st.model.method == "rs" else "ASM", f"{st.model.pad:g}",
                     str(st.model.oversample), val, de, f"{st.seconds:.1f} s"))
    steps = ("the oversampling (x2): the Rayleigh-Sommerfeld convolution is exact in the "
             "padding at pad 2, where nothing wraps around and no band limit cuts"
             if r.model.method == "rs" else "the padding (x2) and of the oversampling (x2)")
    return [Para((f"Simulation model: {r.model.label()}, {state}: a step of {steps} from it "
                  f"changes the readings (detector energies) of the probe inputs by at most "
                  f"{100 * c.energy_tolerance:.3g} % (relative L2; each row's change is from "
                  f"the row above). Each layer is drawn with {r.model.oversample}x"
                  f"{r.model.oversample} samples per pixel.",)),
            Table(("method", "pad", "samples/pixel", f"{r.metric} (every test image)",
                   "change of readings", "time"), tuple(rows))]


# ---------------------------------------------------------------------------- figures
def _supervised(r: VerifyResult) -> bool:
    """Whether the design's task is scored on test images (a D2NN)."""
    return get_task(r.fab.design.task).supervised


def _axis_scale(values: tuple[float, ...], unit: str) -> tuple[float, str]:
    if unit != "m":
        return 1.0, unit
    a = max(abs(v) for v in values) or 1.0
    for u, s in (("m", 1.0), ("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9)):
        if a >= s:
            return s, u
    return 1e-12, "pm"


_QUANTITY_LABEL = {"relative": "relative", "index": "Δn", "kappa": "κ", "angle": "deg",
                   "length": "m", "signed_length": "m"}


def _plot_sweep(r: VerifyResult, path: Path) -> None:
    n = len(r.sweep)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = new_figure(3.3 * cols, 2.7 * rows, dpi=100)
    thr = r.reference_value - r.max_drop
    for i, sw in enumerate(r.sweep):
        ax = fig.add_subplot(rows, cols, i + 1)
        scale, unit = _axis_scale(sw.magnitudes, sw.unit)
        x = np.asarray(sw.magnitudes) / scale
        lo = [float(np.min(v)) for v in sw.values]
        hi = [float(np.max(v)) for v in sw.values]
        ax.fill_between(x, lo, hi, color="C0", alpha=0.2, lw=0)
        ax.plot(x, sw.statistic, "o-", color="C0", ms=3)
        ax.axhline(thr, color="C3", lw=1, ls="--")
        ax.set_title(sw.name, fontsize=9)
        ax.set_xlabel(unit or _QUANTITY_LABEL[ERRORS[sw.name].quantity], fontsize=8)
        ax.set_ylabel(r.metric, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{r.config.tolerance.statistic} {r.metric} vs error magnitude "
                 f"(band: min..max; dashed: tolerance)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def _plot_histogram(r: VerifyResult, path: Path) -> None:
    fig = new_figure(4.5, 3.2, dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    v = r.combined.values
    bins = max(5, min(40, int(np.sqrt(v.size)) * 2))
    if np.ptp(v) == 0:
        ax.bar([float(v[0])], [v.size], width=0.01 * max(abs(float(v[0])), 1e-3))
    else:
        ax.hist(v, bins=bins, color="C0", alpha=0.8)
    ax.axvline(r.reference_value, color="k", lw=1, label="nominal")
    ax.axvline(r.reference_value - r.max_drop, color="C3", lw=1, ls="--", label="tolerance")
    ax.axvline(r.config.tolerance.statistic_of(v), color="C1", lw=1,
               label=r.config.tolerance.statistic)
    ax.set_xlabel(r.metric, fontsize=8)
    ax.set_ylabel("samples", fontsize=8)
    ax.set_title(f"{r.metric} under the combined errors ({r.samples} samples)", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _plot_outputs(r: VerifyResult, path: Path) -> None:
    """Output planes, viewed from the source towards the detector (row 0 at the top, x to
    the right: ``manifest.json`` ``conventions.viewing``, as in the training plots)."""
    ex = r.examples
    nom, smp = ex["nominal_out"], ex["sample_out"]
    pitch = r.fab.design.pitch
    if _supervised(r):

        boxes = task_of(r.fab.design).boxes()
        n = nom.shape[0]
        fig = new_figure(2.8 * n, 5.6, dpi=100)
        fig.set_layout_engine("constrained")
        labels = ex.get("labels", np.full(n, -1))
        for row, (imgs, name) in enumerate(((nom, "nominal"), (smp, "sample 0"))):
            for i in range(n):
                ax = fig.add_subplot(2, n, row * n + i + 1)
                show_plane(ax, imgs[i], pitch=pitch, cmap="inferno", boxes=boxes,
                           box_colors=["lime" if c == labels[i] else "w"
                                       for c in range(len(boxes))],
                           title=f"{name}, label {int(labels[i])}")
    else:
        # the outputs share one colour scale (the colorbar beside the last); the task's zoom
        # box (a lens's focus) is outlined and shown enlarged in panels of its own
        d = r.fab.design
        zoom = task_of(d).zoom_box()
        out_step, out_coord = task_of(d).output_axes(pitch=pitch, wavelength=d.wavelength,
                                                     focal_length=d.distances[-1])
        scale = {"vmin": 0.0, "vmax": float(max(np.max(nom), np.max(smp)))}
        outline = [zoom] if zoom is not None else []
        panels = [(ex["target"], "target", {})] if "target" in ex else []
        panels += [(nom, "nominal output", {**scale, "boxes": outline}),
                   (smp, "sample 0 output", {**scale, "boxes": outline})]
        if zoom is not None:
            panels += [(nom, "nominal, enlarged", {**scale, "window": zoom}),
                       (smp, "sample 0, enlarged", {**scale, "window": zoom})]
        fig = new_figure(3.4 * len(panels), 3.2, dpi=100)
        fig.set_layout_engine("constrained")
        for i, (img, name, kw) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            show_plane(ax, img, pitch=out_step, coordinate=out_coord, cmap="inferno",
                       title=name, colorbar="intensity" if i == len(panels) - 1 else None, **kw)
    save_png(fig, path)


def _plot_layers(r: VerifyResult, path: Path) -> None:
    ex = r.examples
    nt, st = ex["nominal_t"], ex["sample_t"]
    K = nt.shape[0]
    fig = new_figure(3.2 * K, 5.8, dpi=100)
    fig.set_layout_engine("constrained")
    pitch = r.fab.design.pitch
    for row, (t, name) in enumerate(((nt, "nominal"), (st, "sample 0"))):
        for k in range(K):
            ax = fig.add_subplot(2, K, row * K + k + 1)
            ph = wrap_phase(np.angle(t[k]))
            ph[np.abs(t[k]) == 0] = np.nan
            show_plane(ax, ph, pitch=pitch, cmap="twilight", vmin=0, vmax=2 * np.pi,
                       title=f"layer {k + 1} phase, {name}",
                       colorbar="phase (rad)" if k == K - 1 else None)
    save_png(fig, path)


def _plot_confusion(r: VerifyResult, path: Path) -> None:
    fig = new_figure(7.0, 3.4, dpi=100)
    mats = [(np.asarray(r.nominal["confusion"]), "nominal")]
    if r.combined.confusion is not None:
        mats.append((r.combined.confusion, f"combined errors ({r.samples} samples)"))
    for i, (c, name) in enumerate(mats):
        ax = fig.add_subplot(1, 2, i + 1)
        norm = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_png(fig, path)


#: every name :func:`write_report` may write: a previous report's entries by these names are
#: replaced, any other entry of the report directory is kept
REPORT_FILES = frozenset({"report.json", "report.md", "report.html", "sweep.png",
                          "histogram.png", "outputs.png", "layers.png", "confusion.png"})


#: what an interrupted atomic write of one of them leaves (``fileio.atomic_path``)
_PARTIAL = re.compile(r"^\.(" + "|".join(re.escape(Path(n).stem) for n in REPORT_FILES)
                      + r")\.[a-z0-9_]{8}\.(json|md|html|png)$")


def _report_owned(option: str) -> Callable[[Path], set[str]]:
    def owned(out: Path) -> set[str]:
        names = {p.name for p in out.iterdir()}
        partial = {n for n in names if _PARTIAL.match(n)}
        names -= partial
        ours = False
        try:
            ours = json.loads((out / "report.json").read_text(encoding="utf-8")).get(
                "format") == FORMAT
        except (OSError, ValueError, AttributeError, RecursionError):
            pass
        if not ours and not names <= REPORT_FILES:
            raise UserError(f"{option}: {out} exists, is not empty and holds no verify report "
                            "(report.json); refusing to write into it (choose a new directory)")
        return set(REPORT_FILES) | partial

    return owned


def check_report_dir(out_dir: str | Path, *, option: str = "--report") -> None:
    """Fail fast, before any simulation, when ``out_dir`` cannot take a report.

    It must be absent, empty or a previous report directory (one holding our
    ``report.json``, or nothing but names verify writes). (Whether it can be created and
    written is the CLI's ``check_output_dir``.)

    Raises:
        UserError: one line naming ``option``.
    """
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise UserError(f"{option}: {out} exists and is not a directory")
    foreign_entries(out, _report_owned(option))


def trained_drop(r: VerifyResult) -> float | None:
    """Drop of the metric from training (design.json) to the files read back, if recorded."""
    return None if r.trained is None else r.trained - r.readback_value


def trained_passed(r: VerifyResult) -> bool:
    """Whether the files read back score within the tolerance of the trained metric."""
    d = trained_drop(r)
    return d is None or d <= r.max_drop * (1 + 1e-9) + 1e-12


def verdict(r: VerifyResult) -> bool:
    """The verify gate: the files read back keep the trained metric within the tolerance,
    *and* the combined errors keep the read-back metric within it (``r.passed``)."""
    return bool(r.passed and trained_passed(r))


def write_report(r: VerifyResult, out_dir: str | Path, *, plots: bool = True,
                 option: str = "--report") -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``report.html`` and the figures into
    ``out_dir``, atomically.

    The report is built in a hidden directory beside ``out_dir`` and swapped in at the end
    (:func:`optodesign.fileio.replace_dir`): an interrupted run leaves the previous report
    as it was, never a mix of old and new files. A previous report's files are replaced;
    other entries of ``out_dir`` are kept unchanged; a non-empty directory that holds no
    report is refused (one line naming ``option``).

    Returns:
        ``{name: path}`` of every file written (paths inside ``out_dir``).
    """
    final = Path(out_dir)
    written: dict[str, Path] = {}
    figures: list[str] = []
    with replace_dir(final, option=option, owned=_report_owned(option)) as staging:
        out = staging.path
        if plots:
            jobs = [("sweep.png", _plot_sweep, bool(r.sweep)),
                    ("histogram.png", _plot_histogram, True),
                    ("outputs.png", _plot_outputs, bool(r.examples)),
                    ("layers.png", _plot_layers, bool(r.examples)),
                    ("confusion.png", _plot_confusion, "confusion" in r.nominal)]
            for name, fn, wanted in jobs:
                if wanted:
                    fn(r, out / name)
                    written[name] = final / name
                    figures.append(name)
        data = report_dict(r)
        data["figures"] = figures
        atomic_write_json(out / "report.json", data)
        written["report.json"] = final / "report.json"
        blocks = report_blocks(r, figures)
        atomic_write_text(out / "report.md", markdown(blocks))
        written["report.md"] = final / "report.md"
        atomic_write_text(out / "report.html",
                          render_html(blocks, lambda name: (out / name).read_bytes()))
        written["report.html"] = final / "report.html"
    return written

"""Design-rule checks of level maps against a process (what a mask shop or printer refuses).

Rules, per design layer (pixel indices are ``(row, col)``; µm positions use the layout origin
of :func:`optodesign.export.gds.layout_origin`):

``min_feature`` (error)
    Thin processes: a run of one level (per-level, print) or of one mask state (binary etch:
    each mask's etched regions *and* the spaces between them) narrower than
    ``ceil(min_feature / pitch)`` pixels, along rows or columns. Unetched spaces touching the
    array edge continue outside it and are not counted. Pillars: a pillar narrower than
    ``min_feature`` or a gap ``lattice − size`` narrower than it.
``aspect_ratio`` (error)
    Thin processes: a run of one level whose wall (height above both neighbours along the
    run's direction) or trench (depth below both) exceeds ``max_aspect_ratio`` × its width.
    Pillars: ``height / size > max_aspect_ratio``.
``isolated_pixels`` (severity from the process)
    A pixel whose four neighbours all have another level.
``diagonal_necks`` (severity from the process)
    Two pixels of one level (or one mask) touching only at a corner while the other diagonal
    pair differs: a zero-width neck that a polygon width check flags. Location: the shared
    corner (row, col of the pixel to its upper right).

Every check is vectorised numpy; a 1000×1000 layer takes a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..fabrules import Deck
from ..process import Process
from ..raster import aspect_ratio_runs, diagonal_necks, isolated_pixels

__all__ = [
    "Violation",
    "LayerReport",
    "DRCReport",
    "isolated_pixels",
    "diagonal_necks",
    "aspect_ratio_runs",
    "check_layer",
    "check_levels",
]


@dataclass(frozen=True)
class Violation:
    """One rule's result on one layer.

    Attributes:
        rule: ``min_feature``, ``aspect_ratio``, ``isolated_pixels`` or ``diagonal_necks``.
        severity: ``error`` fails the check; ``warn`` is reported only.
        count: number of violations.
        examples: up to ``max_examples`` locations: row, col, x_um, y_um and a detail.
        limit: the rule's limit, for people (e.g. ``"min 2 px (1 um)"``).
    """

    rule: str
    severity: str
    count: int
    examples: tuple[dict[str, Any], ...] = ()
    limit: str = ""

    @property
    def fails(self) -> bool:
        return self.severity == "error" and self.count > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "count": self.count,
            "limit": self.limit,
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class LayerReport:
    """All rules on one design layer (``layer`` is 1-based)."""

    layer: int
    violations: tuple[Violation, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not any(v.fails for v in self.violations)

    def count(self, rule: str) -> int:
        return sum(v.count for v in self.violations if v.rule == rule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "passed": self.passed,
            "violations": [v.to_dict() for v in self.violations],
        }


@dataclass(frozen=True)
class DRCReport:
    """The design-rule summary of a whole design."""

    process: str
    layers: tuple[LayerReport, ...]

    @property
    def passed(self) -> bool:
        return all(layer.passed for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "optodesign.drc/1",
            "process": self.process,
            "passed": self.passed,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def summary(self) -> str:
        """One line per layer: rule counts (``!`` marks failing rules)."""
        lines = []
        for layer in self.layers:
            parts = [
                f"{v.rule}={v.count}{'!' if v.fails else ''}" for v in layer.violations
            ]
            status = "ok" if layer.passed else "FAIL"
            lines.append(f"layer {layer.layer}: {status}  " + "  ".join(parts))
        return "\n".join(lines)

    def to_text(self) -> str:
        """A readable report with example locations."""
        out = [f"design-rule check, process {self.process}: "
               f"{'PASSED' if self.passed else 'FAILED'}"]
        for layer in self.layers:
            out.append(f"\nlayer {layer.layer}: {'passed' if layer.passed else 'FAILED'}")
            for v in layer.violations:
                out.append(f"  {v.rule:16s} {v.severity:6s} {v.count:8d}   {v.limit}")
                for e in v.examples:
                    out.append(
                        f"      row {e['row']:5d} col {e['col']:5d}  "
                        f"(x {e['x_um']:.3f} um, y {e['y_um']:.3f} um)  {e.get('detail', '')}"
                    )
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- per layer
class _Locator:
    def __init__(self, shape: tuple[int, int], pitch: float, origin: tuple[float, float],
                 max_examples: int):
        self.shape, self.pitch, self.origin, self.n = shape, pitch, origin, max_examples

    def examples(self, rows: np.ndarray, cols: np.ndarray,
                 detail: Callable[[int], str] | None = None,
                 *, corner: bool = False) -> tuple[dict[str, Any], ...]:
        """The first ``max_examples`` locations in (row, col) order; ``detail(i)`` describes
        violation ``i`` (called for the kept ones only)."""
        order = np.lexsort((cols, rows))[: self.n]
        out = []
        off = 0.0 if corner else 0.5
        for i in order:
            r, c = int(rows[i]), int(cols[i])
            e: dict[str, Any] = {
                "row": r,
                "col": c,
                "x_um": round((self.origin[0] + (c + off) * self.pitch) / 1e-6, 6),
                "y_um": round((self.origin[1] + (r + off) * self.pitch) / 1e-6, 6),
            }
            if detail is not None:
                e["detail"] = detail(int(i))
            out.append(e)
        return tuple(out)


def check_layer(
    levels: np.ndarray,
    *,
    process: Process,
    pitch: float,
    level_table: np.ndarray,
    layer: int = 1,
    max_examples: int = 10,
    origin: tuple[float, float] | None = None,
) -> LayerReport:
    """Check one design layer against the process's design rules.

    Args:
        levels: int ``(ny, nx)`` level map.
        process: fabrication process.
        pitch: pixel pitch, metres.
        level_table: complex ``(L,)`` level table of the layer.
        layer: 1-based layer index (for the report).
        max_examples: locations kept per rule.
        origin: lower-left corner of pixel (0, 0), metres (default: the GDS layout origin).
    """
    from .gds import layout_origin

    lv = np.asarray(levels).astype(np.int64)
    table = np.asarray(level_table, dtype=np.complex128)
    if origin is None:
        origin = layout_origin(lv.shape, pitch, process.gds.precision)
    loc = _Locator(lv.shape, pitch, origin, max_examples)
    rules = process.rules
    out: list[Violation] = []
    structure = process.structure

    # rules decided per level (pillars: sizes and gaps against the minimum feature)
    for f in structure.level_rule_failures(table, rules, layer=layer):
        r, c = np.nonzero(np.isin(lv, f.bad_levels))

        def level_detail(i: int, r=r, c=c, details=f.details) -> str:
            return details[int(lv[r[i], c[i]])]

        out.append(Violation(f.rule, "error", int(r.size), loc.examples(r, c, level_detail),
                             f.limit))
    # raster rules on the drawn label maps (levels, or each binary mask): the one
    # implementation training and refine apply too (optodesign.fabrules.Deck)
    deck = Deck.of(process, pitch=pitch, level_table=table, layer=layer)
    found = deck.raster(lv)
    if not found:
        return LayerReport(layer, tuple(out))
    maps = deck.maps(lv)
    n_min = deck.n_min

    r, c, w, src = found["min_feature"]

    def run_detail(i: int) -> str:
        name = maps[int(src[i])].name
        return f"{name + ' ' if name else ''}run {int(w[i])} px < {n_min} px"

    out.append(Violation("min_feature", "error", int(r.size), loc.examples(r, c, run_detail),
                         f"min {n_min} px ({rules.min_feature / 1e-6:g} um)"))

    r, c, ratio = found["aspect_ratio"]
    out.append(Violation("aspect_ratio", "error", int(r.size),
                         loc.examples(r, c, lambda i: f"height/width {ratio[i]:.2f}"),
                         f"max {rules.max_aspect_ratio:g}"))

    if "isolated_pixels" in found:
        r, c = found["isolated_pixels"]
        out.append(Violation("isolated_pixels", rules.isolated_pixels, int(r.size),
                             loc.examples(r, c, lambda i: f"level {lv[r[i], c[i]]}"),
                             "no single-pixel islands"))
    if "diagonal_necks" in found:
        # one entry per corner (per mask): a checkerboard window necks two levels at once
        r, c, src = found["diagonal_necks"]
        names = [m.name for m in maps]
        out.append(Violation(
            "diagonal_necks", rules.diagonal_necks, int(r.size),
            loc.examples(r, c, lambda i: f"{names[int(src[i])] or 'levels'} corner contact",
                         corner=True),
            "no corner-only contacts"))
    return LayerReport(layer, tuple(out))


def check_levels(
    levels: np.ndarray,
    level_tables: np.ndarray,
    *,
    process: Process,
    pitch: float,
    max_examples: int = 10,
) -> DRCReport:
    """Check every layer of ``(K, ny, nx)`` level maps with ``(K, L)`` level tables."""
    lv = np.asarray(levels)
    if lv.ndim == 2:
        lv = lv[None]
    tables = np.asarray(level_tables, dtype=np.complex128)
    if tables.ndim == 1:
        tables = np.broadcast_to(tables, (lv.shape[0], tables.shape[0]))
    reports = tuple(
        check_layer(lv[k], process=process, pitch=pitch, level_table=tables[k], layer=k + 1,
                    max_examples=max_examples)
        for k in range(lv.shape[0])
    )
    return DRCReport(process.name, reports)

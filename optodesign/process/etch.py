"""Multi-level surface relief by etching (``kind = "etch"``).

``mode = "binary"``: ``m`` binary masks give ``2**m`` levels; mask ``j`` is etched
``d * 2**j`` deep with ``d = λ / (2**m (n − n0))``. Level ``k`` keeps ``k·d`` of material above
the deepest etch floor, so the etched depth of level ``k`` is ``(L − 1 − k)·d`` and **mask
``j`` opens where bit ``j`` of ``L − 1 − k`` is set** (the GDS polygons of a mask are the
*etched* regions). This rule is written once, in :meth:`Etch.masks` and its inverse
:meth:`Etch.decode`. ``mode = "per-level"``: one GDS layer per level (grayscale /
dose-per-level writing), any level phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import UserError
from ..schema import Table
from .spec import PHASE_TOLERANCE, EtchSpec
from .structure import TWO_PI, RuleMap, SiteReadout, ThinStructure, level_phase

__all__ = ["Etch"]


@dataclass(frozen=True)
class Etch(ThinStructure):
    """An etched relief on a substrate (see the module docstring)."""

    kind: ClassVar[str] = "etch"
    section_keys: ClassVar[set[str]] = {"mode", "masks", "substrate"}
    preferred_source: ClassVar[str] = "gds"

    spec: EtchSpec = EtchSpec()

    @staticmethod
    def read_spec(s: Table) -> EtchSpec:
        mode = s.choice("mode", ("binary", "per-level"), "binary")
        masks = 0
        if mode == "binary":
            masks = s.integer("masks", low=1, high=8)
        elif "masks" in s:
            raise s.error("masks", "only for mode = 'binary'")
        return EtchSpec(mode=mode, masks=masks,
                        substrate=s.length("substrate", 0.5e-3, allow_zero=True))

    @property
    def binary(self) -> bool:
        return self.spec.mode == "binary"

    @property
    def base_thickness(self) -> float:
        return self.spec.substrate

    @property
    def etch_step(self) -> float:
        """Binary etch unit depth ``d = λ / (2**m (n − n0))``, metres."""
        return self.height_per_2pi / (2**self.spec.masks)

    @property
    def fixed_n_levels(self) -> int | None:
        return 2**self.spec.masks if self.binary else None

    def check_n_levels(self, n_levels: int) -> None:
        if n_levels < 2:
            raise UserError(f"n_levels: need at least 2 levels, got {n_levels}")
        if self.binary:
            if n_levels != self.fixed_n_levels:
                raise UserError(
                    f"n_levels: process {self.name!r} etches {self.spec.masks} binary masks, "
                    f"which make exactly {self.fixed_n_levels} levels; the design has "
                    f"{n_levels}"
                )
            return
        self._check_layer_count(n_levels)

    def n_gds_layers(self, n_levels: int) -> int:
        """Binary: one layer per mask; per-level: one per level."""
        return self.spec.masks if self.binary else n_levels

    def check_tables(self, level_tables: np.ndarray, *, layer_kind: str) -> None:
        """Binary masks make only the uniform phases ``2πk/L``."""
        if self.binary:
            phases = level_phase(np.angle(np.asarray(level_tables, dtype=np.complex128)))
            L = phases.shape[-1]
            want = TWO_PI * np.arange(L) / L
            for k, row in enumerate(phases):
                err = np.abs(np.angle(np.exp(1j * (row - want))))
                bad = np.flatnonzero(err > PHASE_TOLERANCE)
                if bad.size:
                    j = int(bad[0])
                    raise UserError(
                        f"level_tables: layer {k + 1} level {j} has phase {row[j]:.4f} rad; "
                        f"{self.spec.masks} binary masks make only 2πk/{L} (expected "
                        f"{want[j]:.4f}); use an etch process with mode = 'per-level'"
                    )
        super().check_tables(level_tables, layer_kind=layer_kind)

    def _row_extra(self, level: int, heights: np.ndarray) -> dict[str, Any]:
        n_levels = heights.size
        layers = self.gds_layers(n_levels)
        if self.binary:
            code = (n_levels - 1) - level
            masks = [j for j in range(self.spec.masks) if (code >> j) & 1]
            return {"depth": code * self.etch_step, "masks": masks,
                    "gds_layers": [list(layers[j]) for j in masks]}
        return {"depth": float(heights.max()) - float(heights[level]),
                "gds_layers": [list(layers[level])]}

    # ------------------------------------------------------------------ the mask rule
    def masks(self, levels: np.ndarray, n_levels: int) -> list[np.ndarray]:
        """Binary: mask ``j`` = bit ``j`` of ``L − 1 − level``; per-level: one map per level."""
        if not self.binary:
            return super().masks(levels, n_levels)
        code = (n_levels - 1) - np.asarray(levels).astype(np.int64)
        return [((code >> j) & 1).astype(bool) for j in range(self.spec.masks)]

    def decode(self, covers: list[np.ndarray], sites: SiteReadout | None, *,
               shape: tuple[int, int], n_levels: int, level_table: np.ndarray | None,
               where: str) -> np.ndarray:
        """Binary: level ``L − 1 − code`` with bit ``j`` of the code set where mask ``j``
        covers the pixel; per-level: the level whose layer covers it."""
        if not self.binary:
            return super().decode(covers, sites, shape=shape, n_levels=n_levels,
                                  level_table=level_table, where=where)
        layers = self.gds_layers(n_levels)
        code = np.zeros(covers[0].shape, dtype=np.int64)
        for j, cov in enumerate(covers):
            if cov.max(initial=0) > 1:
                raise UserError(f"{where}: mask {j} ({layers[j][0]}/{layers[j][1]}) has "
                                "overlapping polygons")
            code |= (cov > 0).astype(np.int64) << j
        return ((n_levels - 1) - code).astype(np.int16)

    def rule_maps(self, levels: np.ndarray, n_levels: int) -> list[RuleMap]:
        """Binary: each mask (the unexposed field continues outside; necks of the etched
        regions count); per-level: the level map."""
        if not self.binary:
            return super().rule_maps(levels, n_levels)
        return [RuleMap(f"mask {j}", m.astype(np.int64), background=0, polygon_label=1)
                for j, m in enumerate(self.masks(levels, n_levels))]

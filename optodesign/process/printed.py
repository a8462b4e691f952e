"""A printed thickness map on a base plate (``kind = "print"``).

``h = h_base + φ λ / (2π (n − n0))`` (φ wrapped to [0, 2π)), with optional absorption
``kappa``; one GDS layer per level, and the STL is what the printer receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import UserError
from ..schema import Table
from .spec import PrintSpec
from .structure import ThinStructure

__all__ = ["Print"]


@dataclass(frozen=True)
class Print(ThinStructure):
    """A printed relief (see the module docstring)."""

    kind: ClassVar[str] = "print"
    section_keys: ClassVar[set[str]] = {"base", "stl_units"}
    preferred_source: ClassVar[str] = "stl"

    spec: PrintSpec = PrintSpec(0.0)

    @staticmethod
    def read_spec(s: Table) -> PrintSpec:
        return PrintSpec(base=s.length("base", allow_zero=True),
                         stl_units=s.choice("stl_units", ("mm", "um"), "mm"))

    @property
    def stl_units(self) -> str:
        """The STL files' default units (``[print] stl_units``)."""
        return self.spec.stl_units

    @property
    def base_thickness(self) -> float:
        return self.spec.base

    @property
    def fixed_n_levels(self) -> int | None:
        return None

    def check_n_levels(self, n_levels: int) -> None:
        if n_levels < 2:
            raise UserError(f"n_levels: need at least 2 levels, got {n_levels}")
        self._check_layer_count(n_levels)

    def n_gds_layers(self, n_levels: int) -> int:
        """One layer per level."""
        return n_levels

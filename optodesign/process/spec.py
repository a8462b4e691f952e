"""What a process file says: the frozen records of ``layouts/*.toml`` (no physics here).

:mod:`optodesign.process.reader` builds them from a file; the structures
(:mod:`~optodesign.process.etch`, :mod:`~optodesign.process.pillars`,
:mod:`~optodesign.process.printed`) turn them into physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Kind",
    "Severity",
    "Material",
    "Rules",
    "GdsSpec",
    "EtchSpec",
    "PillarSpec",
    "PrintSpec",
    "StructureSpec",
    "WAVELENGTH_TOLERANCE",
    "ATOM_MATCH_TOLERANCE",
    "PHASE_TOLERANCE",
]

Kind = Literal["etch", "pillars", "print"]
Severity = Literal["ignore", "warn", "error"]
#: Relative wavelength mismatch between a design and a process that is refused.
WAVELENGTH_TOLERANCE = 0.01
#: Tolerance when matching a design's complex level table to a meta-atom table.
ATOM_MATCH_TOLERANCE = 1e-6
#: Tolerance (radians) when checking that a design's phases are the uniform steps of binary masks.
PHASE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Material:
    """Optical constants at the process wavelength.

    Attributes:
        n: refractive index of the structure material.
        kappa: extinction coefficient (imaginary index), >= 0; field decays as exp(−2πκh/λ).
        n0: index of the surrounding medium (air = 1).
    """

    n: float
    kappa: float = 0.0
    n0: float = 1.0


@dataclass(frozen=True)
class Rules:
    """Design rules checked by :mod:`optodesign.export.drc`.

    Attributes:
        min_feature: smallest line or space the process resolves, metres.
        max_aspect_ratio: largest height (etch depth, wall, pillar height) / width.
        isolated_pixels: how a pixel whose four neighbours all differ counts.
        diagonal_necks: how same-level pixels touching only at a corner count (a zero-width
            neck that a mask shop's width check flags).
    """

    min_feature: float
    max_aspect_ratio: float = math.inf
    isolated_pixels: Severity = "warn"
    diagonal_necks: Severity = "error"


@dataclass(frozen=True)
class GdsSpec:
    """GDSII/OASIS settings.

    Attributes:
        unit: user unit in metres (1 µm).
        precision: database unit in metres (1 nm).
        layers: ``(layer, datatype)`` per mask / level / pillar layer; empty = ``(k + 1, 0)``.
        text_layer: ``(layer, texttype)`` of the label of each top cell.
        mark_layer: ``(layer, datatype)`` of alignment marks.
        alignment_marks: add crosses outside the four corners of each layer.
        mark_size: cross arm length in metres (``None``: 20 pitches).
    """

    unit: float = 1e-6
    precision: float = 1e-9
    layers: tuple[tuple[int, int], ...] = ()
    text_layer: tuple[int, int] = (100, 0)
    mark_layer: tuple[int, int] = (101, 0)
    alignment_marks: bool = False
    mark_size: float | None = None


@dataclass(frozen=True)
class EtchSpec:
    """Multi-level relief etch (``[etch]``).

    Attributes:
        mode: ``"binary"`` (m masks, 2**m levels) or ``"per-level"`` (one layer per level).
        masks: number of binary masks m (binary mode).
        substrate: substrate thickness under the relief (for STL), metres.
    """

    mode: Literal["binary", "per-level"] = "binary"
    masks: int = 0
    substrate: float = 0.5e-3


@dataclass(frozen=True)
class PillarSpec:
    """Nanopillar metasurface with a meta-atom table (``[pillars]``).

    Attributes:
        height: pillar height, metres.
        lattice: lattice constant (= design pitch), metres.
        shape: ``"circle"`` (size = diameter) or ``"square"`` (size = side).
        substrate: substrate thickness, metres (documentation only; no STL for pillars).
        circle_points: vertices of a circle polygon (area kept exact, see export.gds).
        sizes: pillar size of each atom, metres (0 = empty lattice site).
        atoms: complex transmission of each atom, relative to the bare lattice.
    """

    height: float
    lattice: float
    shape: Literal["circle", "square"]
    sizes: tuple[float, ...]
    atoms: tuple[complex, ...]
    substrate: float = 0.5e-3
    circle_points: int = 64


@dataclass(frozen=True)
class PrintSpec:
    """A printed thickness map on a base plate (``[print]``).

    Attributes:
        base: base plate thickness, metres.
        stl_units: the STL files' default units (``"mm"``: slicers; ``"um"``: two-photon
            printing software), which ``optodesign export --stl-units`` overrides.
    """

    base: float
    stl_units: str = "mm"


StructureSpec = EtchSpec | PillarSpec | PrintSpec

"""The physical description of one fabricated stack, nominal or perturbed.

Built by a structure (:meth:`optodesign.process.structure.Structure.physical`) from the files a
fab directory holds, changed by :mod:`optodesign.variation.perturb`, turned into transmissions
by the structure again (:meth:`~optodesign.process.structure.Structure.element_transmissions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Physical"]


@dataclass(frozen=True, eq=False)
class Physical:
    """One fabricated stack as physics.

    Attributes:
        kind: ``"thin"`` (relief heights) or ``"pillars"``.
        heights: float64 ``(K, ny, nx)`` metres: relief above the base plate / etch floor
            (thin), pillar height or 0 for an empty site (pillars).
        base: base plate / substrate thickness, metres (heights are clipped at ``−base``).
        n: material refractive index. n0: medium index.
        element_wavelength: wavelength of the element physics, metres (the process's, so the
            nominal transmissions equal the trained level table).
        wavelength: wavelength of the propagation, metres (the design's).
        distances: ``K + 1`` distances, metres.
        kappa_extra: extinction added to the material's κ.
        bias: line-width bias, metres per edge.
        oversample: sub-pixels per pixel for the bias.
        shifts: ``(K, 2)`` lateral ``(dy, dx)`` offsets, metres (``None``: none).
        rotations: ``(K,)`` rotations, radians (``None``: none).
        atoms: int ``(K, ny, nx)`` meta-atom of every site (pillars).
        sizes: float64 ``(K, ny, nx)`` pillar sizes, metres (pillars).
    """

    kind: Literal["thin", "pillars"]
    heights: np.ndarray
    base: float
    n: float
    n0: float
    element_wavelength: float
    wavelength: float
    distances: tuple[float, ...]
    kappa_extra: float = 0.0
    bias: float = 0.0
    oversample: int = 8
    shifts: np.ndarray | None = None
    rotations: np.ndarray | None = None
    atoms: np.ndarray | None = None
    sizes: np.ndarray | None = None

    @property
    def height_floor(self) -> float:
        """The lowest a perturbed height may go: a thin element cannot be thinner than no plate
        at all (``−base``), a pillar not shorter than nothing (0)."""
        return -self.base if self.kind == "thin" else 0.0

    def shift_array(self) -> np.ndarray:
        K = self.heights.shape[0]
        return np.zeros((K, 2)) if self.shifts is None else np.asarray(self.shifts, float)

    def rotation_array(self) -> np.ndarray:
        K = self.heights.shape[0]
        return np.zeros(K) if self.rotations is None else np.asarray(self.rotations, float)

    def element_key(self) -> tuple:
        """Identity of everything the element transmissions depend on (for caching)."""
        return (id(self.heights), id(self.sizes), self.n, self.kappa_extra,
                self.element_wavelength, self.bias, self.oversample)

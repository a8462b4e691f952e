"""The :class:`Process` record: one validated fabrication route and its structure.

Everything kind-specific is done by ``process.structure`` (:mod:`optodesign.process.structure`);
the methods here are the stable entry points that training, export and verify call.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, UserError
from ..units import format_length
from .kinds import KINDS
from .spec import WAVELENGTH_TOLERANCE, GdsSpec, Kind, Material, Rules, StructureSpec
from .structure import Structure, take_levels

if TYPE_CHECKING:
    from ..design import Design

__all__ = ["Process"]


@dataclass(frozen=True)
class Process:
    """One fabrication route, validated. Build with :func:`~optodesign.process.load_process`.

    Attributes:
        name: short name (``"thz-printed"``).
        description: one line for people.
        kind: ``"etch"``, ``"pillars"`` or ``"print"``.
        wavelength: design wavelength of the process, metres.
        material: optical constants.
        pitch_min, pitch_max: pixel pitch the process can make, metres.
        rules: design rules.
        gds: GDS units and layer map.
        spec: the kind-specific section of the file (:mod:`optodesign.process.spec`).
        references: citations for the numbers.
        source: the file it was read from (``""`` when built in code).
        text: the file's text (kept so a manifest can copy it).
        structure: the physics of this kind (built from the fields above).
    """

    name: str
    description: str
    kind: Kind
    wavelength: float
    material: Material
    pitch_min: float
    pitch_max: float
    rules: Rules
    gds: GdsSpec
    spec: StructureSpec
    references: tuple[str, ...] = ()
    source: str = ""
    text: str = ""
    structure: Structure = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cls = KINDS[self.kind]
        object.__setattr__(self, "structure", cls(  # type: ignore[call-arg]
            name=self.name, wavelength=self.wavelength, material=self.material, gds=self.gds,
            spec=self.spec))

    # ------------------------------------------------------------------ derived quantities
    @property
    def sha256(self) -> str:
        """SHA-256 of the process file text (``""`` when built in code)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest() if self.text else ""

    @property
    def base_thickness(self) -> float:
        """Base plate (print) or substrate (etch, pillars) thickness under the structure, m."""
        return self.structure.base_thickness

    @property
    def fixed_n_levels(self) -> int | None:
        """The only level count the process can make (binary etch, pillars), else ``None``."""
        return self.structure.fixed_n_levels

    def _kind_only(self, attr: str) -> Any:
        """A quantity that only some kinds define (``height_per_2pi``, ``pillar_table``)."""
        value = getattr(self.structure, attr, None)
        if value is None:
            raise ConfigError(f"process {self.name!r}: {attr} is not defined for kind "
                              f"{self.kind!r}")
        return value

    @property
    def height_per_2pi(self) -> float:
        """Relief height giving 2π of phase, ``λ / (n − n0)``, metres (relief processes)."""
        return self._kind_only("height_per_2pi")

    @property
    def etch_step(self) -> float:
        """Binary etch unit depth ``d = λ / (2**m (n − n0))``, metres (etch)."""
        return self._kind_only("etch_step")

    # ------------------------------------------------------------------ levels and layers
    def check_n_levels(self, n_levels: int) -> None:
        """Raise :class:`UserError` when the process cannot make ``n_levels`` levels."""
        self.structure.check_n_levels(n_levels)

    def gds_layers(self, n_levels: int) -> tuple[tuple[int, int], ...]:
        """``(layer, datatype)`` of each GDS layer the export writes (binary etch: one per
        mask; per-level etch and print: one per level; pillars: one)."""
        return self.structure.gds_layers(n_levels)

    def level_table(self, levels: int | Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """Complex transmission of each level, relative to the base plate, complex128 ``(L,)``.

        The trainer uses this table, so a design trained on a process verifies exactly.

        Args:
            levels: an int ``L`` (uniform phases ``2πk/L`` for relief processes; the whole
                table for pillars), an array of level phases in radians (relief processes),
                or ``None`` for the process's own count (binary etch, pillars).

        Returns:
            ``(L,)`` complex128; relief: ``exp(iφ_k) exp(−2πκ Δh_k/λ)``; pillars: the atom
            table with the phase of atom 0 as reference.
        """
        if levels is None:
            levels = self.fixed_n_levels
            if levels is None:
                raise UserError(
                    f"level_table: process {self.name!r} ({self.kind}) makes any number of "
                    "levels; pass n_levels"
                )
        return self.structure.level_table(levels)

    def level_values(self, level_table: np.ndarray) -> np.ndarray:
        """The physical value of each level of a level table: relief height or pillar size,
        metres (:attr:`Structure.value_name <optodesign.process.structure.Structure>`)."""
        return self.structure.level_values(level_table)

    # ------------------------------------------------------------------ relief physics
    def level_heights(self, level_phases: np.ndarray) -> np.ndarray:
        """Relief height of each level above the base plate, metres (relief processes).

        Args:
            level_phases: ``(..., L)`` radians; wrapped to [0, 2π) first.
        """
        return self._kind_only("level_heights")(level_phases)

    def transmission(self, height_map: np.ndarray, *, wavelength: float | None = None,
                     n: float | None = None) -> np.ndarray:
        """Thin-element transmission of a relief, relative to the base plate (relief
        processes): :func:`~optodesign.process.structure.thin_transmission` with the
        process's material; ``wavelength`` and ``n`` override the process's."""
        return self._kind_only("transmission")(height_map, wavelength=wavelength, n=n)

    def heights(self, levels: np.ndarray, level_phases: np.ndarray) -> np.ndarray:
        """Relief height of every pixel above the base plate (pillars: pillar height or 0).

        Args:
            levels: ``(ny, nx)`` or ``(K, ny, nx)`` integer level indices.
            level_phases: ``(L,)`` or ``(K, L)`` radians (relief processes); for pillars the
                complex level tables ``(L,)`` / ``(K, L)`` instead.

        Returns:
            float64 heights in metres, the shape of ``levels``. Total thickness is
            ``base_thickness + heights``.
        """
        levels = np.asarray(levels)
        pillar_sizes = getattr(self.structure, "pillar_sizes", None)
        if pillar_sizes is not None:
            sizes = pillar_sizes(levels, level_phases)
            return np.where(sizes > 0, self.structure.natural_height, 0.0)
        per_level = self.level_heights(np.asarray(level_phases, dtype=np.float64))
        return take_levels(per_level, levels)

    def thickness(self, levels: np.ndarray, level_phases: np.ndarray) -> np.ndarray:
        """``base_thickness + heights(levels, level_phases)``, metres."""
        return self.base_thickness + self.heights(levels, level_phases)

    # ------------------------------------------------------------------ pillars
    def pillar_table(self) -> np.ndarray:
        """The meta-atom transmissions with atom 0's phase as reference (pillars)."""
        return self._kind_only("pillar_table")()

    def level_atoms(self, level_table: np.ndarray, *, layer: int | None = None) -> np.ndarray:
        """Which meta-atom each design level is: int64 ``(L,)`` indices (pillars)."""
        return self._kind_only("level_atoms")(level_table, layer=layer)

    def pillar_sizes(self, levels: np.ndarray, level_table: np.ndarray) -> np.ndarray:
        """Pillar size (metres) of every pixel; 0 = empty site (pillars)."""
        return self._kind_only("pillar_sizes")(levels, level_table)

    def pillar_transmission(self, sizes: np.ndarray) -> np.ndarray:
        """Transmission of pillars of the given sizes by the nearest table entry (pillars)."""
        return self._kind_only("pillar_transmission")(sizes)

    # ------------------------------------------------------------------ design checks
    def check_geometry(self, *, wavelength: float, pitch: float, field: str | None = None,
                       whose: str = "the design") -> None:
        """Refuse a wavelength more than 1 % off the process's, or a pitch it cannot make.

        Args:
            wavelength, pitch: metres.
            field: what the message starts with (default ``wavelength`` / ``pitch``; a training
                config passes ``quantization.process``).
            whose: what the values belong to, for the message.

        Raises:
            UserError: one line naming the field and both values.
        """
        what = (field or "wavelength", field or "pitch")
        lam_d, lam_p = wavelength, self.wavelength
        if abs(lam_d - lam_p) > WAVELENGTH_TOLERANCE * lam_p:
            raise UserError(
                f"{what[0]}: {whose} is for {format_length(lam_d)} but process "
                f"{self.name!r} is for {format_length(lam_p)} "
                f"({abs(lam_d - lam_p) / lam_p:.1%} apart, more than 1 %)"
            )
        p = pitch
        lattice = getattr(self.spec, "lattice", None)
        if lattice is not None and not math.isclose(p, lattice, rel_tol=1e-6):
            raise UserError(
                f"{what[1]}: {whose} pitch {format_length(p)} is not the pillar lattice "
                f"{format_length(lattice)} of process {self.name!r}"
            )
        if p < self.pitch_min * (1 - 1e-9):
            raise UserError(
                f"{what[1]}: {whose} pitch {format_length(p)} is below the minimum "
                f"{format_length(self.pitch_min)} of process {self.name!r}"
            )
        if p > self.pitch_max * (1 + 1e-9):
            raise UserError(
                f"{what[1]}: {whose} pitch {format_length(p)} is above the maximum "
                f"{format_length(self.pitch_max)} of process {self.name!r}"
            )

    def check_design(self, design: Design) -> None:
        """Refuse a design this process cannot make; one-line :class:`UserError`.

        Checks the wavelength (within 1 %), the pitch (process limits; the lattice for
        pillars), the level count, and that the level tables are makeable (uniform steps for
        binary masks, meta-atoms of the table for pillars).
        """
        self.check_geometry(wavelength=design.wavelength, pitch=design.pitch)
        self.check_n_levels(design.n_levels)
        self.structure.check_tables(design.level_tables, layer_kind=design.layer_kind)

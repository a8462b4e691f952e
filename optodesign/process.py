"""Fabrication processes: what a design level becomes physically (``layouts/*.toml``).

A process file states, for one fabrication route, the wavelength it is made for, the material
(index ``n``, extinction ``kappa``, surrounding medium ``n0``), the pixel pitch it can make, its
design rules, the GDS layer map and units, and how a level becomes a structure:

``etch``
    Multi-level surface relief. ``mode = "binary"``: ``m`` binary masks give ``2**m`` levels;
    mask ``j`` is etched ``d * 2**j`` deep with ``d = λ / (2**m (n − n0))``. Level ``k`` keeps
    ``k·d`` of material above the deepest etch floor, so the etched depth of level ``k`` is
    ``(L − 1 − k)·d`` and mask ``j`` opens where bit ``j`` of ``L − 1 − k`` is set (the GDS
    polygons of a mask are the *etched* regions). ``mode = "per-level"``: one GDS layer per
    level (grayscale / dose-per-level writing), any level phases.
``pillars``
    A meta-atom table: pillar size (diameter or side) → complex transmission ``t``. Level ``k``
    of a design is the atom whose transmission it was trained with.
``print``
    A thickness map ``h = h_base + φ λ / (2π (n − n0))`` printed on a base plate (φ wrapped to
    [0, 2π)), with optional absorption ``kappa``.

Sign convention (DESIGN.md): time dependence ``exp(−iωt)``, a plane wave going +z is
``exp(ikz)``, so a lossy material has the complex index ``n + iκ`` (κ >= 0). Replacing a
thickness ``Δh`` of medium ``n0`` by material multiplies the field by
``exp(i 2π (n − n0) Δh / λ) · exp(−2π κ Δh / λ)``: more material = more phase delay = a
*larger* phase, and never gain. Every transmission here is *relative to the base plate*
(relief height 0), so ``|t| <= 1`` and a level-0 relief of zero has ``t = 1``.

All lengths are metres, phases radians. Physics lives in pure numpy methods of the frozen
:class:`Process`; the file is validated once in :func:`load_process`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import ConfigError, UserError
from .units import UnitsError, format_length, parse_length, parse_quantity

if TYPE_CHECKING:
    from .design import Design

__all__ = [
    "Process",
    "Material",
    "Rules",
    "GdsSpec",
    "EtchSpec",
    "PillarSpec",
    "PrintSpec",
    "load_process",
    "shipped_processes",
    "effective_index_atom",
    "wrap_phase",
]

log = logging.getLogger(__name__)

Kind = Literal["etch", "pillars", "print"]
Severity = Literal["ignore", "warn", "error"]
TWO_PI = 2.0 * math.pi
#: Relative wavelength mismatch between a design and a process that is refused.
WAVELENGTH_TOLERANCE = 0.01
#: Tolerance when matching a design's complex level table to a meta-atom table.
ATOM_MATCH_TOLERANCE = 1e-6
#: Tolerance (radians) when checking that a design's phases are the uniform steps of binary masks.
PHASE_TOLERANCE = 1e-3


def wrap_phase(phase: np.ndarray | float) -> np.ndarray:
    """Wrap phases (radians) to [0, 2π); values within 1e-9 of 2π become 0."""
    p = np.mod(np.asarray(phase, dtype=np.float64), TWO_PI)
    return np.where(p > TWO_PI - 1e-9, 0.0, p)


# ---------------------------------------------------------------------------- dataclasses
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
    """Multi-level relief etch.

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
    """Nanopillar metasurface with a meta-atom table.

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
    """A printed thickness map on a base plate.

    Attributes:
        base: base plate thickness, metres.
    """

    base: float


Structure = EtchSpec | PillarSpec | PrintSpec


@dataclass(frozen=True)
class Process:
    """One fabrication route, validated (see module docstring). Build with :func:`load_process`.

    Attributes:
        name: short name (``"thz-printed"``).
        description: one line for people.
        kind: ``"etch"``, ``"pillars"`` or ``"print"``.
        wavelength: design wavelength of the process, metres.
        material: optical constants.
        pitch_min, pitch_max: pixel pitch the process can make, metres.
        rules: design rules.
        gds: GDS units and layer map.
        structure: the kind-specific part.
        references: citations for the numbers.
        source: the file it was read from (``""`` when built in code).
        text: the file's text (kept so a manifest can copy it).
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
    structure: Structure
    references: tuple[str, ...] = ()
    source: str = ""
    text: str = ""

    # ------------------------------------------------------------------ derived quantities
    @property
    def sha256(self) -> str:
        """SHA-256 of the process file text (``""`` when built in code)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest() if self.text else ""

    @property
    def is_thin(self) -> bool:
        """True for thin-element processes (etch, print): a level is a relief height."""
        return self.kind in ("etch", "print")

    @property
    def base_thickness(self) -> float:
        """Base plate (print) or substrate (etch, pillars) thickness under the structure, m."""
        s = self.structure
        return s.base if isinstance(s, PrintSpec) else s.substrate

    @property
    def height_per_2pi(self) -> float:
        """Relief height giving 2π of phase, ``λ / (n − n0)``, metres (thin processes)."""
        return self.wavelength / (self.material.n - self.material.n0)

    @property
    def etch_step(self) -> float:
        """Binary etch unit depth ``d = λ / (2**m (n − n0))``, metres."""
        s = self._etch()
        return self.height_per_2pi / (2**s.masks)

    @property
    def fixed_n_levels(self) -> int | None:
        """The only level count the process can make (binary etch, pillars), else ``None``."""
        s = self.structure
        if isinstance(s, EtchSpec) and s.mode == "binary":
            return 2**s.masks
        if isinstance(s, PillarSpec):
            return len(s.atoms)
        return None

    def _etch(self) -> EtchSpec:
        if not isinstance(self.structure, EtchSpec):
            raise ConfigError(f"process {self.name!r}: kind is {self.kind!r}, not 'etch'")
        return self.structure

    def _pillars(self) -> PillarSpec:
        if not isinstance(self.structure, PillarSpec):
            raise ConfigError(f"process {self.name!r}: kind is {self.kind!r}, not 'pillars'")
        return self.structure

    def _thin(self, what: str) -> None:
        if not self.is_thin:
            raise ConfigError(
                f"process {self.name!r}: {what} needs a thin-element process (etch or print); "
                "pillars use pillar_sizes / pillar_transmission"
            )

    # ------------------------------------------------------------------ level counts, layers
    def check_n_levels(self, n_levels: int) -> None:
        """Raise :class:`UserError` when the process cannot make ``n_levels`` levels."""
        fixed = self.fixed_n_levels
        s = self.structure
        if n_levels < 2:
            raise UserError(f"n_levels: need at least 2 levels, got {n_levels}")
        if isinstance(s, EtchSpec) and s.mode == "binary" and n_levels != fixed:
            raise UserError(
                f"n_levels: process {self.name!r} etches {s.masks} binary masks, which make "
                f"exactly {fixed} levels; the design has {n_levels}"
            )
        if isinstance(s, PillarSpec) and n_levels > len(s.atoms):
            raise UserError(
                f"n_levels: process {self.name!r} has {len(s.atoms)} meta-atoms; the design has "
                f"{n_levels} levels"
            )
        one_layer_per_level = fixed is None  # per-level etch and print
        if one_layer_per_level and self.gds.layers and n_levels > len(self.gds.layers):
            raise UserError(
                f"n_levels: process {self.name!r} maps {len(self.gds.layers)} GDS layers "
                f"(gds.layers), one per level; the design has {n_levels} levels"
            )

    def gds_layers(self, n_levels: int) -> tuple[tuple[int, int], ...]:
        """``(layer, datatype)`` of each GDS layer the export writes.

        Binary etch: one per mask; per-level etch and print: one per level; pillars: one
        (the layer of the pillar polygons inside the pillar cells).
        """
        s = self.structure
        if isinstance(s, EtchSpec) and s.mode == "binary":
            count = s.masks
        elif isinstance(s, PillarSpec):
            count = 1
        else:
            count = n_levels
        if self.gds.layers:
            if len(self.gds.layers) < count:
                raise UserError(
                    f"gds.layers: process {self.name!r} lists {len(self.gds.layers)} layers, "
                    f"{count} needed"
                )
            return tuple(self.gds.layers[:count])
        return tuple((k + 1, 0) for k in range(count))

    # ------------------------------------------------------------------ thin-element physics
    def level_heights(self, level_phases: np.ndarray) -> np.ndarray:
        """Relief height of each level above the base plate, metres.

        Args:
            level_phases: ``(..., L)`` radians; wrapped to [0, 2π) first.

        Returns:
            ``(..., L)`` heights ``φ λ / (2π (n − n0))`` in metres, >= 0.
        """
        self._thin("level_heights")
        return wrap_phase(level_phases) * (self.height_per_2pi / TWO_PI)

    def transmission(
        self,
        height_map: np.ndarray,
        *,
        wavelength: float | None = None,
        n: float | None = None,
    ) -> np.ndarray:
        """Thin-element transmission of a relief, relative to the base plate.

        ``t = exp(i 2π (n − n0) h / λ) · exp(−2π κ h / λ)`` (sign convention in the module
        docstring). Verify calls this with perturbed heights, index or wavelength; the index is
        not dispersed automatically (pass ``n`` for the detuned wavelength).

        Args:
            height_map: ``(..., ny, nx)`` relief heights above the base plate, metres.
            wavelength: metres; default the process wavelength.
            n: material index; default the process index.

        Returns:
            complex128 array of the same shape.
        """
        self._thin("transmission")
        lam = self.wavelength if wavelength is None else float(wavelength)
        n_mat = self.material.n if n is None else float(n)
        h = np.asarray(height_map, dtype=np.float64)
        phase = TWO_PI * (n_mat - self.material.n0) * h / lam
        amp = np.exp(-TWO_PI * self.material.kappa * h / lam)
        return amp * np.exp(1j * phase)

    def level_table(self, levels: int | Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """Complex transmission of each level, relative to the base plate, complex128 ``(L,)``.

        The trainer uses this table, so a design trained on a process verifies exactly.

        Args:
            levels: an int ``L`` (uniform phases ``2πk/L`` for thin processes; the whole table
                for pillars), an array of level phases in radians (thin processes), or
                ``None`` for the process's own count (binary etch, pillars).

        Returns:
            ``(L,)`` complex128; thin: ``exp(iφ_k) exp(−2πκ Δh_k/λ)``; pillars: the atom
            table with the phase of atom 0 as reference.
        """
        if levels is None:
            count = self.fixed_n_levels
            if count is None:
                raise UserError(
                    f"level_table: process {self.name!r} ({self.kind}) makes any number of "
                    "levels; pass n_levels"
                )
            levels = count
        if isinstance(levels, (int, np.integer)):
            count = int(levels)
            self.check_n_levels(count)
            if isinstance(self.structure, PillarSpec):
                if count != len(self.structure.atoms):
                    raise UserError(
                        f"n_levels: process {self.name!r} has {len(self.structure.atoms)} "
                        f"meta-atoms; ask for all of them (got {count})"
                    )
                return self.pillar_table()
            phases = TWO_PI * np.arange(count) / count
        else:
            phases = np.asarray(levels, dtype=np.float64)
            if phases.ndim != 1:
                raise UserError(f"level_table: expected (L,) phases, got shape {phases.shape}")
            if isinstance(self.structure, PillarSpec):
                raise UserError(
                    f"level_table: process {self.name!r} uses meta-atoms; phases cannot choose "
                    "them, pass n_levels"
                )
            self.check_n_levels(int(phases.size))
        return self.transmission(self.level_heights(phases))

    def heights(self, levels: np.ndarray, level_phases: np.ndarray) -> np.ndarray:
        """Relief height of every pixel above the base plate (pillars: pillar height or 0).

        Args:
            levels: ``(ny, nx)`` or ``(K, ny, nx)`` integer level indices.
            level_phases: ``(L,)`` or ``(K, L)`` radians (thin processes); for pillars the
                complex level tables ``(L,)`` / ``(K, L)`` instead.

        Returns:
            float64 heights in metres, the shape of ``levels``. Total thickness is
            ``base_thickness + heights``.
        """
        levels = np.asarray(levels)
        if isinstance(self.structure, PillarSpec):
            sizes = self.pillar_sizes(levels, level_phases)
            return np.where(sizes > 0, self.structure.height, 0.0)
        per_level = self.level_heights(np.asarray(level_phases, dtype=np.float64))
        return _take_levels(per_level, levels)

    def thickness(self, levels: np.ndarray, level_phases: np.ndarray) -> np.ndarray:
        """``base_thickness + heights(levels, level_phases)``, metres."""
        return self.base_thickness + self.heights(levels, level_phases)

    # ------------------------------------------------------------------ pillars
    def pillar_table(self) -> np.ndarray:
        """The meta-atom transmissions with atom 0's phase as reference, complex128 ``(A,)``."""
        s = self._pillars()
        t = np.asarray(s.atoms, dtype=np.complex128)
        ref = t[0] / abs(t[0]) if abs(t[0]) > 0 else 1.0
        return t / ref

    def level_atoms(self, level_table: np.ndarray, *, layer: int | None = None) -> np.ndarray:
        """Which meta-atom each design level is: int64 ``(L,)`` indices into the atom table.

        Raises:
            UserError: a level's transmission matches no atom within 1e-6 (names the level).
        """
        table = self.pillar_table()
        lt = np.asarray(level_table, dtype=np.complex128).ravel()
        dist = np.abs(lt[:, None] - table[None, :])
        idx = np.argmin(dist, axis=1)
        where = "" if layer is None else f"layer {layer} "
        for k, (i, d) in enumerate(zip(idx, dist[np.arange(lt.size), idx], strict=True)):
            if d > ATOM_MATCH_TOLERANCE:
                raise UserError(
                    f"level_tables: {where}level {k} (t = {lt[k]:.6f}) matches no meta-atom of "
                    f"process {self.name!r} (nearest atom {int(i)}, |Δt| = {d:.2e} > "
                    f"{ATOM_MATCH_TOLERANCE:g}); train with process.level_table()"
                )
        return idx.astype(np.int64)

    def pillar_sizes(self, levels: np.ndarray, level_table: np.ndarray) -> np.ndarray:
        """Pillar size (diameter or side, metres) of every pixel; 0 = empty site.

        Args:
            levels: ``(ny, nx)`` or ``(K, ny, nx)`` level indices.
            level_table: ``(L,)`` or ``(K, L)`` complex design level tables.
        """
        s = self._pillars()
        sizes = np.asarray(s.sizes, dtype=np.float64)
        lt = np.asarray(level_table, dtype=np.complex128)
        if lt.ndim == 1:
            per_level = sizes[self.level_atoms(lt)]
        else:
            per_level = np.stack(
                [sizes[self.level_atoms(row, layer=k + 1)] for k, row in enumerate(lt)]
            )
        return _take_levels(per_level, np.asarray(levels))

    def pillar_transmission(self, sizes: np.ndarray) -> np.ndarray:
        """Transmission of pillars of the given sizes (metres) by the nearest table entry.

        Same normalisation as :meth:`level_table`; verify uses it with biased sizes.
        """
        s = self._pillars()
        table_sizes = np.asarray(s.sizes, dtype=np.float64)
        sz = np.asarray(sizes, dtype=np.float64)
        idx = np.argmin(np.abs(sz[..., None] - table_sizes), axis=-1)
        return self.pillar_table()[idx]

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
        s = self.structure
        if isinstance(s, PillarSpec) and not math.isclose(p, s.lattice, rel_tol=1e-6):
            raise UserError(
                f"{what[1]}: {whose} pitch {format_length(p)} is not the pillar lattice "
                f"{format_length(s.lattice)} of process {self.name!r}"
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
        pillars), the level count, and that the level tables are makeable: uniform steps for
        binary masks, meta-atoms of the table for pillars.
        """
        self.check_geometry(wavelength=design.wavelength, pitch=design.pitch)
        s = self.structure
        self.check_n_levels(design.n_levels)
        if isinstance(s, PillarSpec):
            for k, row in enumerate(design.level_tables):
                self.level_atoms(row, layer=k + 1)
            return
        phases = design.level_phases()
        if isinstance(s, EtchSpec) and s.mode == "binary":
            L = design.n_levels
            want = TWO_PI * np.arange(L) / L
            for k, row in enumerate(phases):
                err = np.abs(np.angle(np.exp(1j * (row - want))))
                bad = np.flatnonzero(err > PHASE_TOLERANCE)
                if bad.size:
                    j = int(bad[0])
                    raise UserError(
                        f"level_tables: layer {k + 1} level {j} has phase {row[j]:.4f} rad; "
                        f"{s.masks} binary masks make only 2πk/{L} (expected {want[j]:.4f}); "
                        "use an etch process with mode = 'per-level'"
                    )
        if design.layer_kind == "complex":
            expected = self.transmission(self.level_heights(phases))
            dev = float(np.max(np.abs(np.abs(design.level_tables) - np.abs(expected))))
            if dev > 1e-3:
                log.warning(
                    "design level amplitudes differ from process %r by up to %.3g; the export "
                    "keeps the phases (thin-element process)", self.name, dev,
                )


def _take_levels(per_level: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Look up a per-level value ``(L,)`` or ``(K, L)`` for ``levels`` ``(..)``/``(K, ..)``."""
    if per_level.ndim == 1:
        return per_level[levels]
    if levels.ndim < 1 or levels.shape[0] != per_level.shape[0]:
        raise UserError(
            f"levels: {per_level.shape[0]} level tables but levels have shape {levels.shape}"
        )
    return np.stack([per_level[k][levels[k]] for k in range(per_level.shape[0])])


# ---------------------------------------------------------------------------- meta-atom model
def effective_index_atom(
    size: float,
    *,
    lattice: float,
    height: float,
    wavelength: float,
    n: float,
    n0: float = 1.0,
    shape: Literal["circle", "square"] = "circle",
) -> complex:
    """A crude meta-atom model: transmission of a pillar relative to the bare lattice.

    Zeroth-order effective-medium theory: the pillar layer is a homogeneous slab whose
    permittivity is the area average ``n_eff² = f n² + (1 − f) n0²`` with fill factor ``f``
    (Rytov, Sov. Phys. JETP 2, 466 (1956)); phase ``2π (n_eff − n0) H / λ``; amplitude the two
    normal-incidence Fresnel interfaces ``4 n0 n_eff / (n0 + n_eff)²``. It ignores waveguide
    resonances, coupling between neighbours, the substrate and Fabry–Pérot ripple, so it is a
    model for a self-consistent example, not a measured or simulated library.

    Args:
        size: diameter (circle) or side (square), metres; 0 = empty site.
        lattice: lattice constant, metres.
        height: pillar height, metres.
        wavelength: metres.
        n: pillar index; n0: surrounding index.
        shape: ``"circle"`` or ``"square"``.

    Returns:
        complex transmission with ``|t| <= 1``.
    """
    area = math.pi * size**2 / 4 if shape == "circle" else size**2
    f = min(area / lattice**2, 1.0)
    n_eff = math.sqrt(f * n**2 + (1 - f) * n0**2)
    amp = 4 * n0 * n_eff / (n0 + n_eff) ** 2
    return complex(amp * np.exp(1j * TWO_PI * (n_eff - n0) * height / wavelength))


# ---------------------------------------------------------------------------- loading
_TOP_KEYS = {"name", "description", "kind", "wavelength", "references"}
_SECTIONS = {
    "material": {"n", "kappa", "n0"},
    "pitch": {"min", "max"},
    "rules": {"min_feature", "max_aspect_ratio", "isolated_pixels", "diagonal_necks"},
    "gds": {"unit", "precision", "layers", "text_layer", "mark_layer", "alignment_marks",
            "mark_size"},
    "etch": {"mode", "masks", "substrate"},
    "pillars": {"height", "lattice", "shape", "substrate", "circle_points", "atoms"},
    "print": {"base"},
}
_KIND_SECTION = {"etch": "etch", "pillars": "pillars", "print": "print"}
_ATOM_KEYS = {"size", "t", "amplitude", "phase"}
_SEVERITIES = ("ignore", "warn", "error")


def _layouts_dirs() -> list[Path]:
    import optodesign

    pkg = Path(optodesign.__file__).parent
    return [pkg / "_layouts", Path(__file__).resolve().parents[1] / "layouts"]


def shipped_processes() -> list[str]:
    """Names of the process files shipped with optodesign (``layouts/*.toml``)."""
    names: set[str] = set()
    for d in _layouts_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def load_process(name_or_path: str | Path) -> Process:
    """Read and validate a process file.

    Args:
        name_or_path: a path to a ``.toml`` file, or the bare name of a shipped process
            (``"thz-printed"``), looked up in the installed ``optodesign/_layouts`` and then in
            the repository's ``layouts/``.

    Raises:
        ConfigError: unknown name (lists the shipped ones), unreadable file, unknown key,
            missing or out-of-range value — one line naming the file and the field.
    """
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    looks_like_path = (isinstance(name_or_path, Path) or path.suffix == ".toml" or "/" in raw
                       or "\\" in raw)
    if looks_like_path:
        if not path.is_file():
            raise ConfigError(f"process: file {raw} not found")
    else:  # a bare name: the shipped processes first, then a file of that name
        for d in _layouts_dirs():
            cand = d / f"{raw}.toml"
            if cand.is_file():
                path = cand
                break
        else:
            if not path.is_file():
                shipped = ", ".join(shipped_processes()) or "none found"
                raise ConfigError(
                    f"process: unknown process {raw!r} (shipped: {shipped}; or give a .toml "
                    "path)"
                )
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read process file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    return process_from_dict(data, source=str(path), text=text)


class _Reader:
    """Pulls validated values out of one TOML table, naming file and field in errors."""

    def __init__(self, src: str, section: str, table: Mapping[str, Any], allowed: set[str]):
        self.src, self.section, self.table = src, section, table
        if not isinstance(table, Mapping):
            raise ConfigError(f"{src}: [{section}] must be a table")
        for key in table:
            if key not in allowed:
                raise ConfigError(
                    f"{src}: unknown key {key!r} in [{section}] "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )

    def field(self, key: str) -> str:
        return f"{self.src}: {self.section}.{key}" if self.section else f"{self.src}: {key}"

    def has(self, key: str) -> bool:
        return key in self.table

    def required(self, key: str) -> Any:
        if key not in self.table:
            raise ConfigError(f"{self.field(key)}: missing (required)")
        return self.table[key]

    def length(self, key: str, default: float | None = None, *, zero: bool = False) -> float:
        if key not in self.table:
            if default is None:
                raise ConfigError(f"{self.field(key)}: missing (required)")
            return default
        try:
            return parse_length(self.table[key], field=self.field(key), allow_zero=zero)
        except UnitsError as e:
            raise ConfigError(str(e)) from None

    def number(self, key: str, default: float | None = None, *, low: float | None = None,
               strict_low: bool = False) -> float:
        if key not in self.table:
            if default is None:
                raise ConfigError(f"{self.field(key)}: missing (required)")
            return default
        v = self.table[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{self.field(key)}: expected a finite number, got {v!r}")
        if low is not None and (v < low or (strict_low and v == low)):
            raise ConfigError(f"{self.field(key)}: must be {'>' if strict_low else '>='} {low:g}, "
                              f"got {v!r}")
        return float(v)

    def choice(self, key: str, allowed: Sequence[str], default: str) -> str:
        v = self.table.get(key, default)
        if v not in allowed:
            raise ConfigError(
                f"{self.field(key)}: must be one of {', '.join(map(repr, allowed))}, got {v!r}"
            )
        return str(v)

    def layer_pair(self, key: str, value: Any = None) -> tuple[int, int]:
        v = self.table[key] if value is None else value
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 65535
                           for x in v)):
            raise ConfigError(
                f"{self.field(key)}: expected [layer, datatype] integers in 0..65535, got {v!r}"
            )
        return int(v[0]), int(v[1])


def process_from_dict(
    data: Mapping[str, Any], *, source: str = "<dict>", text: str = ""
) -> Process:
    """Validate a parsed process file (see :func:`load_process`)."""
    src = Path(source).name if source not in ("", "<dict>") else "<process>"
    allowed_top = _TOP_KEYS | set(_SECTIONS)
    top = _Reader(src, "", data, allowed_top)
    name = top.required("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{src}: name: expected a non-empty string, got {name!r}")
    kind = top.choice("kind", ("etch", "pillars", "print"), "")
    for sec in ("etch", "pillars", "print"):
        if sec in data and sec != _KIND_SECTION[kind]:
            raise ConfigError(f"{src}: section [{sec}] does not belong to kind = {kind!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{src}: description: expected a string")
    refs = data.get("references", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ConfigError(f"{src}: references: expected a list of strings")
    try:
        wavelength = parse_quantity(top.required("wavelength"), field=f"{src}: wavelength")
    except UnitsError as e:
        raise ConfigError(str(e)) from None

    m = _Reader(src, "material", data.get("material", {}), _SECTIONS["material"])
    n = m.number("n", low=0.0, strict_low=True)
    kappa = m.number("kappa", 0.0, low=0.0)
    n0 = m.number("n0", 1.0, low=0.0, strict_low=True)
    if kind != "pillars" and n <= n0:
        raise ConfigError(
            f"{m.field('n')}: must exceed the medium index n0 = {n0:g} for a relief "
            f"(more material = more phase), got {n:g}"
        )
    material = Material(n=n, kappa=kappa, n0=n0)

    r = _Reader(src, "rules", data.get("rules", {}), _SECTIONS["rules"])
    rules = Rules(
        min_feature=r.length("min_feature"),
        max_aspect_ratio=r.number("max_aspect_ratio", math.inf, low=0.0, strict_low=True),
        isolated_pixels=r.choice("isolated_pixels", _SEVERITIES, "warn"),  # type: ignore[arg-type]
        diagonal_necks=r.choice("diagonal_necks", _SEVERITIES, "error"),  # type: ignore[arg-type]
    )

    g = _Reader(src, "gds", data.get("gds", {}), _SECTIONS["gds"])
    unit = g.length("unit", 1e-6)
    precision = g.length("precision", 1e-9)
    if precision > unit:
        raise ConfigError(f"{g.field('precision')}: database unit must not exceed the user unit")
    layers: tuple[tuple[int, int], ...] = ()
    if g.has("layers"):
        lv = g.table["layers"]
        if not isinstance(lv, list) or not lv:
            raise ConfigError(f"{g.field('layers')}: expected a list of [layer, datatype] pairs")
        layers = tuple(g.layer_pair("layers", x) for x in lv)
        if len(set(layers)) != len(layers):
            raise ConfigError(f"{g.field('layers')}: layers must be distinct, got {lv!r}")
    align = g.table.get("alignment_marks", False)
    if not isinstance(align, bool):
        raise ConfigError(f"{g.field('alignment_marks')}: expected true or false, got {align!r}")
    gds = GdsSpec(
        unit=unit,
        precision=precision,
        layers=layers,
        text_layer=g.layer_pair("text_layer") if g.has("text_layer") else (100, 0),
        mark_layer=g.layer_pair("mark_layer") if g.has("mark_layer") else (101, 0),
        alignment_marks=align,
        mark_size=g.length("mark_size") if g.has("mark_size") else None,
    )

    sec = _KIND_SECTION[kind]
    s = _Reader(src, sec, data.get(sec, {}), _SECTIONS[sec])
    structure: Structure
    if kind == "etch":
        mode = s.choice("mode", ("binary", "per-level"), "binary")
        masks = 0
        if mode == "binary":
            mv = s.required("masks")
            if isinstance(mv, bool) or not isinstance(mv, int) or not 1 <= mv <= 8:
                raise ConfigError(f"{s.field('masks')}: expected an integer 1..8, got {mv!r}")
            masks = mv
        elif s.has("masks"):
            raise ConfigError(f"{s.field('masks')}: only for mode = 'binary'")
        structure = EtchSpec(mode=mode, masks=masks,  # type: ignore[arg-type]
                             substrate=s.length("substrate", 0.5e-3, zero=True))
    elif kind == "print":
        structure = PrintSpec(base=s.length("base", zero=True))
    else:
        structure = _read_pillars(s, src)

    p = _Reader(src, "pitch", data.get("pitch", {}), _SECTIONS["pitch"])
    if isinstance(structure, PillarSpec):
        pitch_min = p.length("min", structure.lattice)
        pitch_max = p.length("max", structure.lattice)
    else:
        pitch_min = p.length("min")
        pitch_max = p.length("max", math.inf) if p.has("max") else math.inf
    if pitch_min > pitch_max:
        raise ConfigError(f"{p.field('min')}: must not exceed pitch.max")

    return Process(
        name=name.strip(),
        description=description,
        kind=kind,  # type: ignore[arg-type]
        wavelength=wavelength,
        material=material,
        pitch_min=pitch_min,
        pitch_max=pitch_max,
        rules=rules,
        gds=gds,
        structure=structure,
        references=tuple(refs),
        source=source if source != "<dict>" else "",
        text=text,
    )


def _read_pillars(s: _Reader, src: str) -> PillarSpec:
    height = s.length("height")
    lattice = s.length("lattice")
    shape = s.choice("shape", ("circle", "square"), "circle")
    cp = s.table.get("circle_points", 64)
    if isinstance(cp, bool) or not isinstance(cp, int) or not 16 <= cp <= 1024:
        raise ConfigError(f"{s.field('circle_points')}: expected an integer 16..1024, got {cp!r}")
    atoms_raw = s.required("atoms")
    if not isinstance(atoms_raw, list) or len(atoms_raw) < 2:
        raise ConfigError(f"{s.field('atoms')}: expected a list of at least 2 atom tables")
    sizes: list[float] = []
    atoms: list[complex] = []
    for i, a in enumerate(atoms_raw):
        ar = _Reader(src, f"pillars.atoms[{i}]", a, _ATOM_KEYS)
        size = ar.length("size", zero=True)
        if size >= lattice:
            raise ConfigError(
                f"{ar.field('size')}: {format_length(size)} does not fit the lattice "
                f"{format_length(lattice)}"
            )
        if ar.has("t"):
            if ar.has("amplitude") or ar.has("phase"):
                raise ConfigError(f"{ar.field('t')}: give either t or amplitude + phase")
            tv = ar.table["t"]
            if (not isinstance(tv, list) or len(tv) != 2
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                               for x in tv)):
                raise ConfigError(f"{ar.field('t')}: expected [re, im], got {tv!r}")
            t = complex(float(tv[0]), float(tv[1]))
        else:
            amp = ar.number("amplitude", low=0.0)
            ph = ar.number("phase")
            t = complex(amp * np.exp(1j * ph))
        if abs(t) > 1 + 1e-9:
            raise ConfigError(f"{ar.field('t')}: |t| = {abs(t):.4f} > 1 (a passive atom)")
        sizes.append(size)
        atoms.append(t)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"{s.field('atoms')}: pillar sizes must be distinct")
    return PillarSpec(
        height=height,
        lattice=lattice,
        shape=shape,  # type: ignore[arg-type]
        sizes=tuple(sizes),
        atoms=tuple(atoms),
        substrate=s.length("substrate", 0.5e-3, zero=True),
        circle_points=cp,
    )

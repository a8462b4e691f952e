"""A nanopillar metasurface with a meta-atom table (``kind = "pillars"``).

A meta-atom table maps pillar size (diameter or side) → complex transmission ``t``. Level
``k`` of a design is the atom whose transmission it was trained with. The GDS places one cell
per pillar size at the centre of every lattice site of that level; no STL (pillars are
lithographic). Size errors interpolate the table (|t| and unwrapped phase linear in size);
height, index and wavelength errors scale the phase (``∝ (n − n0) H / λ``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import UserError
from ..schema import Table
from ..units import format_length
from .physical import Physical
from .spec import ATOM_MATCH_TOLERANCE, PillarSpec, Rules
from .structure import (
    Layout,
    LevelRule,
    RuleMap,
    SiteCell,
    SiteReadout,
    StructureBase,
    level_phase,
    take_levels,
)

__all__ = ["Pillars", "pillar_polygon_points"]

_ATOM_KEYS = {"size", "t", "amplitude", "phase"}


def pillar_polygon_points(size: float, *, shape: str, points: int) -> np.ndarray:
    """Vertices (metres, centred on 0) of a pillar cross-section.

    A circle becomes a regular ``points``-gon whose *area* equals the circle's (its vertex
    radius is ``r·sqrt(2π / (N sin(2π/N)))``), so the written area is exact up to database
    rounding; an inscribed 9-gon would lose 7.9 %.
    """
    if shape == "square":
        h = size / 2
        return np.array([(-h, -h), (h, -h), (h, h), (-h, h)], dtype=np.float64)
    n = int(points)
    r = size / 2 * math.sqrt(2 * math.pi / (n * math.sin(2 * math.pi / n)))
    ang = 2 * math.pi * (np.arange(n) + 0.5) / n
    return np.stack((r * np.cos(ang), r * np.sin(ang)), axis=1)


@dataclass(frozen=True)
class Pillars(StructureBase):
    """A pillar metasurface (see the module docstring)."""

    kind: ClassVar[str] = "pillars"
    section_keys: ClassVar[set[str]] = {"height", "lattice", "shape", "substrate",
                                        "circle_points", "atoms"}
    value_name: ClassVar[str] = "size"
    value_unit: ClassVar[tuple[float, str]] = (1e-9, "nm")
    value_label: ClassVar[str] = "pillar size"
    preferred_source: ClassVar[str] = "gds"
    stl_units: ClassVar[str] = "mm"
    stl_refusal: ClassVar[str] = ("stl: not written for a pillar metasurface (pillars are "
                                  "lithographic; the GDS is the fabrication file)")
    needs_index_contrast: ClassVar[bool] = False

    spec: PillarSpec = PillarSpec(0.0, 1.0, "circle", (), ())

    # ------------------------------------------------------------------ reading
    @staticmethod
    def read_spec(s: Table) -> PillarSpec:
        height = s.length("height")
        lattice = s.length("lattice")
        shape = s.choice("shape", ("circle", "square"), "circle")
        cp = s.integer("circle_points", 64, low=16, high=1024)
        atoms_raw = s.raw("atoms")
        if not isinstance(atoms_raw, list) or len(atoms_raw) < 2:
            raise s.error("atoms", "expected a list of at least 2 atom tables")
        sizes: list[float] = []
        atoms: list[complex] = []
        for i, a in enumerate(atoms_raw):
            ar = Table(a, _ATOM_KEYS, src=s.src, section=f"{s.section}.atoms[{i}]")
            size = ar.length("size", allow_zero=True)
            if size >= lattice:
                raise ar.error("size", f"{format_length(size)} does not fit the lattice "
                                       f"{format_length(lattice)}")
            if "t" in ar:
                if "amplitude" in ar or "phase" in ar:
                    raise ar.error("t", "give either t or amplitude + phase")
                tv = ar.raw("t")
                if (not isinstance(tv, list) or len(tv) != 2
                        or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                   for x in tv)):
                    raise ar.error("t", f"expected [re, im], got {tv!r}")
                t = complex(float(tv[0]), float(tv[1]))
            else:
                amp = ar.number("amplitude", low=0.0)
                ph = ar.number("phase")
                t = complex(amp * np.exp(1j * ph))
            if abs(t) > 1 + 1e-9:
                raise ar.error("t", f"|t| = {abs(t):.4f} > 1 (a passive atom)")
            sizes.append(size)
            atoms.append(t)
        if len(set(sizes)) != len(sizes):
            raise s.error("atoms", "pillar sizes must be distinct")
        return PillarSpec(height=height, lattice=lattice, shape=shape, sizes=tuple(sizes),
                          atoms=tuple(atoms),
                          substrate=s.length("substrate", 0.5e-3, allow_zero=True),
                          circle_points=cp)

    @staticmethod
    def pitch_defaults(spec: PillarSpec) -> tuple[float, float]:
        """The pitch is the lattice unless the file says otherwise."""
        return spec.lattice, spec.lattice

    # ------------------------------------------------------------------ levels
    @property
    def base_thickness(self) -> float:
        return self.spec.substrate

    @property
    def natural_height(self) -> float:
        """The pillar height."""
        return self.spec.height

    @property
    def fixed_n_levels(self) -> int | None:
        return len(self.spec.atoms)

    def check_n_levels(self, n_levels: int) -> None:
        if n_levels < 2:
            raise UserError(f"n_levels: need at least 2 levels, got {n_levels}")
        if n_levels > len(self.spec.atoms):
            raise UserError(
                f"n_levels: process {self.name!r} has {len(self.spec.atoms)} meta-atoms; the "
                f"design has {n_levels} levels"
            )

    def n_gds_layers(self, n_levels: int) -> int:
        """One layer: the pillar polygons inside the pillar cells."""
        return 1

    def pillar_table(self) -> np.ndarray:
        """The meta-atom transmissions with atom 0's phase as reference, complex128 ``(A,)``."""
        t = np.asarray(self.spec.atoms, dtype=np.complex128)
        ref = t[0] / abs(t[0]) if abs(t[0]) > 0 else 1.0
        return t / ref

    def level_table(self, levels: Any) -> np.ndarray:
        if not isinstance(levels, (int, np.integer)):
            raise UserError(
                f"level_table: process {self.name!r} uses meta-atoms; phases cannot choose "
                "them, pass n_levels"
            )
        count = int(levels)
        self.check_n_levels(count)
        if count != len(self.spec.atoms):
            raise UserError(
                f"n_levels: process {self.name!r} has {len(self.spec.atoms)} meta-atoms; ask "
                f"for all of them (got {count})"
            )
        return self.pillar_table()

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

    def level_values(self, level_table: np.ndarray) -> np.ndarray:
        """Pillar size (metres) of each level of one level table ``(L,)``."""
        return np.asarray(self.spec.sizes, dtype=np.float64)[self.level_atoms(level_table)]

    def pillar_sizes(self, levels: np.ndarray, level_table: np.ndarray) -> np.ndarray:
        """Pillar size (diameter or side, metres) of every pixel; 0 = empty site.

        Args:
            levels: ``(ny, nx)`` or ``(K, ny, nx)`` level indices.
            level_table: ``(L,)`` or ``(K, L)`` complex design level tables.
        """
        sizes = np.asarray(self.spec.sizes, dtype=np.float64)
        lt = np.asarray(level_table, dtype=np.complex128)
        if lt.ndim == 1:
            per_level = sizes[self.level_atoms(lt)]
        else:
            per_level = np.stack(
                [sizes[self.level_atoms(row, layer=k + 1)] for k, row in enumerate(lt)]
            )
        return take_levels(per_level, np.asarray(levels))

    def pillar_transmission(self, sizes: np.ndarray) -> np.ndarray:
        """Transmission of pillars of the given sizes (metres) by the nearest table entry."""
        table_sizes = np.asarray(self.spec.sizes, dtype=np.float64)
        sz = np.asarray(sizes, dtype=np.float64)
        idx = np.argmin(np.abs(sz[..., None] - table_sizes), axis=-1)
        return self.pillar_table()[idx]

    def check_tables(self, level_tables: np.ndarray, *, layer_kind: str) -> None:
        """Every level must be a meta-atom of the table."""
        for k, row in enumerate(np.asarray(level_tables)):
            self.level_atoms(row, layer=k + 1)

    def cell_names(self) -> list[str | None]:
        """Short cell name per meta-atom (``D81`` = 81 nm diameter, ``S120`` = square side);
        ``None`` for empty sites (size 0)."""
        prefix = "D" if self.spec.shape == "circle" else "S"
        names: list[str | None] = []
        for k, size in enumerate(self.spec.sizes):
            if size <= 0:
                names.append(None)
                continue
            nm = size / 1e-9
            if abs(nm - round(nm)) < 1e-6:
                base = f"{prefix}{round(nm)}"
            else:
                base = f"{prefix}{nm:.3f}".replace(".", "p")
            names.append(base if base not in names else f"{base}_{k}")
        return names

    def level_rows(self, level_table: np.ndarray) -> list[dict[str, Any]]:
        """The level → atom table of one design layer, for the manifest."""
        s = self.spec
        atoms = self.level_atoms(level_table)
        names = self.cell_names()
        t_atoms = self.pillar_table()
        rows = []
        for k, a in enumerate(atoms):
            t = t_atoms[a]
            rows.append({"level": k, "atom": int(a), "size": s.sizes[a],
                         "height": s.height if s.sizes[a] > 0 else 0.0,
                         "cell": names[a], "t": [float(t.real), float(t.imag)],
                         "phase": float(level_phase(np.angle(t)))})
        return rows

    # ------------------------------------------------------------------ layout
    def layout(self, levels: np.ndarray, level_table: np.ndarray, *, layer: int) -> Layout:
        """One cell per pillar size, placed at every site of a level of that atom."""
        s = self.spec
        atoms = self.level_atoms(np.asarray(level_table), layer=layer)
        gds_layer = self.gds_layers(len(atoms))[0]
        names = self.cell_names()
        cells = tuple(
            None if size <= 0 or name is None else
            SiteCell(name, gds_layer, pillar_polygon_points(size, shape=s.shape,
                                                            points=s.circle_points))
            for name, size in zip(names, s.sizes, strict=True))
        sites = np.asarray(atoms, dtype=np.int64)[np.asarray(levels, dtype=np.int64)]
        return Layout(sites=sites, cells=cells)

    def read_layers(self, n_levels: int) -> tuple[tuple[tuple[int, int], ...],
                                                  tuple[tuple[int, int], ...]]:
        """No mask layers; the pillar layer holds sites."""
        return (), (self.gds_layers(len(self.spec.atoms))[0],)

    def decode(self, covers: list[np.ndarray], sites: SiteReadout | None, *,
               shape: tuple[int, int], n_levels: int, level_table: np.ndarray | None,
               where: str) -> np.ndarray:
        """Level map from the pillars found at lattice sites (size from the polygon area →
        nearest meta-atom → the design level of that atom); empty sites are the empty atom."""
        s = self.spec
        sizes = np.asarray(s.sizes, dtype=np.float64)
        atom = np.full(shape, -1, dtype=np.int64)
        if sites is not None and sites.rows.size:
            area = np.asarray(sites.areas, dtype=np.float64)
            found = 2 * np.sqrt(area / math.pi) if s.shape == "circle" else np.sqrt(area)
            d = np.abs(found[:, None] - sizes[None, :])
            idx = np.argmin(d, axis=1)
            ordered = np.sort(sizes)
            spacing = (np.full(idx.size, np.min(np.diff(ordered))) if ordered.size > 1
                       else sizes[idx])
            bad = d[np.arange(idx.size), idx] > 0.25 * spacing
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise UserError(
                    f"{where}: {sites.names[i]}: pillar size {found[i] / 1e-9:.1f} nm matches "
                    f"no meta-atom of process {self.name!r}"
                )
            atom[sites.rows, sites.cols] = idx
        empty = np.flatnonzero(sizes <= 0)
        if (atom < 0).any():
            if not empty.size:
                raise UserError(
                    f"{where}: {int((atom < 0).sum())} lattice sites have no pillar and "
                    f"process {self.name!r} has no empty-site atom"
                )
            atom[atom < 0] = int(empty[0])
        if level_table is None:
            return atom.astype(np.int16)
        level_atoms = self.level_atoms(level_table)
        lookup = np.full(len(s.atoms), -1, dtype=np.int64)
        lookup[level_atoms[::-1]] = np.arange(level_atoms.size)[::-1]
        levels = lookup[atom]
        if (levels < 0).any():
            missing = sorted(set(atom[levels < 0].tolist()))
            raise UserError(f"{where}: pillars of atoms {missing} are not levels of the design")
        return levels.astype(np.int16)

    # ------------------------------------------------------------------ design rules
    def rule_maps(self, levels: np.ndarray, n_levels: int) -> list[RuleMap]:
        """None: pillar rules are decided per level (:meth:`level_rule_failures`)."""
        return []

    def level_rule_failures(self, level_table: np.ndarray, rules: Rules, *,
                            layer: int) -> list[LevelRule]:
        """Pillars or gaps below the minimum feature; pillars taller than the aspect ratio."""
        s = self.spec
        sizes = np.asarray(s.sizes)[self.level_atoms(level_table, layer=layer)]
        small = (sizes > 0) & (sizes < rules.min_feature * (1 - 1e-9))
        gap = (sizes > 0) & (s.lattice - sizes < rules.min_feature * (1 - 1e-9))
        steep = (sizes > 0) & (s.height > rules.max_aspect_ratio * sizes * (1 + 1e-9))
        out = []
        for rule, bad, what, limit in (
            ("min_feature", small | gap, "pillar or gap below min feature",
             f"min {rules.min_feature / 1e-9:.0f} nm (pillar and gap)"),
            ("aspect_ratio", steep, "pillar height / size too large",
             f"max {rules.max_aspect_ratio:g}"),
        ):
            details = tuple(f"level {k} size {sizes[k] / 1e-9:.0f} nm ({what})"
                            for k in range(sizes.size))
            out.append(LevelRule(rule, np.flatnonzero(bad), limit, details))
        return out

    # ------------------------------------------------------------------ physics
    def physical(self, levels: np.ndarray, heights: np.ndarray, values: np.ndarray,
                 level_tables: np.ndarray, *, wavelength: float, distances: tuple[float, ...],
                 oversample: int) -> Physical:
        """The nominal stack: the atom and pillar size of every site (``values``: sizes)."""
        K = levels.shape[0]
        atoms = np.stack([self.level_atoms(level_tables[k], layer=k + 1)[levels[k]]
                          for k in range(K)])
        sizes = np.stack([values[k][levels[k]] for k in range(K)])
        return Physical(kind="pillars", heights=np.where(sizes > 0, self.spec.height, 0.0),
                        base=float(self.base_thickness), n=self.material.n,
                        n0=self.material.n0, element_wavelength=self.wavelength,
                        wavelength=wavelength, distances=tuple(distances),
                        oversample=int(oversample), atoms=atoms, sizes=sizes)

    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Atom sizes, their |t| and unwrapped phase along size; and the raw table."""
        table = self.pillar_table()
        sizes = np.asarray(self.spec.sizes, dtype=np.float64)
        order = np.argsort(sizes)
        phase = np.empty(table.size)
        phase[order] = np.unwrap(np.angle(table[order]))
        return sizes, np.abs(table), phase, table

    def element_transmissions(self, phys: Physical, *, pitch: float) -> np.ndarray:
        """Pillar transmissions: the atom table, with size changes interpolated (|t| and
        unwrapped phase linear in size between atoms) and height / index / wavelength changes
        scaling the phase (phase ∝ (n − n0) H / λ, the effective-index picture)."""
        spec = self.spec
        assert phys.atoms is not None and phys.sizes is not None
        sizes_t, amp_t, phase_t, table = self._tables()
        atoms = phys.atoms
        m = self.material
        factor_scalar = ((phys.n - m.n0) / (m.n - m.n0)) * (self.wavelength /
                                                            phys.element_wavelength)
        height_nominal = np.where(phys.sizes > 0, spec.height, 0.0)
        heights_changed = not np.array_equal(phys.heights, height_nominal)
        if (phys.bias == 0 and factor_scalar == 1 and not heights_changed
                and phys.kappa_extra == 0):
            return table[atoms]
        if phys.bias:
            s = np.where(phys.sizes > 0, np.maximum(phys.sizes + 2 * phys.bias, 0.0), 0.0)
            order = np.argsort(sizes_t)
            amp = np.interp(s, sizes_t[order], amp_t[order])
            phase = np.interp(s, sizes_t[order], phase_t[order])
        else:
            amp, phase = amp_t[atoms], phase_t[atoms]
        factor = factor_scalar * np.where(phys.sizes > 0, phys.heights / spec.height, 1.0)
        t = amp * np.exp(1j * phase * factor)
        if phys.kappa_extra:
            t = t * np.exp(-2 * math.pi * phys.kappa_extra * phys.heights
                           / phys.element_wavelength)
        return t

    def drawn_transmissions(self, phys: Physical, *, pitch: float,
                            oversample: int) -> np.ndarray:
        """The lattice drawn with ``oversample`` × ``oversample`` samples per site: each
        site's meta-atom transmission (:meth:`element_transmissions`, which already holds the
        line-width bias as a pillar-size change) fills its unit cell. complex128
        ``(K, ny·s, nx·s)``."""
        s = int(oversample)
        if s < 1:
            raise UserError(f"oversample: must be an integer >= 1, got {oversample!r}")
        t = self.element_transmissions(phys, pitch=pitch)
        return t if s == 1 else np.repeat(np.repeat(t, s, axis=1), s, axis=2)

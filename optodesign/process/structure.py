"""The :class:`Structure` protocol: what a design level becomes physically, for one kind.

One class per process kind implements it (:class:`~optodesign.process.etch.Etch`,
:class:`~optodesign.process.pillars.Pillars`, :class:`~optodesign.process.printed.Print`);
``Process.structure`` holds the one of a process. Export and verify call it instead of
asking which kind a process is:

* the level → physical value table (relief height or pillar size) and the level table the
  trainer uses;
* the GDS geometry of a level map (:class:`Layout`: masks covered by rectangles, or cells
  placed at lattice sites) and the decoding of level maps from what a layout file holds;
* the physical description of what was read back and its transmission, *including* the
  perturbations verify applies (:class:`~optodesign.process.physical.Physical`).

:func:`thin_transmission` is the one thin-element formula (phase and absorption of a relief);
:class:`ThinStructure` is what etch and print share.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from ..errors import ConfigError, UserError
from ..raster import decimate_cells, dilate_heights
from ..schema import MISSING
from ..units import wrap_phase
from .physical import Physical
from .spec import GdsSpec, Material, Rules, StructureSpec

__all__ = ["Structure", "StructureBase", "ThinStructure", "Layout", "SiteCell", "RuleMap",
           "LevelRule", "SiteReadout", "thin_transmission", "take_levels", "level_phase",
           "TWO_PI"]

log = logging.getLogger(__name__)

TWO_PI = 2.0 * math.pi
_UNIQUE_MAX = 4096


# ---------------------------------------------------------------------------- geometry records
@dataclass(frozen=True)
class SiteCell:
    """A cell placed at the centre of lattice sites: one polygon (metres, centred on 0)."""

    name: str
    layer: tuple[int, int]
    points: np.ndarray


@dataclass(frozen=True)
class Layout:
    """The GDS geometry of one design layer.

    Attributes:
        masks: ``((layer, datatype), bool (ny, nx))`` per GDS layer: the pixels its polygons
            cover (merged into rectangles by the writer).
        sites: int ``(ny, nx)`` cell index of every lattice site (``None``: no sites).
        cells: the cell of each index (``None``: an empty site, nothing placed).
    """

    masks: tuple[tuple[tuple[int, int], np.ndarray], ...] = ()
    sites: np.ndarray | None = None
    cells: tuple[SiteCell | None, ...] = ()


@dataclass(frozen=True)
class RuleMap:
    """A label map the raster design rules check (min feature, necks).

    Attributes:
        name: how the report names it (``"mask 0"``; ``""`` for the level map).
        labels: int ``(ny, nx)``.
        background: a label that continues outside the array (``None``: none).
        polygon_label: the label of the written polygons, whose corner contacts count
            (``None``: every label).
    """

    name: str
    labels: np.ndarray
    background: int | None = None
    polygon_label: int | None = None


@dataclass(frozen=True)
class LevelRule:
    """A design rule decided per level (pillars: a size below the minimum feature).

    Attributes:
        rule: rule name in the DRC report. limit: the limit, for people.
        bad_levels: int ``(n,)`` levels that break it.
        details: a description of every level (indexed by level).
    """

    rule: str
    bad_levels: np.ndarray
    limit: str
    details: tuple[str, ...]


#: finest sub-grid (per drawn sample) a sub-sample line-width bias is drawn on
BIAS_SUBSAMPLES = 8


# ---------------------------------------------------------------------------- protocol
class Structure(Protocol):
    """What every process kind provides (see the module docstring)."""

    kind: ClassVar[str]
    #: what a level's physical value is: ``"height"`` (relief) or ``"size"`` (pillar)
    value_name: ClassVar[str]
    #: ``(scale in metres, unit)`` and a label for plots of the values
    value_unit: ClassVar[tuple[float, str]]
    value_label: ClassVar[str]
    #: file verify reads by default: ``"stl"`` or ``"gds"``
    preferred_source: ClassVar[str]
    #: why no STL is written (``""``: an STL is written)
    stl_refusal: ClassVar[str]
    #: the STL files' default units, ``"mm"`` or ``"um"`` (``[print] stl_units``)
    stl_units: str

    name: str
    wavelength: float
    material: Material
    gds: GdsSpec

    @property
    def spec(self) -> StructureSpec: ...
    @property
    def base_thickness(self) -> float: ...
    @property
    def natural_height(self) -> float: ...
    @property
    def fixed_n_levels(self) -> int | None: ...

    def check_n_levels(self, n_levels: int) -> None: ...
    def n_gds_layers(self, n_levels: int) -> int: ...
    def gds_layers(self, n_levels: int) -> tuple[tuple[int, int], ...]: ...
    def level_table(self, levels: int | Sequence[float] | np.ndarray) -> np.ndarray: ...
    def check_tables(self, level_tables: np.ndarray, *, layer_kind: str) -> None: ...
    def level_values(self, level_table: np.ndarray) -> np.ndarray: ...
    def level_rows(self, level_table: np.ndarray) -> list[dict[str, Any]]: ...
    def layout(self, levels: np.ndarray, level_table: np.ndarray, *,
               layer: int) -> Layout: ...
    def read_layers(self, n_levels: int) -> tuple[tuple[tuple[int, int], ...],
                                                  tuple[tuple[int, int], ...]]: ...
    def decode(self, covers: list[np.ndarray], sites: SiteReadout | None, *,
               shape: tuple[int, int], n_levels: int, level_table: np.ndarray | None,
               where: str) -> np.ndarray: ...
    def rule_maps(self, levels: np.ndarray, n_levels: int) -> list[RuleMap]: ...
    def level_rule_failures(self, level_table: np.ndarray, rules: Rules, *,
                            layer: int) -> list[LevelRule]: ...
    def physical(self, levels: np.ndarray, heights: np.ndarray, values: np.ndarray,
                 level_tables: np.ndarray, *, wavelength: float, distances: tuple[float, ...],
                 oversample: int) -> Physical: ...
    def element_transmissions(self, phys: Physical, *, pitch: float) -> np.ndarray: ...
    def drawn_transmissions(self, phys: Physical, *, pitch: float,
                            oversample: int) -> np.ndarray: ...


@dataclass(frozen=True)
class SiteReadout:
    """Cells found at lattice sites of a layout: the site of each and its polygon area.

    Attributes:
        rows, cols: int ``(N,)`` site of each instance.
        areas: float ``(N,)`` polygon area of each instance, metres².
        names: what each instance is, for messages (``"cell D81"``, ``"polygon"``).
    """

    rows: np.ndarray
    cols: np.ndarray
    areas: np.ndarray
    names: tuple[str, ...]


# ---------------------------------------------------------------------------- shared helpers
def thin_transmission(h: np.ndarray, *, wavelength: float, n: float, n0: float, kappa: float,
                      kappa_extra: float = 0.0) -> np.ndarray:
    """Thin-element transmission of a relief, relative to the base plate.

    ``t = exp(i 2π (n − n0) h / λ) · exp(−2π κ h / λ)`` (sign convention in
    :mod:`optodesign.process`), times ``exp(−2π κ_extra h / λ)`` for an extra extinction
    (a fabrication error).

    Args:
        h: heights above the base plate, metres, any shape.
        wavelength: metres. n, n0: material and medium index. kappa: extinction coefficient.

    Returns:
        complex128 array of the shape of ``h``.
    """
    h = np.asarray(h, dtype=np.float64)
    phase = TWO_PI * (n - n0) * h / wavelength
    amp = np.exp(-TWO_PI * kappa * h / wavelength)
    t = amp * np.exp(1j * phase)
    if kappa_extra:
        t = t * np.exp(-TWO_PI * kappa_extra * h / wavelength)
    return t


def level_phase(phase: np.ndarray | float) -> np.ndarray:
    """The phase of a level in [0, 2π) (:func:`~optodesign.units.wrap_phase`); within 1e-9 of
    2π counts as 0, so a level of phase 2π − ε is the level of no relief, not of a full wave."""
    p = wrap_phase(np.asarray(phase, dtype=np.float64))
    return np.where(p > TWO_PI - 1e-9, 0.0, p)


def take_levels(per_level: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Look up a per-level value ``(L,)`` or ``(K, L)`` for ``levels`` ``(..)``/``(K, ..)``."""
    if per_level.ndim == 1:
        return per_level[levels]
    if levels.ndim < 1 or levels.shape[0] != per_level.shape[0]:
        raise UserError(
            f"levels: {per_level.shape[0]} level tables but levels have shape {levels.shape}"
        )
    return np.stack([per_level[k][levels[k]] for k in range(per_level.shape[0])])


@dataclass(frozen=True)
class StructureBase:
    """Fields and behaviour every structure shares: the process's name, wavelength, material
    and GDS settings."""

    name: str
    wavelength: float
    material: Material
    gds: GdsSpec

    def n_gds_layers(self, n_levels: int) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def gds_layers(self, n_levels: int) -> tuple[tuple[int, int], ...]:
        """``(layer, datatype)`` of each GDS layer the export writes (the process's
        ``gds.layers``, else ``(k + 1, 0)``)."""
        count = self.n_gds_layers(n_levels)
        if self.gds.layers:
            if len(self.gds.layers) < count:
                raise UserError(
                    f"gds.layers: process {self.name!r} lists {len(self.gds.layers)} layers, "
                    f"{count} needed"
                )
            return tuple(self.gds.layers[:count])
        return tuple((k + 1, 0) for k in range(count))

    def _check_layer_count(self, n_levels: int) -> None:
        if self.gds.layers and n_levels > len(self.gds.layers):
            raise UserError(
                f"n_levels: process {self.name!r} maps {len(self.gds.layers)} GDS layers "
                f"(gds.layers), one per level; the design has {n_levels} levels"
            )


class ThinStructure(StructureBase):
    """A relief (etch, print): a level is a height above the base plate, ``φ λ / (2π (n − n0))``,
    and the element is thin (:func:`thin_transmission`)."""

    value_name: ClassVar[str] = "height"
    value_unit: ClassVar[tuple[float, str]] = (1e-6, "um")
    value_label: ClassVar[str] = "height"
    stl_refusal: ClassVar[str] = ""
    stl_units: ClassVar[str] = "mm"
    #: a relief needs n > n0 (more material = more phase)
    needs_index_contrast: ClassVar[bool] = True

    @staticmethod
    def pitch_defaults(spec: Any) -> tuple[Any, float]:
        """Defaults of ``pitch.min`` (required) and ``pitch.max`` (unbounded)."""
        return MISSING, math.inf

    @property
    def natural_height(self) -> float:
        """Relief height giving 2π of phase."""
        return self.height_per_2pi

    @property
    def height_per_2pi(self) -> float:
        """Relief height giving 2π of phase, ``λ / (n − n0)``, metres."""
        return self.wavelength / (self.material.n - self.material.n0)

    # ------------------------------------------------------------------ level values
    def level_heights(self, level_phases: np.ndarray) -> np.ndarray:
        """Relief height of each level above the base plate, metres, from phases (radians,
        wrapped to [0, 2π); within 1e-9 of 2π counts as 0)."""
        return level_phase(level_phases) * (self.height_per_2pi / TWO_PI)

    def transmission(self, height_map: np.ndarray, *, wavelength: float | None = None,
                     n: float | None = None, kappa_extra: float = 0.0) -> np.ndarray:
        """:func:`thin_transmission` with the process's material (``wavelength``, ``n``:
        perturbed values; the index is not dispersed automatically)."""
        m = self.material
        return thin_transmission(
            height_map, wavelength=self.wavelength if wavelength is None else float(wavelength),
            n=m.n if n is None else float(n), n0=m.n0, kappa=m.kappa, kappa_extra=kappa_extra)

    def level_table(self, levels: int | Sequence[float] | np.ndarray) -> np.ndarray:
        if isinstance(levels, (int, np.integer)):
            count = int(levels)
            self.check_n_levels(count)
            phases = TWO_PI * np.arange(count) / count
        else:
            phases = np.asarray(levels, dtype=np.float64)
            if phases.ndim != 1:
                raise UserError(f"level_table: expected (L,) phases, got shape {phases.shape}")
            self.check_n_levels(int(phases.size))
        return self.transmission(self.level_heights(phases))

    def level_values(self, level_table: np.ndarray) -> np.ndarray:
        """Relief height of each level of a (complex) level table, metres; ``(..., L)``."""
        return self.level_heights(np.angle(np.asarray(level_table, dtype=np.complex128)))

    def check_tables(self, level_tables: np.ndarray, *, layer_kind: str) -> None:
        """Warn when a complex design's level amplitudes differ from what the relief makes."""
        if layer_kind != "complex":
            return
        tables = np.asarray(level_tables, dtype=np.complex128)
        expected = self.transmission(self.level_values(tables))
        dev = float(np.max(np.abs(np.abs(tables) - np.abs(expected))))
        if dev > 1e-3:
            log.warning(
                "design level amplitudes differ from process %r by up to %.3g; the export "
                "keeps the phases (thin-element process)", self.name, dev,
            )

    def level_rows(self, level_table: np.ndarray) -> list[dict[str, Any]]:
        """The level → structure table of one design layer, for the manifest."""
        phases = level_phase(np.angle(np.asarray(level_table, dtype=np.complex128)))
        heights = self.level_heights(phases)
        t_made = self.transmission(heights)
        rows = []
        for k in range(heights.size):
            row: dict[str, Any] = {
                "level": k,
                "phase": float(phases[k]),
                "t": [float(t_made[k].real), float(t_made[k].imag)],
                "height": float(heights[k]),
                "thickness": float(self.base_thickness + heights[k]),
            }
            row.update(self._row_extra(k, heights))
            rows.append(row)
        return rows

    def _row_extra(self, level: int, heights: np.ndarray) -> dict[str, Any]:
        """Per-kind manifest columns of one level (GDS layers, etch depth)."""
        return {"gds_layers": [list(self.gds_layers(heights.size)[level])]}

    @property
    def base_thickness(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def check_n_levels(self, n_levels: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # ------------------------------------------------------------------ layout
    def masks(self, levels: np.ndarray, n_levels: int) -> list[np.ndarray]:
        """The boolean map of every GDS layer (what its polygons cover): one per level."""
        lv = np.asarray(levels)
        return [lv == k for k in range(n_levels)]

    def layout(self, levels: np.ndarray, level_table: np.ndarray, *, layer: int) -> Layout:
        n_levels = int(np.asarray(level_table).shape[0])
        return Layout(masks=tuple(zip(self.gds_layers(n_levels), self.masks(levels, n_levels),
                                      strict=True)))

    def read_layers(self, n_levels: int) -> tuple[tuple[tuple[int, int], ...],
                                                  tuple[tuple[int, int], ...]]:
        """``(mask layers, site layers)`` a layout reader collects."""
        return self.gds_layers(n_levels), ()

    def decode(self, covers: list[np.ndarray], sites: SiteReadout | None, *,
               shape: tuple[int, int], n_levels: int, level_table: np.ndarray | None,
               where: str) -> np.ndarray:
        """Level map from the coverage count of each level layer (each pixel on exactly one)."""
        stack = np.stack(covers)
        total = stack.sum(axis=0)
        if np.any(total == 0):
            r, c = np.argwhere(total == 0)[0]
            raise UserError(
                f"{where}: {int((total == 0).sum())} pixels lie on none of the level layers "
                f"(first at row {r}, col {c})"
            )
        if np.any(total > 1):
            r, c = np.argwhere(total > 1)[0]
            raise UserError(
                f"{where}: {int((total > 1).sum())} pixels are covered twice "
                f"(first at row {r}, col {c})"
            )
        return np.argmax(stack, axis=0).astype(np.int16)

    def rule_maps(self, levels: np.ndarray, n_levels: int) -> list[RuleMap]:
        """The level map itself (every level is drawn)."""
        return [RuleMap("", np.asarray(levels).astype(np.int64))]

    def level_rule_failures(self, level_table: np.ndarray, rules: Rules, *,
                            layer: int) -> list[LevelRule]:
        """Rules decided per level (none for a relief: the raster rules check it)."""
        return []

    # ------------------------------------------------------------------ physics
    def physical(self, levels: np.ndarray, heights: np.ndarray, values: np.ndarray,
                 level_tables: np.ndarray, *, wavelength: float, distances: tuple[float, ...],
                 oversample: int) -> Physical:
        """The nominal stack from read-back heights ``(K, ny, nx)``."""
        return Physical(kind="thin", heights=heights, base=float(self.base_thickness),
                        n=self.material.n, n0=self.material.n0,
                        element_wavelength=self.wavelength, wavelength=wavelength,
                        distances=tuple(distances), oversample=int(oversample))

    def _thin(self, h: np.ndarray, phys: Physical) -> np.ndarray:
        """Thin-element transmission of heights ``h`` (any shape) under ``phys``'s material."""
        n = None if phys.n == self.material.n else phys.n
        lam = None if phys.element_wavelength == self.wavelength else phys.element_wavelength
        flat = h.ravel()
        # few distinct heights (nominal, systematic errors): evaluate each once; the result is
        # bit-identical to evaluating every pixel, and much faster
        probe = np.unique(flat[:: max(1, flat.size // 8192)])
        uniq, inv = (np.unique(flat, return_inverse=True) if probe.size <= 256 else
                     (probe, None))
        if inv is not None and uniq.size <= _UNIQUE_MAX and uniq.size * 4 < flat.size:
            t = self.transmission(uniq, wavelength=lam, n=n, kappa_extra=phys.kappa_extra)
            return t[inv].reshape(h.shape)
        return self.transmission(h, wavelength=lam, n=n, kappa_extra=phys.kappa_extra)

    def element_transmissions(self, phys: Physical, *, pitch: float) -> np.ndarray:
        """Transmissions of the elements as made, before placement: complex128 ``(K, ny, nx)``.

        :func:`thin_transmission` of the heights (with ``n``, ``λ``, extra ``κ`` of ``phys``);
        with a line-width bias, evaluated on the sub-pixel grid of
        :func:`~optodesign.raster.dilate_heights` and area-averaged.
        """
        if not phys.bias:
            return self._thin(phys.heights, phys)
        m = phys.oversample
        # the bias in sub-pixels, r = r0 + w: the pixel-averaged transmission is linear in the
        # area of the boundary strips, so mixing the r0 and r0 + 1 results with weight w makes
        # it continuous in the bias (exact along straight edges; corners to O(w (pitch/m)²))
        r = abs(phys.bias) * m / pitch
        r0 = math.floor(r + 1e-9)
        w = r - r0 if r - r0 > 1e-9 else 0.0
        sign = math.copysign(1.0, phys.bias)
        out = np.empty(phys.heights.shape, dtype=np.complex128)
        ny, nx = phys.heights.shape[1:]
        for k, h in enumerate(phys.heights):
            acc = np.zeros((ny, nx), dtype=np.complex128)
            for rr, weight in ((r0, 1.0 - w), (r0 + 1, w)):
                if weight == 0:
                    continue
                fine = dilate_heights(h, bias=sign * rr * pitch / m, pitch=pitch, oversample=m)
                acc += weight * self._thin(fine, phys).reshape(ny, m, nx, m).mean(axis=(1, 3))
            out[k] = acc
        return out

    def drawn_transmissions(self, phys: Physical, *, pitch: float,
                            oversample: int, _subsample: bool = True) -> np.ndarray:
        """The elements as made, drawn on a grid of ``oversample`` × ``oversample`` samples per
        pixel: complex128 ``(K, ny·s, nx·s)``.

        Each pixel's relief is a flat-topped square; a line-width bias moves every level edge
        by ``bias`` metres (grayscale dilation / erosion of the level regions,
        :func:`~optodesign.raster.dilate_heights`). With ``oversample > 1``, a bias between
        two sample steps is drawn on a grid ``q`` times finer, where it falls on a sample
        step (``q`` up to :data:`BIAS_SUBSAMPLES`), and brought back to ``oversample`` with
        its band-limited content and edge positions
        (:func:`~optodesign.raster.decimate_cells`): within 0.4 % of a drawing where the
        edge falls on a sample (``tests/test_rs_crosscheck.py``). Otherwise (and with
        ``oversample = 1``, the training model) it mixes the two drawings by the fraction
        of a sample the edge covers (each sample holds the area-average of its
        transmission). With ``oversample = 1`` and no bias this is
        :meth:`element_transmissions`.
        """
        s = int(oversample)
        if s < 1:
            raise UserError(f"oversample: must be an integer >= 1, got {oversample!r}")
        K, ny, nx = phys.heights.shape
        if not phys.bias:
            t = self._thin(phys.heights, phys)
            return t if s == 1 else np.repeat(np.repeat(t, s, axis=1), s, axis=2)
        r = abs(phys.bias) * s / pitch
        if _subsample and s > 1 and abs(r - round(r)) > 1e-9:
            # the finest sub-grid (up to BIAS_SUBSAMPLES) on which the edge falls nearest a step
            q = min(range(2, BIAS_SUBSAMPLES + 1),
                    key=lambda m: (round(abs(r * m - round(r * m)), 6), m))
            return decimate_cells(self.drawn_transmissions(
                phys, pitch=pitch, oversample=s * q, _subsample=False), q)
        r0 = math.floor(r + 1e-9)
        w = r - r0 if r - r0 > 1e-9 else 0.0
        sign = math.copysign(1.0, phys.bias)
        out = np.zeros((K, ny * s, nx * s), dtype=np.complex128)
        for k, h in enumerate(phys.heights):
            for rr, weight in ((r0, 1.0 - w), (r0 + 1, w)):
                if weight:
                    fine = dilate_heights(h, bias=sign * rr * pitch / s, pitch=pitch,
                                          oversample=s)
                    out[k] += weight * self._thin(fine, phys)
        return out


def not_this_kind(name: str, kind: str, what: str) -> ConfigError:
    """The error for asking a structure of one kind for another kind's quantity."""
    return ConfigError(f"process {name!r}: {what} is not defined for kind {kind!r}")

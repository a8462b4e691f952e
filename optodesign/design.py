"""The Design: the artifact between ``train`` and ``export``/``verify``.

A Design is a directory with two files, readable with numpy and json alone (no torch):

``design.npz``
    ``levels``        int16 ``(K, ny, nx)``: the level index of every pixel of every layer.
    ``level_tables``  complex128 ``(K, L)``: complex transmission of each level, per layer.
                      Phase-only layers hold ``exp(i * phase_k)``; a meta-atom codebook holds
                      the atoms' transmissions ``t_k`` (``|t_k| <= 1``).
    ``target``        float64 ``(ny, nx)``, optional: target intensity (hologram, splitter).
    ``fixed_mask``    bool ``(K, ny, nx)``, optional: pixels fixed by physics (structural zeros),
                      which store no bits.

``design.json``
    Everything else, in SI units (metres, radians): ``format``, ``task`` (its name),
    ``setup`` (the task's typed setup record, :class:`optodesign.tasks.TaskSetup`: detectors,
    encoding, image size, loss, lens focus, spot boxes, ...), ``wavelength``, ``pitch``,
    ``shape``, ``distances`` (K + 1 entries: input plane -> layer 1, layer i -> layer i+1, ...,
    layer K -> output plane), ``pad``, ``pixels`` (how training modelled a pixel: ``cells``,
    or ``points`` when absent, :data:`PIXELS`), ``layer_kind``, ``free_levels`` (levels a free pixel
    may take; ``[]``: all), ``quantizer`` (a description), ``metrics`` (hard-quantized),
    ``extra``.

Format 2 (``optodesign.design/2``) is written; format 1 is still read: its ``detectors``,
``input``, ``dataset`` and ``extra.{focus_radius, ideal_peak, spot_boxes, focal_length}``
become the setup record, and a ``binary`` quantizer's free levels ``{0, 1}``.

Export and verify depend only on this module and on process files, never on torch modules.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import UserError
from .fileio import atomic_path, atomic_write_json
from .grid import Grid, check_method
from .tasks import SetupError, TaskSetup, get_task
from .units import wrap_phase

__all__ = ["Design", "DesignError", "FORMAT", "LayerKind", "Pixels", "PIXELS"]

FORMAT = "optodesign.design/2"
#: the format this module writes, and the older one it still reads
FORMATS_READ = ("optodesign.design/1", FORMAT)
LayerKind = Literal["phase", "complex"]
#: how training modelled a pixel: ``cells``, a flat-topped cell band-limited to the grid
#: (:func:`optodesign.optics.cells.cell_band_limit`); ``points``, a point sample (designs
#: written before ``pixels`` existed)
Pixels = Literal["cells", "points"]
PIXELS = ("cells", "points")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``np.savez_compressed`` with fixed zip timestamps, so equal designs give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


class DesignError(UserError):
    """A design directory is missing, corrupt or inconsistent."""


def _is_number(v: Any) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def _level_indices(levels: np.ndarray, n_levels: int) -> np.ndarray:
    """Level maps as int16, checked *before* the cast (a cast would wrap 65538 to 2).

    Integer arrays are taken as they are; float arrays only when every value is a whole
    number (what arithmetic on level maps gives); anything else is refused.
    """
    if levels.dtype == bool or not (np.issubdtype(levels.dtype, np.integer)
                                    or np.issubdtype(levels.dtype, np.floating)):
        raise DesignError(f"levels: must be integer level indices, got dtype {levels.dtype}")
    if levels.size and np.issubdtype(levels.dtype, np.floating):
        if not np.all(np.isfinite(levels)) or np.any(levels != np.round(levels)):
            raise DesignError("levels: must be whole numbers (level indices), got "
                              f"non-integral {levels.dtype} values")
    if levels.size and (levels.min() < 0 or levels.max() >= n_levels):
        raise DesignError(f"levels: values must lie in 0..{n_levels - 1}, found "
                          f"{levels.min():.0f}..{levels.max():.0f}")
    if n_levels - 1 > np.iinfo(np.int16).max:
        raise DesignError(f"level_tables: at most {np.iinfo(np.int16).max + 1} levels, got "
                          f"{n_levels}")
    return levels.astype(np.int16)


def _floats(values: Any, name: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise DesignError(f"{name}: must be a list of numbers, got {type(values).__name__}")
    values = list(values)
    if not all(_is_number(v) for v in values):
        raise DesignError(f"{name}: must be a list of numbers, got {values!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True, eq=False)
class Design:
    """A quantized multi-layer design (see module docstring for the file format)."""

    setup: TaskSetup
    wavelength: float
    pitch: float
    levels: np.ndarray
    level_tables: np.ndarray
    distances: tuple[float, ...]
    layer_kind: LayerKind = "phase"
    pad: float = 2.0
    pixels: Pixels = "cells"
    #: samples per pixel per axis of the training model (verify's ``oversample``): the layers
    #: and the input are held over ``s × s`` samples of pitch ``pitch / s``
    oversample: int = 1
    #: how the training model propagated (:attr:`optodesign.grid.Grid.method`)
    propagation: str = "asm"
    free_levels: tuple[int, ...] = ()
    quantizer: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    target: np.ndarray | None = None
    fixed_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        levels = np.asarray(self.levels)
        if levels.ndim == 2:
            levels = levels[None]
        try:
            tables = np.asarray(self.level_tables, dtype=np.complex128)
        except (TypeError, ValueError):
            raise DesignError("level_tables: must be complex numbers, got "
                              f"{np.asarray(self.level_tables).dtype}") from None
        if tables.ndim == 1:
            tables = np.broadcast_to(tables, (levels.shape[0], tables.shape[0])).copy()
        if tables.ndim != 2:
            raise DesignError(f"level_tables: expected (K, L), got shape {tables.shape}")
        object.__setattr__(self, "levels", _level_indices(levels, tables.shape[-1]))
        object.__setattr__(self, "level_tables", tables)
        object.__setattr__(self, "distances", _floats(self.distances, "distances"))
        object.__setattr__(self, "free_levels", tuple(
            int(v) if _is_number(v) and float(v).is_integer() else v for v in self.free_levels))
        self.validate()

    # ------------------------------------------------------------------ derived quantities
    @property
    def task(self) -> str:
        """The task's name (``d2nn``, ``hologram``, ...; :data:`optodesign.tasks.TASKS`)."""
        return self.setup.name

    def allowed_levels(self) -> tuple[int, ...]:
        """Levels a free (not physics-fixed) pixel may take: :attr:`free_levels`, or all."""
        return self.free_levels or tuple(range(self.n_levels))

    @property
    def n_layers(self) -> int:
        return int(self.levels.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.levels.shape[1]), int(self.levels.shape[2])

    @property
    def n_levels(self) -> int:
        return int(self.level_tables.shape[1])

    @property
    def grid(self) -> Grid:
        """The sampling every layer and field of this design share: the levels' ``(ny, nx)``,
        :attr:`pitch`, the propagation's zero padding :attr:`pad` and its method."""
        return Grid(self.shape, self.pitch, pad=self.pad, method=self.propagation)

    def level_phases(self) -> np.ndarray:
        """Phase of each level, ``(K, L)`` in [0, 2π) radians (values within 1e-9 of 2π -> 0)."""
        ph = wrap_phase(np.angle(self.level_tables))
        ph[ph > 2 * np.pi - 1e-9] = 0.0
        return ph

    def transmissions(self) -> np.ndarray:
        """Complex transmission of every pixel, ``(K, ny, nx)`` complex128."""
        k = np.arange(self.n_layers)[:, None, None]
        return self.level_tables[k, self.levels]

    def with_levels(self, levels: np.ndarray, **changes: Any) -> Design:
        """A copy with new level maps (and any other fields changed)."""
        return replace(self, levels=np.asarray(levels), **changes)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if not isinstance(self.setup, TaskSetup):
            raise DesignError(f"setup: must be a task setup record, got "
                              f"{type(self.setup).__name__}")
        if self.layer_kind not in ("phase", "complex"):
            raise DesignError(f"layer_kind: must be 'phase' or 'complex', got {self.layer_kind!r}")
        for name in ("wavelength", "pitch"):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and v > 0):
                raise DesignError(f"{name}: must be a length > 0 in metres, got {v!r}")
        if self.pixels not in PIXELS:
            raise DesignError(f"pixels: must be one of {', '.join(PIXELS)}, got {self.pixels!r}")
        if not (isinstance(self.oversample, int) and not isinstance(self.oversample, bool)
                and self.oversample >= 1):
            raise DesignError(f"oversample: must be an integer >= 1, got {self.oversample!r}")
        check_method(self.propagation, field="propagation", error=DesignError)
        if not (_is_number(self.pad) and math.isfinite(self.pad) and self.pad >= 1):
            raise DesignError(f"pad: must be a number >= 1 (1 means no padding), got "
                              f"{self.pad!r}")
        for name in ("quantizer", "metrics", "extra"):
            v = getattr(self, name)
            if not isinstance(v, dict):
                raise DesignError(f"{name}: must be a table (JSON object), got "
                                  f"{type(v).__name__}")
        if self.levels.ndim != 3 or 0 in self.levels.shape:
            raise DesignError(f"levels: expected (K, ny, nx) with K, ny, nx >= 1, got shape "
                              f"{self.levels.shape}")
        K, L = self.level_tables.shape
        if K != self.n_layers:
            raise DesignError(
                f"level_tables: {K} tables for {self.n_layers} layers (need one per layer)"
            )
        if L < 2:
            raise DesignError(f"level_tables: need at least 2 levels, got {L}")
        if self.levels.min() < 0 or self.levels.max() >= L:
            raise DesignError(
                f"levels: values must lie in 0..{L - 1}, found "
                f"{int(self.levels.min())}..{int(self.levels.max())}"
            )
        if not np.all(np.isfinite(self.level_tables)):
            raise DesignError("level_tables: every transmission must be finite")
        if np.any(np.abs(self.level_tables) > 1 + 1e-6):
            raise DesignError("level_tables: every transmission must have |t| <= 1")
        if len(self.distances) != self.n_layers + 1:
            raise DesignError(
                f"distances: expected {self.n_layers + 1} (input->layer 1 ... layer K->output), "
                f"got {len(self.distances)}"
            )
        if any(d < 0 or not math.isfinite(d) for d in self.distances):
            raise DesignError(f"distances: must be finite and >= 0 metres, got {self.distances}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < L
                   for v in self.free_levels) or \
                len(set(self.free_levels)) != len(self.free_levels):
            raise DesignError(f"free_levels: must be distinct levels in 0..{L - 1}, got "
                              f"{list(self.free_levels)!r}")
        if self.target is not None:
            tgt = np.asarray(self.target)
            if tgt.shape != self.shape:
                raise DesignError(f"target: shape {tgt.shape} != layer shape {self.shape}")
            real = np.issubdtype(tgt.dtype, np.integer) or np.issubdtype(tgt.dtype, np.floating)
            if not real or not np.all(np.isfinite(tgt)):
                raise DesignError(f"target: must be finite real intensities, got dtype "
                                  f"{tgt.dtype}")
        if self.fixed_mask is not None:
            fm = np.asarray(self.fixed_mask)
            if fm.shape != self.levels.shape:
                raise DesignError(f"fixed_mask: shape {fm.shape} != levels {self.levels.shape}")
            if fm.dtype != bool and not np.isin(fm, (0, 1)).all():
                raise DesignError(f"fixed_mask: must be booleans, got dtype {fm.dtype}")
        try:
            self.setup.check(shape=self.shape, target=self.target)
        except SetupError as e:
            raise DesignError(str(e)) from None

    # ------------------------------------------------------------------ files
    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "task": self.task,
            "setup": self.setup.to_json(),
            "units": {"length": "m", "phase": "rad"},
            "wavelength": self.wavelength,
            "pitch": self.pitch,
            "shape": list(self.shape),
            "n_layers": self.n_layers,
            "n_levels": self.n_levels,
            "distances": list(self.distances),
            "pad": self.pad,
            "pixels": self.pixels,
            "oversample": self.oversample,
            "propagation": self.propagation,
            "layer_kind": self.layer_kind,
            "free_levels": list(self.free_levels),
            "quantizer": self.quantizer,
            "metrics": self.metrics,
            "extra": self.extra,
            "level_phases": self.level_phases().tolist(),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``design.npz`` and ``design.json`` atomically into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "levels": self.levels,
            "level_tables": self.level_tables,
        }
        if self.target is not None:
            arrays["target"] = np.asarray(self.target, dtype=np.float64)
        if self.fixed_mask is not None:
            arrays["fixed_mask"] = np.asarray(self.fixed_mask, dtype=bool)
        with atomic_path(directory / "design.npz") as tmp:
            tmp.write_bytes(_npz_bytes(arrays))
        atomic_write_json(directory / "design.json", self.to_json_dict())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Design:
        """Read a design directory (or a path to its design.json / design.npz).

        ``design.json`` is checked field by field and against ``design.npz``: its redundant
        fields (``shape``, ``n_layers``, ``n_levels``, ``level_phases``) must describe the
        arrays, ``levels`` must be an integer array in ``0..n_levels-1`` (checked before the
        cast to int16). Any problem is one :class:`DesignError` line naming the file and field.
        """
        directory = Path(directory)
        if directory.is_file():
            directory = directory.parent
        jpath, npath = directory / "design.json", directory / "design.npz"
        for p in (jpath, npath):
            if not p.is_file():
                raise DesignError(f"{p}: not found (run `optodesign train` to create a design)")
        try:
            meta = json.loads(jpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise DesignError(f"{jpath}: not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise DesignError(f"{jpath}: must hold a JSON object, got {type(meta).__name__}")
        if meta.get("format") not in FORMATS_READ:
            raise DesignError(f"{jpath}: format {meta.get('format')!r} is not "
                              f"{' or '.join(map(repr, FORMATS_READ))}")
        try:
            with np.load(npath, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile/npy errors come in many types
            raise DesignError(f"{npath}: cannot read ({type(e).__name__}: {e})") from None
        for key in ("levels", "level_tables"):
            if key not in arrays:
                raise DesignError(f"{npath}: missing array {key!r}")
        if not np.issubdtype(arrays["levels"].dtype, np.integer):
            raise DesignError(f"{npath}: levels must be an integer array, got dtype "
                              f"{arrays['levels'].dtype}")
        for key in ("task", "wavelength", "pitch", "distances"):
            if key not in meta:
                raise DesignError(f"{jpath}: missing field {key!r}")
        try:
            setup, free = _setup_and_free_levels(meta, arrays["levels"])
            design = cls(
                setup=setup,
                wavelength=meta["wavelength"],
                pitch=meta["pitch"],
                levels=arrays["levels"],
                level_tables=arrays["level_tables"],
                distances=meta["distances"],
                layer_kind=meta.get("layer_kind", "phase"),
                pad=meta.get("pad", 2.0),
                # files written before pixels existed were trained on point samples
                pixels=meta.get("pixels", "points"),
                oversample=meta.get("oversample", 1),
                propagation=meta.get("propagation", "asm"),
                free_levels=free,
                quantizer=meta.get("quantizer", {}),
                metrics=meta.get("metrics", {}),
                extra=_extra(meta, setup),
                target=arrays.get("target"),
                fixed_mask=arrays.get("fixed_mask"),
            )
        except DesignError as e:
            field_name = str(e).split(":", 1)[0]
            where = npath if field_name in ("levels", "level_tables", "target",
                                            "fixed_mask") else jpath
            raise DesignError(f"{where}: {e}") from None
        _check_redundant(meta, design, jpath)
        return design


def _setup_and_free_levels(meta: dict[str, Any],
                           levels: np.ndarray) -> tuple[TaskSetup, tuple[int, ...]]:
    """The task setup record and free levels of design.json, format 2 or 1."""
    try:
        task = get_task(meta["task"])
        shape = (int(levels.shape[-2]), int(levels.shape[-1])) if levels.ndim >= 2 else (0, 0)
        if meta["format"] == FORMAT:
            data = meta.get("setup", {})
            if not isinstance(data, dict):
                raise DesignError(f"setup: must be a table (JSON object), got "
                                  f"{type(data).__name__}")
            free = meta.get("free_levels", [])
            if isinstance(free, (str, bytes, dict)) or not hasattr(free, "__iter__"):
                raise DesignError(f"free_levels: must be a list of levels, got {free!r}")
            return task.setup_type.from_json(data, shape=shape), tuple(free)
        # format 1: the setup was scattered over detectors/input/dataset/extra, and refine
        # knew a binary layer's free levels from the quantizer's method
        quantizer = meta.get("quantizer")
        binary = isinstance(quantizer, dict) and quantizer.get("method") == "binary"
        return task.setup_type.from_v1(meta, shape=shape), (0, 1) if binary else ()
    except SetupError as e:
        raise DesignError(str(e)) from None


def _extra(meta: dict[str, Any], setup: TaskSetup) -> Any:
    """``extra`` without what format 1 kept there and the setup record now holds."""
    extra = meta.get("extra", {})
    if meta["format"] == FORMAT or not isinstance(extra, dict):
        return extra
    return {k: v for k, v in extra.items() if k not in setup.v1_extra_keys}


def _check_redundant(meta: dict[str, Any], design: Design, jpath: Path) -> None:
    """design.json's copies of what design.npz holds must agree with it."""
    where = f"{jpath}: disagrees with design.npz:"
    if "shape" in meta and meta["shape"] != list(design.shape):
        raise DesignError(f"{where} shape {meta['shape']!r}, the levels are "
                          f"{list(design.shape)}")
    for key, have in (("n_layers", design.n_layers), ("n_levels", design.n_levels)):
        if key in meta and (not _is_number(meta[key]) or meta[key] != have):
            raise DesignError(f"{where} {key} {meta[key]!r}, the arrays hold {have}")
    if "level_phases" in meta:
        try:
            ph = np.asarray(meta["level_phases"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DesignError(f"{where} level_phases must be a ({design.n_layers}, "
                              f"{design.n_levels}) list of numbers") from None
        have = design.level_phases()
        if ph.shape != have.shape:
            raise DesignError(f"{where} level_phases has shape {ph.shape}, the level tables "
                              f"{have.shape}")
        # compared on the circle: 2π - ε and 0 are the same phase
        diff = np.abs(np.angle(np.exp(1j * (ph - have)))) if np.all(np.isfinite(ph)) else None
        if diff is None or diff.max() > 1e-9:
            k, i = np.unravel_index(int(np.argmax(diff)), ph.shape) if diff is not None \
                else (0, 0)
            raise DesignError(f"{where} level_phases[{k}][{i}] = {ph[k, i]!r} rad, the level "
                              f"table gives {have[k, i]!r}")

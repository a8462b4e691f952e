"""The fabrication-variation file: which errors the fab makes, how large, and when a design
still works (the schema; the physics is in :mod:`optodesign.variation.perturb`).

An errors file (TOML) has up to three tables; every magnitude is in physical units, parsed with
:mod:`optodesign.units` (bare numbers are metres for lengths, degrees for angles)::

    [errors]                       # all optional, default 0 (no error); all combinable
    height_sigma = "10 um"         # random height error of every pixel, Gaussian σ
    height_scale = 0.01            # systematic relative height (etch depth) scale error
    height_scale_sigma = 0.01      # relative height scale drawn per sample (part to part), σ
    height_offset = "0 um"         # systematic uniform height offset (over-etch, thicker print)
    index_error = 0.0              # systematic refractive-index error Δn
    index_sigma = 0.005            # Δn drawn per sample, σ
    misalignment = "40 um"         # lateral offset of each layer, σ per axis
    rotation = 0.05                # in-plane rotation of each layer about its centre, σ, degrees
    linewidth_bias = "10 um"       # dilation (> 0) / erosion (< 0) of raised regions, per edge
    linewidth_bias_sigma = "10 um" # line-width bias drawn per sample (run to run), σ
    spacing_sigma = "100 um"       # error of every non-zero distance (layer spacing), σ
    wavelength_shift = "0 nm"      # source detuning Δλ (systematic)
    kappa = 0.0                    # extra extinction coefficient κ of the material

    [tolerance]
    metric = "accuracy"            # default: the task's primary metric
    max_drop = 0.02                # allowed drop from the nominal (absolute: 0.02 acc., 1 dB)
    statistic = "mean"             # mean | median | p5 | min of the metric under the errors

    [sweep]
    factors = [0, 0.5, 1, 2, 4]    # sweep magnitudes, × the configured magnitude
    samples = 8                    # samples per sweep point (random errors; systematic use 1)
    errors = ["height_sigma"]      # which errors to sweep (default: all)
    oversample = 8                 # sub-pixels per pixel (per axis) for linewidth_bias

Conventions (see ``docs/verify.md`` for the physics of each):

* "σ" errors are drawn per Monte-Carlo sample from ``N(0, σ²)``; systematic ones are the same
  in every sample. Each error has its own random stream seeded by ``(seed, sample, error)``,
  so switching one error on or off, or scaling it (the sweep), leaves the draws of the others
  unchanged (common random numbers make sweeps smooth).
* Heights: ``h' = (h (1 + height_scale) + height_offset) (1 + s) + σ z`` with ``s`` the
  per-sample scale, clipped at ``−base`` (nothing thinner than no plate) for thin elements.
* Placement (misalignment, rotation): the layer's transmission is resampled bilinearly at
  the moved pixel centres; pixels the plate no longer covers transmit **nothing** (zero-fill:
  the simulation window is the fixed, opaque aperture of the holder). An integer-pixel shift
  is therefore exactly a zero-filled shift (not a roll). Shifts within 1e-9 px of an integer
  are treated as integers so such a shift is exact to the bit. One period of a grating
  (``Task.periodic``, the fan-out) moves as the infinite grating: its neighbours move in.
* Line-width bias acts on the height map on a grid oversampled ``oversample`` times: a
  grayscale dilation (``> 0``; raised material grows by ``bias`` at every edge) or erosion
  (``< 0``) with a square footprint, then the thin-element transmission of every sub-pixel,
  then the area average back to the design pitch. A bias between two whole sub-pixels mixes
  the two results linearly (the averaged transmission is linear in the strip area), so the
  result is continuous in the bias and exact along straight edges.

All perturbations are pure numpy functions of the physical description
(:class:`~optodesign.process.physical.Physical`) and the seed
(:mod:`optodesign.variation.perturb`; the placement of moved layers is
:mod:`optodesign.optics.placement`, in torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from ..fileio import read_toml
from ..schema import Table

__all__ = [
    "ErrorSpec",
    "ERRORS",
    "ErrorModel",
    "Tolerance",
    "SweepSpec",
    "ErrorConfig",
    "Scales",
    "load_errors",
    "parse_errors",
    "default_errors",
    "reference_magnitude",
    "sweep_magnitudes",
    "STREAM",
]

Quantity = Literal["length", "signed_length", "relative", "index", "angle", "kappa"]
Statistic = Literal["mean", "median", "p5", "min"]
STATISTICS: tuple[str, ...] = ("mean", "median", "p5", "min")

@dataclass(frozen=True)
class ErrorSpec:
    """What one error is.

    Attributes:
        name: key in ``[errors]``.
        quantity: how it is parsed: ``length`` (>= 0 m), ``signed_length`` (m), ``relative``
            (a fraction, or ``"2 %"``), ``index`` (Δn), ``angle`` (degrees, or
            ``"1 mrad"``), ``kappa`` (>= 0).
        random: drawn per sample (a σ) rather than systematic.
        unit: unit shown in reports.
        help: one line for people.
    """

    name: str
    quantity: Quantity
    random: bool
    unit: str
    help: str


ERRORS: dict[str, ErrorSpec] = {s.name: s for s in (
    ErrorSpec("height_sigma", "length", True, "m", "random height error per pixel (σ)"),
    ErrorSpec("height_scale", "relative", False, "", "systematic relative height scale"),
    ErrorSpec("height_scale_sigma", "relative", True, "", "relative height scale per part (σ)"),
    ErrorSpec("height_offset", "signed_length", False, "m", "systematic uniform height offset"),
    ErrorSpec("index_error", "index", False, "", "systematic refractive-index error Δn"),
    ErrorSpec("index_sigma", "index", True, "", "refractive-index error per part (σ)"),
    ErrorSpec("misalignment", "length", True, "m", "lateral offset of each layer (σ per axis)"),
    ErrorSpec("rotation", "angle", True, "deg", "rotation of each layer (σ)"),
    ErrorSpec("linewidth_bias", "signed_length", False, "m",
              "line-width bias: dilation (> 0) / erosion (< 0) per edge"),
    ErrorSpec("linewidth_bias_sigma", "length", True, "m",
              "line-width bias drawn per sample (run to run, σ)"),
    ErrorSpec("spacing_sigma", "length", True, "m", "layer-spacing error (σ per distance)"),
    ErrorSpec("wavelength_shift", "signed_length", False, "m", "wavelength detuning Δλ"),
    ErrorSpec("kappa", "kappa", False, "", "extra extinction coefficient κ"),
)}

#: stable ids of the random streams (never renumber: seeds would change meaning)
STREAM = {"height_sigma": 1, "height_scale_sigma": 2, "index_sigma": 3, "misalignment": 4,
           "rotation": 5, "spacing_sigma": 6, "linewidth_bias_sigma": 7}


@dataclass(frozen=True)
class ErrorModel:
    """Magnitudes of every fabrication error (SI units; rotation in degrees). 0 = off."""

    height_sigma: float = 0.0
    height_scale: float = 0.0
    height_scale_sigma: float = 0.0
    height_offset: float = 0.0
    index_error: float = 0.0
    index_sigma: float = 0.0
    misalignment: float = 0.0
    rotation: float = 0.0
    linewidth_bias: float = 0.0
    linewidth_bias_sigma: float = 0.0
    spacing_sigma: float = 0.0
    wavelength_shift: float = 0.0
    kappa: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"errors.{f.name}: must be a finite number, got {v!r}")
            object.__setattr__(self, f.name, float(v))
            spec = ERRORS[f.name]
            if (spec.random or spec.quantity in ("length", "kappa")) and v < 0:
                raise ConfigError(f"errors.{f.name}: must be >= 0, got {v!r}")
        if self.height_scale <= -1:
            raise ConfigError(f"errors.height_scale: must be > -1 (heights stay positive), "
                              f"got {self.height_scale!r}")

    # ------------------------------------------------------------------ views
    def active(self) -> tuple[str, ...]:
        """Names of the errors with a non-zero magnitude, in :data:`ERRORS` order."""
        return tuple(n for n in ERRORS if getattr(self, n) != 0)

    @property
    def is_zero(self) -> bool:
        return not self.active()

    @property
    def is_random(self) -> bool:
        """Whether samples differ from one another (any σ error is on)."""
        return any(ERRORS[n].random for n in self.active())

    @property
    def varies_distances(self) -> bool:
        return self.spacing_sigma > 0

    def only(self, name: str, value: float) -> ErrorModel:
        """A model with just ``name`` set to ``value`` (every other error off)."""
        if name not in ERRORS:
            raise ConfigError(f"errors: unknown error {name!r} (allowed: {', '.join(ERRORS)})")
        return ErrorModel(**{name: value})

    def to_dict(self) -> dict[str, float]:
        return {n: getattr(self, n) for n in ERRORS}


@dataclass(frozen=True)
class Tolerance:
    """When a design still "works": the metric may drop at most ``max_drop`` below nominal.

    Attributes:
        metric: metric name (``None``: the task's primary metric).
        max_drop: allowed absolute drop (``None``: the task's ``default_drop`` of the metric).
        statistic: which statistic of the samples is compared: ``mean``, ``median``, ``p5``
            (5th percentile: 95 % of parts at least this good) or ``min``.
    """

    metric: str | None = None
    max_drop: float | None = None
    statistic: Statistic = "mean"

    def resolve(self, task: str) -> tuple[str, float]:
        """``(metric, max_drop)`` for a task; one-line ConfigError when the metric is wrong."""
        from ..tasks import get_task

        spec = get_task(task)
        metric = self.metric or spec.primary_metric
        allowed = spec.metric_names
        if metric not in allowed:
            raise ConfigError(f"tolerance.metric: {metric!r} is not a metric of task {task!r} "
                              f"(allowed: {', '.join(allowed)})")
        drop = self.max_drop if self.max_drop is not None else spec.default_drop[metric]
        return metric, float(drop)

    def statistic_of(self, values: np.ndarray) -> float:
        v = np.asarray(values, dtype=np.float64)
        if self.statistic == "mean":
            return float(v.mean())
        if self.statistic == "median":
            return float(np.median(v))
        if self.statistic == "p5":
            return float(np.percentile(v, 5))
        return float(v.min())


@dataclass(frozen=True)
class SweepSpec:
    """The tolerance sweep: metric vs each error's magnitude (one error at a time).

    Attributes:
        factors: magnitudes as multiples of the configured magnitude (or, when that is 0, of
            :func:`reference_magnitude`); must start at 0 and increase.
        samples: samples per sweep point for random errors (``None``: min(samples, 8));
            systematic errors need one.
        errors: which errors to sweep (``None``: all of :data:`ERRORS`).
        oversample: sub-pixels per pixel per axis for ``linewidth_bias``.
    """

    factors: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    samples: int | None = None
    errors: tuple[str, ...] | None = None
    oversample: int = 8


@dataclass(frozen=True)
class ErrorConfig:
    """A parsed errors file: the error model, the tolerance and the sweep."""

    errors: ErrorModel = ErrorModel()
    tolerance: Tolerance = Tolerance()
    sweep: SweepSpec = SweepSpec()
    source: str = ""
    defaults: bool = False  # True when built by default_errors (no file given)


@dataclass(frozen=True)
class Scales:
    """Natural scales of a fabricated stack, for default errors and sweep ranges.

    Attributes:
        pitch: pixel pitch, metres. size: pixels along the longer side.
        wavelength: metres. distance: mean non-zero distance, metres.
        index_contrast: ``n − n0``. height_2pi: relief height for 2π of phase (thin) or the
        pillar height (pillars), metres.
    """

    pitch: float
    size: int
    wavelength: float
    distance: float
    index_contrast: float
    height_2pi: float


# ---------------------------------------------------------------------------- parsing
def _relative(t: Table, key: str) -> float:
    value = t.raw(key)
    if isinstance(value, str):
        s = value.strip()
        if s.endswith("%"):
            try:
                return float(s[:-1]) / 100.0
            except ValueError:
                pass
        raise t.error(key, f"expected a fraction (0.01) or a percentage ('1 %'), got {value!r}")
    return t.number(key)


_ANGLE = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0, "rad": 180 / math.pi,
          "mrad": 0.180 / math.pi, "urad": 1.8e-4 / math.pi, "µrad": 1.8e-4 / math.pi,
          "arcmin": 1 / 60, "arcsec": 1 / 3600}


def _angle(t: Table, key: str) -> float:
    value = t.raw(key)
    if isinstance(value, str):
        s = value.strip()
        for unit in sorted(_ANGLE, key=len, reverse=True):
            if s.lower().endswith(unit):
                try:
                    return float(s[: -len(unit)]) * _ANGLE[unit]
                except ValueError:
                    break
        raise t.error(key, f"expected degrees (0.1) or an angle with a unit ('0.1 deg', "
                           f"'2 mrad'), got {value!r}")
    return t.number(key)


def _parse_value(spec: ErrorSpec, t: Table, key: str) -> float:
    if spec.quantity == "length":
        return t.length(key, allow_zero=True)
    if spec.quantity == "signed_length":
        return t.length(key, positive=False)
    if spec.quantity == "relative":
        return _relative(t, key)
    if spec.quantity == "angle":
        return _angle(t, key)
    return t.number(key)


def parse_errors(raw: Mapping[str, Any], *, source: str = "") -> ErrorConfig:
    """Validate a parsed errors TOML mapping (unknown keys rejected; one-line ConfigErrors)."""
    src = Path(source).name if source else ""
    top = Table(raw, {"errors", "tolerance", "sweep"}, src=src)
    e = top.table("errors", set(ERRORS))
    values = {k: _parse_value(ERRORS[k], e, k) for k in e.data}
    try:
        model = ErrorModel(**values)
    except ConfigError as err:
        raise ConfigError(f"{src}: {err}" if src else str(err)) from None

    t = top.table("tolerance", {"metric", "max_drop", "statistic"})
    from ..tasks import TASKS

    metrics = tuple(dict.fromkeys(m for task in TASKS.values() for m in task.metric_names))
    tol = Tolerance(t.choice("metric", metrics, None),
                    t.number("max_drop", None, low=0.0),
                    t.choice("statistic", STATISTICS, "mean"))

    s = top.table("sweep", {"factors", "samples", "errors", "oversample"})
    factors = s.numbers("factors", SweepSpec.factors)
    if factors[0] != 0 or any(b <= a for a, b in zip(factors[:-1], factors[1:], strict=True)):
        raise s.error("factors", f"must start at 0 and increase, got {list(factors)!r}")
    names = s.raw("errors", None)
    if names is not None:
        if not isinstance(names, list) or any(n not in ERRORS for n in names):
            bad = [n for n in names if n not in ERRORS] if isinstance(names, list) else names
            raise s.error("errors", f"unknown error {bad!r} (allowed: {', '.join(ERRORS)})")
        names = tuple(names)
    sweep = SweepSpec(factors, s.integer("samples", None, low=1), names,
                      s.integer("oversample", 8, low=1, high=64))
    return ErrorConfig(model, tol, sweep, source=source)


def load_errors(path: str | Path) -> ErrorConfig:
    """Read and validate an errors TOML file (see the module docstring)."""
    return parse_errors(read_toml(path, what="--errors file"), source=str(path))


# ---------------------------------------------------------------------------- defaults
def reference_magnitude(name: str, scales: Scales) -> float:
    """A "typical" magnitude of an error for this stack, used for the default error model
    and for sweep ranges of errors configured as 0.

    Heights: 1 % of the 2π height (σ) / 2 % scale; index: 1 % of ``n − n0``; placement: 0.1
    pixel (rotation: 0.1 pixel at the edge); line width: 1/16 pixel; spacing: 0.5 % of the
    mean distance; detuning 0.5 % of λ; κ: 5 % amplitude loss over the 2π height.
    """
    s = scales
    return {
        "height_sigma": 0.01 * s.height_2pi,
        "height_scale": 0.02,
        "height_scale_sigma": 0.01,
        "height_offset": 0.05 * s.height_2pi,
        "index_error": 0.02 * s.index_contrast,
        "index_sigma": 0.01 * s.index_contrast,
        "misalignment": 0.1 * s.pitch,
        "rotation": math.degrees(0.1 / (s.size / 2)),
        "linewidth_bias": s.pitch / 16,
        "linewidth_bias_sigma": s.pitch / 16,
        "spacing_sigma": 0.005 * s.distance,
        "wavelength_shift": 0.005 * s.wavelength,
        "kappa": -math.log(0.95) * s.wavelength / (2 * math.pi * s.height_2pi),
    }[name]


#: errors on in the default model (no --errors file): the random, part-to-part ones
DEFAULT_ON = ("height_sigma", "height_scale_sigma", "index_sigma", "misalignment", "rotation",
              "spacing_sigma")


def default_errors(scales: Scales) -> ErrorConfig:
    """The error model used without ``--errors``: :func:`reference_magnitude` of every random
    error (systematic errors off), the task's default tolerance, the default sweep."""
    model = ErrorModel(**{n: reference_magnitude(n, scales) for n in DEFAULT_ON})
    return ErrorConfig(model, Tolerance(), SweepSpec(), source="", defaults=True)


def sweep_magnitudes(name: str, model: ErrorModel, factors: tuple[float, ...],
                     scales: Scales) -> tuple[float, ...]:
    """Magnitudes of ``name`` to sweep: ``factors`` × the configured magnitude, or × the
    :func:`reference_magnitude` when it is configured as 0."""
    base = getattr(model, name) or reference_magnitude(name, scales)
    return tuple(float(f * base) for f in factors)

"""Physical units at the edges: strings such as ``"532 nm"`` become floats in SI units.

Inside optodesign every length is a plain ``float`` in metres, every frequency in hertz and
every phase in radians. Conversion happens only where a human writes a value: TOML configs,
process files and CLI options. Implausible magnitudes (a 532 m wavelength) are almost always a
units mistake and raise a :class:`UnitsWarning`.

Unit symbols are **case-sensitive**, as in SI: ``m`` is milli and ``M`` mega, so ``"1 Mm"``,
``"0.4 MM"``, ``"750 NM"`` or ``"0.4 thz"`` are refused (the message suggests the symbol that
differs only in case) instead of being read as millimetres or terahertz. Accepted:

* lengths: ``m``, ``cm``, ``mm``, ``um`` = ``µm`` = ``μm`` (also ``micron``/``microns``),
  ``nm``, ``pm``;
* frequencies: ``Hz``, ``kHz``, ``MHz``, ``GHz``, ``THz``, ``PHz``.

A string is what a person typed, so it must carry a unit: ``"1e3"`` is refused (it would be
1 km). A Python or TOML *number* is taken as SI metres unless the caller passes
``require_unit=True``, which the training config does for every length (exactly zero needs no
unit).
"""

from __future__ import annotations

import math
import re
import warnings

from .errors import UserError

__all__ = [
    "UnitsError",
    "UnitsWarning",
    "parse_length",
    "parse_frequency",
    "parse_quantity",
    "format_length",
    "wrap_phase",
    "TWO_PI",
]

SPEED_OF_LIGHT = 299_792_458.0  # m/s
TWO_PI = 2.0 * math.pi


def wrap_phase(phase):  # type: ignore[no-untyped-def]
    """Phase wrapped to [0, 2π), for a float, a numpy array or a torch tensor (differentiable).

    ``x % 2π`` alone returns exactly 2π for tiny negative ``x`` (rounding); that is mapped to 0
    so the result always lies in the half-open interval.
    """
    w = phase % TWO_PI
    return w * (w < TWO_PI)

_LENGTH = {
    "m": 1.0,
    "cm": 1e-2,
    "mm": 1e-3,
    "um": 1e-6,
    "µm": 1e-6,
    "μm": 1e-6,
    "micron": 1e-6,
    "microns": 1e-6,
    "nm": 1e-9,
    "pm": 1e-12,
}
_FREQUENCY = {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9, "THz": 1e12, "PHz": 1e15}
_LENGTH_NAMES = "m, cm, mm, um (µm), nm, pm"
_FREQUENCY_NAMES = "Hz, kHz, MHz, GHz, THz, PHz"
#: plausible wavelengths (metres) for any optodesign job, from EUV to millimetre waves
PLAUSIBLE_WAVELENGTH = (1e-9, 1e-1)

_NUMBER_UNIT = re.compile(
    r"^\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[^\d\s].*?)?\s*$"
)


class UnitsError(UserError):
    """A value with units could not be understood; the message names the field."""


class UnitsWarning(UserWarning):
    """A value parsed fine but its magnitude is implausible (probably a units mistake)."""


def _split(value: str | float | int, field: str) -> tuple[float, str | None]:
    if isinstance(value, bool):
        raise UnitsError(f"{field}: expected a number or a string with units, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value), None
    if not isinstance(value, str):
        raise UnitsError(
            f"{field}: expected a number or a string with units such as '532 nm', got {value!r}"
        )
    m = _NUMBER_UNIT.match(value)
    if m is None:
        raise UnitsError(
            f"{field}: cannot read {value!r}; write a number and a unit, e.g. '532 nm' or '0.4 mm'"
        )
    unit = m.group("unit")
    return float(m.group("num")), (unit.strip() if unit else None)


def _case_hint(unit: str, table: dict[str, float]) -> str:
    """``; units are case-sensitive: did you mean 'mm'?`` when only the case differs."""
    same = [u for u in table if u.lower() == unit.lower()]
    if same:
        return f"; units are case-sensitive: did you mean {same[0]!r}?"
    return ""


def parse_length(
    value: str | float | int,
    *,
    field: str = "length",
    positive: bool = True,
    allow_zero: bool = False,
    plausible: tuple[float, float] | None = None,
    require_unit: bool = False,
) -> float:
    """Parse a length into metres.

    Args:
        value: ``"532 nm"``, ``"0.4 mm"``, ``"36 um"`` or a number in metres. A string without
            a unit (``"3e-6"``) is refused.
        field: name used in error messages (e.g. ``"wavelength"``).
        positive: require value > 0 (or >= 0 when ``allow_zero``).
        allow_zero: accept exactly zero when ``positive``.
        plausible: (low, high) in metres; outside it a :class:`UnitsWarning` is issued.
        require_unit: refuse bare numbers too (``0.02`` in a TOML file: metres or mm?); an
            exact zero is still accepted.

    Returns:
        The length in metres.

    Raises:
        UnitsError: unknown unit (case-sensitive), a missing unit, unreadable string,
            non-finite or out-of-sign value.
    """
    number, unit = _split(value, field)
    if unit is None:
        if (isinstance(value, str) or require_unit) and number != 0:
            raise UnitsError(
                f"{field}: give a unit, e.g. \"{format_length(number)}\" if {value!r} means "
                f"metres (a bare number is ambiguous; units: {_LENGTH_NAMES})"
            )
        scale = 1.0
    else:
        if unit not in _LENGTH:
            raise UnitsError(f"{field}: unknown length unit {unit!r} (allowed: {_LENGTH_NAMES})"
                             f"{_case_hint(unit, _LENGTH)}")
        scale = _LENGTH[unit]
    metres = number * scale
    if not math.isfinite(metres):
        raise UnitsError(f"{field}: must be finite, got {value!r}")
    if positive:
        if metres < 0 or (metres == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise UnitsError(f"{field}: must be {bound}, got {value!r}")
    if plausible is not None:
        _warn_implausible(metres, field, plausible)
    return metres


def parse_frequency(value: str | float | int, *, field: str = "frequency") -> float:
    """Parse a frequency (``"0.4 THz"``, case-sensitive units) into hertz; must be > 0."""
    number, unit = _split(value, field)
    scale = 1.0
    if unit is not None:
        if unit not in _FREQUENCY:
            raise UnitsError(f"{field}: unknown frequency unit {unit!r} (allowed: "
                             f"{_FREQUENCY_NAMES}){_case_hint(unit, _FREQUENCY)}")
        scale = _FREQUENCY[unit]
    hz = number * scale
    if not (math.isfinite(hz) and hz > 0):
        raise UnitsError(f"{field}: must be > 0, got {value!r}")
    return hz


def parse_quantity(value: str | float | int, *, field: str, require_unit: bool = False) -> float:
    """Parse a wavelength given either as a length or as a frequency (``"0.4 THz"``).

    A unit ending in ``Hz`` (any case) is read as a frequency, so ``"0.4 thz"`` gets the
    frequency units in its error. Wavelengths outside :data:`PLAUSIBLE_WAVELENGTH` warn
    (:class:`UnitsWarning`), whether given as a length or a frequency.
    """
    _, unit = _split(value, field)
    if unit is not None and unit.lower().endswith("hz"):
        metres = SPEED_OF_LIGHT / parse_frequency(value, field=field)
        _warn_implausible(metres, field, PLAUSIBLE_WAVELENGTH, given=f" ({value})")
        return metres
    return parse_length(value, field=field, plausible=PLAUSIBLE_WAVELENGTH,
                        require_unit=require_unit)


def _warn_implausible(metres: float, field: str, plausible: tuple[float, float], *,
                      given: str = "") -> None:
    low, high = plausible
    if metres != 0 and not (low <= abs(metres) <= high):
        warnings.warn(
            f"{field} = {format_length(metres)}{given} is outside the plausible range "
            f"{format_length(low)}..{format_length(high)}; check the units",
            UnitsWarning,
            stacklevel=3,
        )


def format_length(metres: float, *, digits: int = 6) -> str:
    """Human-readable length: ``format_length(5.32e-7) == '532 nm'`` (``digits`` significant)."""
    if metres == 0:
        return "0 m"
    a = abs(metres)
    for unit, scale in (("m", 1.0), ("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9), ("pm", 1e-12)):
        if a >= scale * 0.9999999:
            return f"{metres / scale:.{digits}g} {unit}"
    return f"{metres:.{digits}g} m"

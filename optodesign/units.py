"""Physical units at the edges: strings such as ``"532 nm"`` become floats in SI units.

Inside optodesign every length is a plain ``float`` in metres, every frequency in hertz and
every phase in radians. Conversion happens only where a human writes a value: TOML configs,
process files and CLI options. Implausible magnitudes (a 532 m wavelength) are almost always a
units mistake and raise a :class:`UnitsWarning`.
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
]

SPEED_OF_LIGHT = 299_792_458.0  # m/s

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
_FREQUENCY = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9, "thz": 1e12, "phz": 1e15}

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


def parse_length(
    value: str | float | int,
    *,
    field: str = "length",
    positive: bool = True,
    allow_zero: bool = False,
    plausible: tuple[float, float] | None = None,
) -> float:
    """Parse a length into metres.

    Args:
        value: ``"532 nm"``, ``"0.4 mm"``, ``"36 um"``, ``"3e-6"`` (bare numbers are metres) or a
            float in metres.
        field: name used in error messages (e.g. ``"wavelength"``).
        positive: require value > 0 (or >= 0 when ``allow_zero``).
        allow_zero: accept exactly zero when ``positive``.
        plausible: (low, high) in metres; outside it a :class:`UnitsWarning` is issued.

    Returns:
        The length in metres.

    Raises:
        UnitsError: unknown unit, unreadable string, non-finite or out-of-sign value.
    """
    number, unit = _split(value, field)
    if unit is None:
        scale = 1.0
    else:
        key = unit if unit in _LENGTH else unit.lower()
        if key not in _LENGTH:
            allowed = ", ".join(sorted({"m", "cm", "mm", "um", "nm", "pm"}))
            raise UnitsError(f"{field}: unknown length unit {unit!r} (allowed: {allowed})")
        scale = _LENGTH[key]
    metres = number * scale
    if not math.isfinite(metres):
        raise UnitsError(f"{field}: must be finite, got {value!r}")
    if positive:
        if metres < 0 or (metres == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise UnitsError(f"{field}: must be {bound}, got {value!r}")
    if plausible is not None and metres != 0:
        low, high = plausible
        if not (low <= abs(metres) <= high):
            warnings.warn(
                f"{field} = {format_length(metres)} is outside the plausible range "
                f"{format_length(low)}..{format_length(high)}; check the units",
                UnitsWarning,
                stacklevel=2,
            )
    return metres


def parse_frequency(value: str | float | int, *, field: str = "frequency") -> float:
    """Parse a frequency (``"0.4 THz"``) into hertz; must be > 0."""
    number, unit = _split(value, field)
    scale = 1.0
    if unit is not None:
        if unit.lower() not in _FREQUENCY:
            raise UnitsError(
                f"{field}: unknown frequency unit {unit!r} (allowed: Hz, kHz, MHz, GHz, THz, PHz)"
            )
        scale = _FREQUENCY[unit.lower()]
    hz = number * scale
    if not (math.isfinite(hz) and hz > 0):
        raise UnitsError(f"{field}: must be > 0, got {value!r}")
    return hz


def parse_quantity(value: str | float | int, *, field: str) -> float:
    """Parse a wavelength given either as a length or as a frequency (``"0.4 THz"``)."""
    _, unit = _split(value, field)
    if unit is not None and unit.lower() in _FREQUENCY:
        return SPEED_OF_LIGHT / parse_frequency(value, field=field)
    return parse_length(value, field=field, plausible=(1e-9, 1e-1))


def format_length(metres: float, *, digits: int = 6) -> str:
    """Human-readable length: ``format_length(5.32e-7) == '532 nm'`` (``digits`` significant)."""
    if metres == 0:
        return "0 m"
    a = abs(metres)
    for unit, scale in (("m", 1.0), ("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9), ("pm", 1e-12)):
        if a >= scale * 0.9999999:
            return f"{metres / scale:.{digits}g} {unit}"
    return f"{metres:.{digits}g} m"

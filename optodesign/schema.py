"""The one schema layer: reading validated values out of a TOML table.

Config files, process files (``layouts/*.toml``) and fabrication-variation files are all read
through :class:`Table`, so every file reports a bad value the same way, in one line naming the
file and the field::

    lens.toml: optics.wavelength: must be a length > 0, got '-532 nm'

The readers return plain values; each file's own module builds its frozen dataclasses from
them. Unknown keys are refused when a table is opened, with the keys that are allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .units import UnitsError, parse_length, parse_quantity

__all__ = ["Table", "MISSING"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Default meaning "the key is required"."""


class Table:
    """One TOML table (a ``[section]`` or the top level) of one file.

    Args:
        data: the parsed table.
        allowed: the keys it may hold; any other key is a one-line error naming the allowed
            ones. ``None`` accepts any key (free-form tables such as quantizer options).
        src: the file's name (``""`` for a dict built in Python), prefixed to every error.
        section: the dotted name of this table (``""`` for the top level).
        base_dir: the directory relative paths in the file are read from (the file's own
            directory); ``None`` leaves them relative to the working directory.
    """

    def __init__(self, data: Any, allowed: set[str] | None, *, src: str = "",
                 section: str = "", base_dir: str | Path | None = None):
        self.src, self.section = src, section
        self.base_dir = None if base_dir is None else Path(base_dir)
        if not isinstance(data, Mapping):
            where = f"[{section}]" if section else "the file"
            raise ConfigError(self._prefix(f"{section or 'top level'}: must be a table "
                                           f"({where} of keys), got {data!r}"))
        self.data: Mapping[str, Any] = data
        if allowed is not None:
            unknown = sorted(set(data) - allowed)
            if unknown:
                raise ConfigError(
                    f"{self.field(unknown[0])}: unknown key (allowed in "
                    f"[{section or 'top level'}]: {', '.join(sorted(allowed))})"
                )

    # ------------------------------------------------------------------ naming
    def _prefix(self, message: str) -> str:
        return f"{self.src}: {message}" if self.src else message

    def field(self, key: str) -> str:
        """``"file: section.key"``: how errors name a key of this table."""
        return self._prefix(f"{self.section}.{key}" if self.section else key)

    def error(self, key: str, what: str) -> ConfigError:
        """A one-line error about ``key``: ``"file: section.key: what"``."""
        return ConfigError(f"{self.field(key)}: {what}")

    # ------------------------------------------------------------------ access
    def __contains__(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = MISSING) -> Any:
        """The value as parsed, or ``default``; a missing required key is an error."""
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            raise self.error(key, "missing (required)")
        return default

    def table(self, key: str, allowed: set[str] | None) -> Table:
        """The sub-table ``key`` (empty when absent), refusing keys outside ``allowed``."""
        name = f"{self.section}.{key}" if self.section else key
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(self._prefix(f"{name}: must be a table (a [{name}] section of "
                                           f"keys), got {value!r}"))
        return Table(value, allowed, src=self.src, section=name, base_dir=self.base_dir)

    # ------------------------------------------------------------------ typed values
    def integer(self, key: str, default: Any = MISSING, *, low: int | None = 1,
                high: int | None = None) -> Any:
        v = self.raw(key, default)
        if key not in self.data:
            return v
        ok = isinstance(v, int) and not isinstance(v, bool)
        if not ok or (low is not None and v < low) or (high is not None and v > high):
            rng = (f" in {low}..{high}" if low is not None and high is not None else
                   f" >= {low}" if low is not None else f" <= {high}" if high is not None
                   else "")
            raise self.error(key, f"must be an integer{rng}, got {v!r}")
        return int(v)

    def number(self, key: str, default: Any = MISSING, *, low: float | None = None,
               strict_low: bool = False, high: float | None = None) -> Any:
        v = self.raw(key, default)
        if key not in self.data:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.error(key, f"expected a finite number, got {v!r}")
        if low is not None and (v < low or (strict_low and v == low)):
            raise self.error(key, f"must be {'>' if strict_low else '>='} {low:g}, got {v!r}")
        if high is not None and v > high:
            raise self.error(key, f"must be <= {high:g}, got {v!r}")
        return float(v)

    def boolean(self, key: str, default: Any = MISSING) -> Any:
        v = self.raw(key, default)
        if key in self.data and not isinstance(v, bool):
            raise self.error(key, f"must be true or false, got {v!r}")
        return v

    def string(self, key: str, default: Any = MISSING, *,
               what: str = "a non-empty string") -> Any:
        v = self.raw(key, default)
        if key in self.data and (not isinstance(v, str) or not v.strip()):
            raise self.error(key, f"must be {what}, got {v!r}")
        return v

    def choice(self, key: str, allowed: Sequence[str], default: Any = MISSING) -> Any:
        v = self.raw(key, default)
        if key in self.data and (not isinstance(v, str) or v not in allowed):
            raise self.error(key, f"{v!r} is not one of {', '.join(allowed)}")
        return v

    def length(self, key: str, default: Any = MISSING, *, allow_zero: bool = False,
               positive: bool = True, require_unit: bool = False) -> Any:
        """A length in metres from ``"532 nm"`` (or a bare number in metres unless
        ``require_unit``)."""
        v = self.raw(key, default)
        if key not in self.data:
            return v
        if isinstance(v, (list, dict, bool)):
            raise self.error(key, f"expected a length such as '2 cm', got {v!r}")
        try:
            return parse_length(v, field=self.field(key), allow_zero=allow_zero,
                                positive=positive, require_unit=require_unit)
        except UnitsError as e:
            raise ConfigError(str(e)) from None

    def wavelength(self, key: str, default: Any = MISSING, *,
                   require_unit: bool = False) -> Any:
        """A wavelength in metres from a length (``"532 nm"``) or a frequency (``"0.4 THz"``)."""
        v = self.raw(key, default)
        if key not in self.data:
            return v
        if isinstance(v, (list, dict, bool)):
            raise self.error(key, f"expected a wavelength such as '532 nm', got {v!r}")
        try:
            return parse_quantity(v, field=self.field(key), require_unit=require_unit)
        except UnitsError as e:
            raise ConfigError(str(e)) from None

    def numbers(self, key: str, default: Any = MISSING, *, min_len: int = 1) -> Any:
        """A list of finite numbers."""
        v = self.raw(key, default)
        if key not in self.data:
            return v
        if (not isinstance(v, list) or len(v) < min_len
                or any(isinstance(x, bool) or not isinstance(x, (int, float))
                       or not math.isfinite(x) for x in v)):
            raise self.error(key, f"expected a list of at least {min_len} finite numbers, "
                                  f"got {v!r}")
        return tuple(float(x) for x in v)

    # ------------------------------------------------------------------ lists (train config)
    def lengths(self, key: str, default: Any = MISSING, *, count: int | None = None,
                hint: str = "", allow_zero: bool = False, require_unit: bool = False) -> Any:
        """A list of lengths in metres (``count`` of them when given); a bad item is named
        ``key[i]``. ``hint`` follows "need a list of N lengths" in the error."""
        v = self.raw(key, default)
        if key not in self.data:
            return v
        if not isinstance(v, list) or (count is not None and len(v) != count):
            n = f"{count} " if count is not None else ""
            raise self.error(key, f"need a list of {n}lengths{hint}, got {v!r}")
        items = Table({f"{key}[{i}]": x for i, x in enumerate(v)}, None, src=self.src,
                      section=self.section)
        return tuple(items.length(k, allow_zero=allow_zero, require_unit=require_unit)
                     for k in items.data)

    def integers(self, key: str, default: Any = MISSING, *, count: int, low: int = 1,
                 hint: str = "") -> Any:
        """A list of exactly ``count`` integers >= ``low`` (``hint``: what they mean)."""
        v = self.raw(key, default)
        if key not in self.data:
            return v
        if (not isinstance(v, list) or len(v) != count
                or any(isinstance(x, bool) or not isinstance(x, int) or x < low for x in v)):
            raise self.error(key, f"must be a list of {count} integers >= {low}{hint}, "
                                  f"got {v!r}")
        return tuple(v)

    def pixel_boxes(self, key: str, default: Any = MISSING, *,
                    shape: tuple[int, int]) -> Any:
        """A list of ``[y0, x0, h, w]`` pixel boxes, each non-empty and inside ``shape``."""
        v = self.raw(key, default)
        if key not in self.data:
            return v
        if not isinstance(v, list):
            raise self.error(key, f"must be a list of [y0, x0, h, w] boxes in pixels, got {v!r}")
        ny, nx = shape
        for i, b in enumerate(v):
            if not (isinstance(b, list) and len(b) == 4 and all(
                    isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in b)):
                raise self.error(key, f"each box is [y0, x0, h, w], integers >= 0 in pixels; "
                                      f"box {i} is {b!r}")
            y0, x0, h, w = b
            if h < 1 or w < 1:
                raise self.error(key, f"box {i} {b} is empty (h and w must be >= 1)")
            if y0 + h > ny or x0 + w > nx:
                raise self.error(key, f"box {i} {b} lies outside the {ny}x{nx} grid")
        return tuple(tuple(b) for b in v)

    def path(self, key: str, default: Any = MISSING, *, what: str,
             names: bool = False) -> Any:
        """A file or directory path, relative to the file's directory (:attr:`base_dir`)
        when not absolute. With ``names``, a bare name (no ``/``, no ``.toml``: a shipped
        process such as ``"thz-printed"``) is returned as it is."""
        v = self.string(key, default, what=what)
        if key not in self.data or self.base_dir is None:
            return v
        p = Path(v).expanduser()
        if names and "/" not in v and "\\" not in v and p.suffix != ".toml":
            return v
        return v if p.is_absolute() else str(self.base_dir / p)

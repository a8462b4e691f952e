"""Errors meant for the user: one line, naming the field and what is allowed.

The CLI turns any :class:`UserError` into ``error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError"]


class UserError(ValueError):
    """Bad input from the user (a file, a config value, an option)."""


class ConfigError(UserError):
    """A config or process file value is missing, unknown or out of range."""

"""Shared pieces of the CLI commands: user-error handling, output checks and device choice."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to compute: auto uses CUDA when available, else CPU.",
)

#: exit codes shared by every command (verify adds 1 = FAIL)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _os_error_line(e: OSError) -> str:
    where = e.filename if e.filename is not None else ""
    what = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        what = "no space left on the device; nothing already written was replaced"
    return f"{where}: {what}" if where else what


def user_errors(func: F) -> F:
    """Turn bad input and environment failures into one line on stderr and exit code 2.

    :class:`UserError` (and subclasses), ``OSError`` (unwritable path, full disk) and
    ``MemoryError`` become ``error: ...`` and exit 2; Ctrl-C exits 130 as shells expect.
    Every writer in the library is atomic, so none of these leaves a half-written file.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except OSError as e:
            click.echo(f"error: {_os_error_line(e)}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except MemoryError:
            click.echo("error: out of memory; reduce the grid size, layers, batch_size or "
                       "--samples", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]


def check_output_dir(path: Path, option: str) -> None:
    """Fail fast (before any expensive work) when ``path`` cannot become a writable directory.

    Creates nothing; checks that the path is not a file and that its nearest existing
    ancestor is a writable directory.

    Raises:
        UserError: one line naming ``option``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option}: {path} exists and is not a directory")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{option}: {path} cannot be created: {probe} is not a directory")
    # try it (os.access says yes to root everywhere, even on /proc or a read-only mount)
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise UserError(f"{option}: {path} is not writable ({probe}: "
                        f"{e.strerror or e})") from None


#: the largest seed a TOML config can hold (a signed 64-bit integer)
MAX_SEED = 2**63 - 1


def parse_int_option(text: str | None, option: str, *, low: int,
                     high: int | None = None) -> int | None:
    """An integer option read by hand, so that a bad value is one line (not click's usage).

    Raises:
        UserError: ``option: must be an integer >= low[, <= high], got 'text'``.
    """
    if text is None:
        return None
    try:
        value = int(text.strip(), 10)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"from {low} to {high}"
        raise UserError(f"{option}: must be an integer {allowed}, got {text!r}")
    return value


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one errs."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda requested but no CUDA device is available "
                        "(use auto or cpu)")
    return name

"""The ``optodesign`` command line: a thin click group.

Each command lives in ``optodesign/commands/<name>.py`` and is imported only when it runs, so
``optodesign --help`` starts fast and a broken optional dependency only breaks its command.
Library errors (:class:`optodesign.errors.UserError` and friends) become one line on stderr
and exit code 2.

Commands that compute (train, refine, verify, quickstart) first raise glibc malloc's mmap and
trim thresholds for their own process (:func:`tune_malloc`): CPU training is allocator-bound
otherwise, because every batch-sized tensor above glibc's 32 MiB mmap threshold is mapped and
zero-filled again on every step. The settings are the ones
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=…``
would give, applied with ``mallopt`` at run time, so there is no re-exec: ``optodesign``,
``python -m optodesign`` and ``torchrun -m optodesign`` (each rank) behave alike.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping

import click

# name -> (module, attribute, one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("optodesign.commands.train", "train",
              "Train a quantized design from a TOML config."),
    "export": ("optodesign.commands.export", "export",
               "Write GDSII/OASIS/STL for a trained design."),
    "verify": ("optodesign.commands.verify", "verify",
               "Simulate the written files under fab errors."),
    "quickstart": (
        "optodesign.commands.quickstart",
        "quickstart",
        "Train, export and verify the embedded default (no download).",
    ),
    "refine": ("optodesign.commands.refine", "refine", "Refine a design's levels discretely."),
}


#: commands whose process gets :func:`tune_malloc` before it runs
COMPUTE_COMMANDS = frozenset({"train", "refine", "verify", "quickstart"})

#: set to anything but ``""``/``"0"`` to keep glibc malloc's default thresholds
MALLOC_OPT_OUT = "OPTODESIGN_NO_MALLOC_TUNING"
#: glibc's mallopt parameters (malloc.h) and the values set: a 1 GiB mmap threshold keeps
#: batch-sized buffers in the heap, where freed memory is reused without page faults; the trim
#: threshold (an int for mallopt, so 2 GiB rather than the tunable's 4 GiB) stops the heap
#: from being returned to the kernel, and faulted in again, between steps.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1
#: legacy environment variables that configure glibc malloc the same way GLIBC_TUNABLES does
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
               "MALLOC_MMAP_MAX_")

#: what :func:`tune_malloc` did in this process (None: not called yet)
malloc_status: str | None = None


def malloc_tuning_blocker(env: Mapping[str, str], platform: str,
                          libc: str | None) -> str | None:
    """Why the allocator must be left alone, or None when :func:`tune_malloc` may tune it.

    Args:
        env: the process environment.
        platform: ``sys.platform``.
        libc: ``os.confstr("CS_GNU_LIBC_VERSION")`` (e.g. ``"glibc 2.36"``), None when unknown.
    """
    if env.get(MALLOC_OPT_OUT, "") not in ("", "0"):
        return f"opted out ({MALLOC_OPT_OUT}={env[MALLOC_OPT_OUT]})"
    if platform != "linux" or not (libc or "").startswith("glibc"):
        return f"not glibc ({platform}, {libc or 'unknown libc'})"
    preload = env.get("LD_PRELOAD", "")
    if "malloc" in preload:
        return f"another allocator is preloaded (LD_PRELOAD={preload})"
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return f"set by the user (GLIBC_TUNABLES={env['GLIBC_TUNABLES']})"
    named = [k for k in _MALLOC_ENV if k in env]
    if named:
        return f"set by the user ({named[0]}={env[named[0]]})"
    return None


def tune_malloc() -> str:
    """Raise glibc malloc's mmap and trim thresholds for this process, unless the user chose.

    Does nothing (and says why) when ``OPTODESIGN_NO_MALLOC_TUNING`` is set, off Linux/glibc,
    when ``GLIBC_TUNABLES`` or a ``MALLOC_*_`` variable already configures malloc, or when
    another allocator (tcmalloc, jemalloc, ...) replaces malloc. Only allocations made after
    the call are affected; memory the process has freed stays with it (up to 2 GiB) instead
    of being returned to the kernel.

    Returns:
        ``"tuned (mmap_threshold=..., trim_threshold=...)"`` or the reason it did nothing; also
        kept in :data:`malloc_status`.
    """
    global malloc_status
    try:
        libc_name: str | None = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        libc_name = None
    status = malloc_tuning_blocker(os.environ, sys.platform, libc_name)
    if status is None:
        status = _mallopt()
    malloc_status = status
    return status


def _mallopt() -> str:
    import ctypes

    try:
        process = ctypes.CDLL(None)
        libc = ctypes.CDLL("libc.so.6")
        # malloc interposed by a library that LD_PRELOAD does not name (linked in, dlopen'ed
        # early): its own settings apply, glibc's would be ignored
        if ctypes.cast(process.malloc, ctypes.c_void_p).value != ctypes.cast(
                libc.malloc, ctypes.c_void_p).value:
            return "another allocator replaces glibc malloc"
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError) as e:
        return f"not tuned: {e}"
    if not ok:
        return "not tuned: this glibc refused mallopt's thresholds"
    return f"tuned (mmap_threshold={MMAP_THRESHOLD}, trim_threshold={TRIM_THRESHOLD})"


@click.command("debug-allocator", hidden=True)
def _debug_allocator() -> None:
    """Print, as JSON, what tune_malloc did and whether a 64 MiB block is mmapped now."""
    click.echo(json.dumps({"status": malloc_status, "mmapped_64mib": _mmapped(64 << 20)}))


def _mmapped(nbytes: int) -> bool | None:
    """Whether glibc serves a block of ``nbytes`` by mmap (None when it cannot tell)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    name = "mallinfo2" if hasattr(libc, "mallinfo2") else "mallinfo"
    field = ctypes.c_size_t if name == "mallinfo2" else ctypes.c_int

    class Info(ctypes.Structure):
        _fields_ = [(f, field) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                         "usmblks", "fsmblks", "uordblks", "fordblks",
                                         "keepcost")]

    info = getattr(libc, name)
    info.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = info().hblks
    block = libc.malloc(nbytes)
    if not block:
        return None
    try:
        return info().hblks > before
    finally:
        libc.free(block)


HIDDEN_COMMANDS: dict[str, click.Command] = {"debug-allocator": _debug_allocator}


class LazyGroup(click.Group):
    #: True once called as a program (the ``optodesign`` script, ``python -m optodesign``):
    #: only then does the process belong to the command, so only then is malloc tuned.
    #: CliRunner and other in-process callers use ``.main()`` and keep their allocator.
    as_program = False

    def __call__(self, *args: object, **kwargs: object) -> object:
        LazyGroup.as_program = True
        return super().__call__(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (mod, _, _) in COMMANDS.items() if _available(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in HIDDEN_COMMANDS:
            return HIDDEN_COMMANDS[cmd_name]
        if cmd_name not in COMMANDS or not _available(COMMANDS[cmd_name][0]):
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="optodesign")
@click.pass_context
def main(ctx: click.Context) -> None:
    """optodesign: train fabrication-aware diffractive optics, export GDS/STL, verify them.

    \b
    optodesign quickstart --out runs/quick              # all three steps, embedded data
    optodesign train examples/d2nn_digits.toml --out runs/d2nn
    optodesign export runs/d2nn --process thz-printed --out fab/d2nn
    optodesign verify fab/d2nn --report fab/d2nn/verify

    Commands that compute raise glibc malloc's mmap/trim thresholds for their own process
    (faster CPU training); OPTODESIGN_NO_MALLOC_TUNING=1 keeps glibc's defaults.
    """
    if LazyGroup.as_program and (ctx.invoked_subcommand in COMPUTE_COMMANDS
                                 or ctx.invoked_subcommand in HIDDEN_COMMANDS):
        tune_malloc()


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="optodesign")

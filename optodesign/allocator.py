"""glibc malloc tuning for the processes the CLI runs (see :mod:`optodesign.cli`).

On CPU, training is allocator-bound with glibc's defaults: every batch-sized tensor above the
32 MiB mmap threshold is mapped and zero-filled again at every step. :func:`tune_malloc`
raises the mmap and trim thresholds with ``mallopt`` (what
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=…`` would do), unless the user chose an
allocator or opted out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = ["MALLOC_OPT_OUT", "malloc_tuning_blocker", "tune_malloc", "mmapped", "malloc_status"]

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


def mmapped(nbytes: int) -> bool | None:
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

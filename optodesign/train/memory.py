"""Peak memory of a training run, estimated from the config before anything is allocated.

A grid of ``size = 100000`` or ``layers = 10000`` used to start allocating and either grind
for minutes or be killed by the kernel. :func:`estimate_peak_memory` counts what a run holds
at its peak, from the config alone (pure arithmetic, microseconds):

* **training step** (batch ``B`` = ``min(train.batch_size, training samples)``; 1 for a
  metasurface): every non-zero propagation keeps one zero-padded complex64 field
  (``8·P`` bytes, ``P`` = padded pixels) alive for backward (the cropped inverse FFT output
  that the next layer's product saves), and the FFT, the spectrum product and their
  gradients need about three more padded fields at once: ``8·P·B·(propagations + 3)``;
* **evaluation** (no gradient, test batches of up to 256 images): the previous plane's
  padded output, the product with the layer, the spectrum and the new output of one
  propagation at a time, about ``8·B_eval·(3·P + 2·N²)``;
* **parameters**: float32 raw values with gradient and two Adam moments, complex
  transmissions and the quantizer's per-level soft assignment (``L`` levels):
  ``K·N²·(16 + 16 + 12·L)``;
* the **transfer-function cache** (one complex64 ``P`` per distinct distance) and the float64
  scratch of computing one (about ``64·P``);
* the **dataset** as float32 (and its uint8 source);
* a fixed :data:`OVERHEAD` for autograd bookkeeping, plots and small tensors.

Measured on CPU (torch 2.13, one epoch through ``Trainer.run``, peak resident memory above
the process after ``import torch``) the estimate was 0.9-1.3x the measured peak for grids of
64² to 256² with 1 to 8 layers, batches 8 to 64 and test batches up to 256 (either the
training step or the evaluation dominating; phase, Gumbel, joint-complex and binary
quantizers).

:func:`check_memory` compares it with what the machine has — the config key
``train.max_memory``, else the environment variable ``OPTODESIGN_MAX_MEMORY`` (both take
``"16 GiB"``, ``"500 MB"`` or a number of bytes), else the host's physical memory
(``MemTotal``, capped by a cgroup memory limit), raised to the largest CUDA device's memory
when torch is already imported and sees one — and refuses a config that cannot fit. It
compares with *total*, not *available*, memory on purpose: on a shared machine
``MemAvailable`` swings with other jobs (it read 56 MB of 24 GB while the test suite ran
here), and a config must not be valid one minute and refused the next. Needing more than is
available at the moment only logs a warning. The trainer can call :func:`check_memory`
again with the chosen device's free memory.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..grid import padded_shape

if TYPE_CHECKING:
    from .config import Config

__all__ = ["estimate_peak_memory", "machine_memory", "available_memory", "memory_limit",
           "check_memory", "parse_bytes", "format_bytes", "ENV_MAX_MEMORY"]

log = logging.getLogger(__name__)

ENV_MAX_MEMORY = "OPTODESIGN_MAX_MEMORY"
#: training images per dataset (the test split is counted separately)
DATASET_SIZES = {"digits": (1348, 449, 8), "mnist": (60000, 10000, 28),
                 "fashion": (60000, 10000, 28)}
#: test batch of Evaluator.evaluate
EVAL_BATCH = 256
_COMPLEX64 = 8
#: bytes on top of the arrays: autograd bookkeeping, matplotlib plots, small tensors
OVERHEAD = 100 * 2**20
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: object, *, field: str) -> int:
    """``"16 GiB"``, ``"500 MB"``, ``"2e9"`` or an integer number of bytes; must be > 0."""
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a size such as '16 GiB', got {value!r}")
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9.]+(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*", value)
        if m and m.group(2).lower() in _UNITS | {"": 1}:
            try:
                number = float(m.group(1))
            except ValueError:
                number = -1.0
            if math.isfinite(number) and number > 0:
                return int(number * _UNITS.get(m.group(2).lower(), 1))
    raise ConfigError(f"{field}: expected a size > 0 such as '16 GiB', '500 MB' or a number of "
                      f"bytes, got {value!r}")


def format_bytes(n: float) -> str:
    """``format_bytes(3 * 2**30) == '3.0 GiB'``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _peak(*, size: int, pad: float, layers: int, propagations: int, distinct: int,
          batch: int, eval_batch: int, levels: int, dataset_bytes: int) -> int:
    """The arithmetic of :func:`estimate_peak_memory` on plain numbers (Python ints)."""
    ny, nx = padded_shape((size, size), pad)
    p, n2 = ny * nx, size * size
    train = _COMPLEX64 * p * batch * (propagations + 3)
    evaluate = _COMPLEX64 * eval_batch * (3 * p + 2 * n2)
    params = layers * n2 * (16 + 16 + 12 * max(levels, 2))
    cache = _COMPLEX64 * p * distinct + 64 * p
    return max(train, evaluate) + params + cache + dataset_bytes + OVERHEAD


def estimate_peak_memory(cfg: Config) -> int:
    """Bytes a training run of ``cfg`` needs at its peak (see the module docstring).

    Within a factor of about 1.5 of what was measured on CPU; torch's own footprint (the
    few hundred MB of ``import torch``) is not counted.
    """
    from ..tasks import get_task

    o, t, d = cfg.optics, cfg.train, cfg.data
    if get_task(cfg.task).supervised:  # a batch of image fields per step, datasets in memory
        n_train, n_test, side = DATASET_SIZES.get(d.dataset, (60000, 10000, 28))
        if d.train_samples:
            n_train = min(n_train, d.train_samples)
        if d.test_samples:
            n_test = min(n_test, d.test_samples)
        batch, eval_batch = min(t.batch_size, n_train), min(EVAL_BATCH, n_test)
        full_train, full_test, _ = DATASET_SIZES.get(d.dataset, (60000, 10000, 28))
        dataset_bytes = (full_train + full_test) * side * side * 5  # float32 + uint8
    else:
        batch = eval_batch = 1
        dataset_bytes = 0
    levels = cfg.quantization.levels
    # the fields (and, over-counted, the parameters) are sampled oversample times finer
    return _peak(size=o.size * o.oversample, pad=o.pad, layers=o.layers,
                 propagations=sum(1 for z in o.distances if z != 0),
                 distinct=len({z for z in o.distances if z != 0}), batch=batch,
                 eval_batch=eval_batch, levels=levels, dataset_bytes=dataset_bytes)


def lower_bound(*, size: int, pad: float, layers: int) -> int:
    """What even a batch of one needs: for refusing ``layers = 10**9`` before building lists."""
    return _peak(size=size, pad=pad, layers=layers, propagations=layers, distinct=1, batch=1,
                 eval_batch=1, levels=2, dataset_bytes=0)


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf(name: str) -> int | None:
    try:
        return int(os.sysconf(name)) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            return int(text)
    return None


def machine_memory() -> int | None:
    """Physical memory of the host (``MemTotal``), capped by a cgroup limit; None if unknown."""
    total = _meminfo("MemTotal") or _sysconf("SC_PHYS_PAGES")
    cap = _cgroup_limit()
    if total is None:
        return cap
    return total if cap is None else min(total, cap)


def available_memory() -> int | None:
    """Host memory available right now (``MemAvailable``); None if unknown."""
    return _meminfo("MemAvailable") or _sysconf("SC_AVPHYS_PAGES")


def _cuda_memory() -> int:
    """Largest CUDA device's total memory when torch is already imported (never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    try:
        if not torch.cuda.is_available():
            return 0
        return max(torch.cuda.get_device_properties(i).total_memory
                   for i in range(torch.cuda.device_count()))
    except Exception:  # a broken driver must not break config validation
        return 0


def memory_limit(max_memory: int | None = None) -> tuple[int | None, str]:
    """(bytes, where they come from): the config's ``train.max_memory``, else
    ``$OPTODESIGN_MAX_MEMORY``, else this machine's memory (or its largest CUDA device's)."""
    if max_memory is not None:
        return max_memory, "train.max_memory"
    env = os.environ.get(ENV_MAX_MEMORY, "").strip()
    if env:
        return parse_bytes(env, field=ENV_MAX_MEMORY), ENV_MAX_MEMORY
    host = machine_memory()
    cuda = _cuda_memory()
    if cuda and (host is None or cuda > host):
        return cuda, "the largest CUDA device"
    return host, "this machine"


def _refuse(need: int, limit: int, source: str, what: str) -> None:
    raise ConfigError(
        f"memory: training this config needs about {format_bytes(need)} at its peak ({what}), "
        f"more than the {format_bytes(limit)} of {source}; reduce optics.size, optics.layers "
        f"or train.batch_size, or raise train.max_memory / ${ENV_MAX_MEMORY} if you know better"
    )


def check_memory(cfg: Config, *, available: int | None = None, where: str = "") -> int:
    """Refuse (one-line :class:`ConfigError`) a config whose estimated peak exceeds the limit.

    Args:
        cfg: the validated config.
        available: bytes the chosen device offers (e.g. ``torch.cuda.mem_get_info()[0]``);
            default :func:`memory_limit`. The config key and the environment variable still
            take precedence.
        where: names the device in the message when ``available`` is given.

    Returns:
        The estimate in bytes.
    """
    need = estimate_peak_memory(cfg)
    limit, source = memory_limit(cfg.train.max_memory)
    if available is not None and source not in ("train.max_memory", ENV_MAX_MEMORY):
        limit, source = available, where or "the device (free)"
    if limit is not None and need > limit:
        o = cfg.optics
        ny, nx = o.grid.padded().shape
        _refuse(need, limit, source, f"{o.layers} layers of {o.size}² px padded to {ny}x{nx}, "
                                     f"batch {cfg.train.batch_size}")
    now = available_memory()
    if available is None and source == "this machine" and now is not None and need > now:
        log.warning("training this config needs about %s at its peak; %s is available now",
                    format_bytes(need), format_bytes(now))
    return need


def check_lower_bound(*, size: int, pad: float, layers: int,
                      max_memory: int | None = None) -> None:
    """:func:`check_memory` for a batch of one, before the config is fully built."""
    need = lower_bound(size=size, pad=pad, layers=layers)
    limit, source = memory_limit(max_memory)
    if limit is not None and need > limit:
        _refuse(need, limit, source, f"{layers} layers of {size}² px, even at batch 1")

"""Phase level tables and wrap-aware nearest-level assignment.

A phase table is a sorted 1-D array of ``L >= 2`` distinct phases in ``[0, 2π)`` radians. It
may be uniform (``2πk/L``, :func:`uniform_levels`) or come from a fabrication process
(:func:`explicit_levels`). Phases live on a circle, so level ``L-1`` and level ``0`` are
neighbours: the gap after the top level is ``φ_0 + 2π − φ_{L-1}`` and a phase just under
``2π`` snaps to level 0 when ``φ_0 = 0``.

Conventions used by every phase quantizer:

* gaps ``g_i = φ_{i+1} − φ_i`` for ``i = 0..L-1`` with ``φ_L = φ_0 + 2π``;
* decision boundaries at the circular midpoints ``m_i = φ_i + g_i / 2``;
* a phase ``x`` is first unwrapped into ``u = φ_0 + ((x − φ_0) mod 2π) ∈ [φ_0, φ_0 + 2π)``;
  its level is ``i`` for ``m_{i-1} <= u < m_i`` (``m_{-1} = −∞``) and ``0`` for
  ``u >= m_{L-1}``. Ties go to the upper level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "TWO_PI",
    "uniform_levels",
    "explicit_levels",
    "level_gaps",
    "level_midpoints",
    "circular_distance",
    "unwrap_from",
    "nearest_level",
    "nearest_level_np",
]

TWO_PI = 2.0 * math.pi
#: Smallest circular gap (radians) accepted between two levels of a table.
MIN_GAP = 1e-6


def uniform_levels(n_levels: int) -> np.ndarray:
    """Uniform phase table ``2πk/L``, ``k = 0..L-1``.

    Args:
        n_levels: number of levels ``L >= 2``.

    Returns:
        float64 ``(L,)`` phases in ``[0, 2π)`` radians.
    """
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 2:
        raise ConfigError(f"n_levels: must be an integer >= 2, got {n_levels!r}")
    return TWO_PI * np.arange(int(n_levels), dtype=np.float64) / int(n_levels)


def explicit_levels(phases: Sequence[float] | np.ndarray, *, name: str = "phases") -> np.ndarray:
    """Validate a (possibly non-uniform) phase table.

    Args:
        phases: ``(L,)`` phases in radians: sorted ascending, distinct (circular gap
            > 1e-6 rad, the wrap gap included), each in ``[0, 2π)``, ``L >= 2``.
        name: field name used in error messages (e.g. ``"process.levels.phase"``).

    Returns:
        float64 ``(L,)`` copy of the table.

    Raises:
        ConfigError: naming ``name`` and what is wrong.
    """
    try:
        arr = np.array(phases, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected a list of phases in radians ({exc})") from None
    if arr.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D list of phases, got shape {arr.shape}")
    if arr.size < 2:
        raise ConfigError(f"{name}: need at least 2 levels, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name}: phases must be finite numbers (radians)")
    if arr.min() < 0 or arr.max() >= TWO_PI:
        raise ConfigError(
            f"{name}: phases must lie in [0, 2π) radians, got {arr.min():.6g}..{arr.max():.6g}"
        )
    gaps = level_gaps(arr)
    if np.any(gaps[:-1] <= 0):
        raise ConfigError(
            f"{name}: phases must be sorted ascending and distinct, got {arr.tolist()}"
        )
    if gaps.min() <= MIN_GAP:
        raise ConfigError(
            f"{name}: two levels are closer than {MIN_GAP} rad on the circle "
            "(a level near 2π duplicates level 0)"
        )
    return arr


def level_gaps(phases: np.ndarray) -> np.ndarray:
    """Circular gaps ``g_i = φ_{i+1} − φ_i`` (last one wraps: ``φ_0 + 2π − φ_{L-1}``), ``(L,)``."""
    phases = np.asarray(phases, dtype=np.float64)
    return np.diff(np.append(phases, phases[0] + TWO_PI))


def level_midpoints(phases: np.ndarray) -> np.ndarray:
    """Decision boundaries ``m_i = φ_i + g_i/2``, ``(L,)``; ``m_{L-1}`` may exceed ``2π``."""
    phases = np.asarray(phases, dtype=np.float64)
    return phases + level_gaps(phases) / 2


def circular_distance(x: Tensor, y: Tensor | float) -> Tensor:
    """Distance on the circle ``|x − y|`` wrapped to ``[0, π]``, radians (differentiable)."""
    return torch.abs(torch.remainder(x - y + math.pi, TWO_PI) - math.pi)


def unwrap_from(x: Tensor, origin: float | Tensor) -> Tensor:
    """``origin + ((x − origin) mod 2π)``: ``x`` moved into ``[origin, origin + 2π)``."""
    return origin + torch.remainder(x - origin, TWO_PI)


def nearest_level(x: Tensor, phases: Tensor) -> Tensor:
    """Wrap-aware nearest level of each phase (torch).

    Args:
        x: real ``(...)`` phases in radians, any range.
        phases: ``(L,)`` validated table (see :func:`explicit_levels`).

    Returns:
        int64 ``(...)`` level index in ``0..L-1``.
    """
    ph = phases.detach().to(device=x.device, dtype=torch.float64)
    mids = ph + torch.diff(torch.cat([ph, ph[:1] + TWO_PI])) / 2
    u = unwrap_from(x.detach().to(torch.float64), ph[0])  # a tensor: no read-back from a GPU
    idx = torch.searchsorted(mids, u.contiguous(), right=True)
    return torch.remainder(idx, ph.shape[0])


def nearest_level_np(x: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`nearest_level` (for export/verify code without torch tensors)."""
    ph = np.asarray(phases, dtype=np.float64)
    u = ph[0] + np.mod(np.asarray(x, dtype=np.float64) - ph[0], TWO_PI)
    return np.searchsorted(level_midpoints(ph), u, side="right") % ph.shape[0]

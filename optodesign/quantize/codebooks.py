"""Codebooks of complex transmissions for joint complex quantization.

A codebook is the set of complex transmissions ``t_k`` (``|t_k| <= 1``, passive) that a
fabrication process can make: the phase levels of an etched element, or the transmission of
each meta-atom (pillar size) of a metasurface library, which covers the complex plane
unevenly. Joint quantization maps a learned complex weight to the nearest codeword in the
complex plane (Geng et al., "Ultra-efficient physical field computing by complex-valued network
quantization", Nat. Commun. 2026).

Every builder returns a 1-D complex128 numpy array ``(L,)`` and raises
:class:`~optodesign.errors.ConfigError` naming the offending field. :class:`LearnedCodebook`
is the one torch module here: ``K`` learnable codewords kept inside the unit disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = [
    "polar_codebook",
    "square_codebook",
    "phase_codebook",
    "table_codebook",
    "validate_meta_atom_table",
    "min_spacing",
    "LearnedCodebook",
    "SquareMode",
    "Squash",
]

#: Tolerance on passivity ``|t| <= 1``: tables measured or simulated to double precision.
PASSIVE_TOL = 1e-9
#: Two codewords closer than this (in |t|) are the same codeword.
DUPLICATE_TOL = 1e-9

SquareMode = Literal["clip", "inside"]
Squash = Literal["clip", "tanh"]


def _positive_int(value: object, field: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{field}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def polar_codebook(
    n_amplitudes: int, n_phases: int, *, min_amplitude: float | None = None
) -> np.ndarray:
    """Amplitude levels x phase levels: ``t = A_a * exp(2πi p / n_phases)``.

    Amplitudes are ``linspace(min_amplitude, 1, n_amplitudes)`` (just ``[1.0]`` when
    ``n_amplitudes == 1``); phases are the uniform phase levels ``2πp/n_phases``, p = 0..P−1.
    Order is amplitude-major: index ``a * n_phases + p``. With ``min_amplitude == 0`` the zero
    ring collapses to a single codeword ``0`` (index 0), so the table has
    ``(n_amplitudes − 1) * n_phases + 1`` entries.

    Args:
        n_amplitudes: number of amplitude levels, >= 1.
        n_phases: number of phase levels, >= 1 (>= 2 when ``n_amplitudes == 1``).
        min_amplitude: smallest amplitude in [0, 1); default ``1 / n_amplitudes`` (amplitudes
            ``k / n_amplitudes``, k = 1..n_amplitudes, evenly spaced and never zero).

    Returns:
        complex128 ``(L,)``, ``|t| <= 1``.
    """
    n_a = _positive_int(n_amplitudes, "n_amplitudes")
    n_p = _positive_int(n_phases, "n_phases")
    if min_amplitude is None:
        min_amplitude = 1.0 / n_a
    a_min = float(min_amplitude)
    if not (math.isfinite(a_min) and 0.0 <= a_min < 1.0) and n_a > 1:
        raise ConfigError(f"min_amplitude: must lie in [0, 1), got {min_amplitude!r}")
    amps = np.linspace(a_min, 1.0, n_a) if n_a > 1 else np.array([1.0])
    phases = 2 * np.pi * np.arange(n_p) / n_p
    table = (amps[:, None] * np.exp(1j * phases)[None, :]).reshape(-1)
    if n_a > 1 and a_min == 0.0:
        table = np.concatenate(([0.0 + 0.0j], table[n_p:]))
    if table.shape[0] < 2:
        raise ConfigError(
            f"n_phases: a polar codebook needs at least 2 codewords, got {n_a} amplitude(s) x "
            f"{n_p} phase(s)"
        )
    return table.astype(np.complex128)


def square_codebook(n_per_axis: int, *, mode: SquareMode = "clip") -> np.ndarray:
    """A Re/Im lattice: ``n_per_axis`` uniform values in [−1, 1] on each axis.

    The lattice square [−1, 1]² sticks out of the unit disk, and a passive element cannot
    have ``|t| > 1``. Two ways to make it passive:

    * ``"clip"`` (default): lattice points outside the disk are moved radially onto the unit
      circle; points that land on the same spot are kept once. Up to ``n_per_axis²`` codewords.
    * ``"inside"``: lattice points outside the disk are dropped (the rest keep the uniform
      lattice spacing). ``n_per_axis == 2`` leaves nothing and is refused.

    Order: Re-major (``index = i_re * n_per_axis + i_im`` before any removal), stable.

    Args:
        n_per_axis: lattice values per axis, >= 2.
        mode: ``"clip"`` or ``"inside"``.

    Returns:
        complex128 ``(L,)``, ``|t| <= 1``.
    """
    n = _positive_int(n_per_axis, "n_per_axis", minimum=2)
    if mode not in ("clip", "inside"):
        raise ConfigError(f"mode: unknown square-codebook mode {mode!r} (allowed: clip, inside)")
    axis = np.linspace(-1.0, 1.0, n)
    lattice = (axis[:, None] + 1j * axis[None, :]).reshape(-1)
    r = np.abs(lattice)
    outside = r > 1.0 + PASSIVE_TOL
    if mode == "inside":
        table = lattice[~outside]
    else:
        table = np.where(outside, lattice / np.maximum(r, 1.0), lattice)
        table = _dedupe(table)
    if table.shape[0] < 2:
        raise ConfigError(
            f"n_per_axis: a {n}x{n} lattice keeps {table.shape[0]} point(s) inside the unit "
            "disk with mode='inside' (need >= 2; use more points or mode='clip')"
        )
    return table.astype(np.complex128)


def phase_codebook(n_levels: int) -> np.ndarray:
    """``n_levels`` phases at unit amplitude: ``exp(2πik / L)``, k = 0..L−1.

    These are exactly the uniform levels of the phase quantizers (level k = phase 2πk/L), so a
    joint quantizer on this codebook reproduces wrap-aware nearest-phase rounding for inputs
    of unit amplitude.

    Args:
        n_levels: number of phase levels L, >= 2.

    Returns:
        complex128 ``(L,)``.
    """
    n = _positive_int(n_levels, "n_levels", minimum=2)
    return np.exp(2j * np.pi * np.arange(n) / n).astype(np.complex128)


def table_codebook(t: ArrayLike | Tensor, *, field: str = "codebook") -> np.ndarray:
    """Validate a table of complex transmissions (e.g. a meta-atom library) as a codebook.

    Args:
        t: complex ``(L,)``: finite, ``|t| <= 1 + 1e-9``, at least 2 entries, no two within
            1e-9 of each other.
        field: name used in error messages.

    Returns:
        complex128 ``(L,)`` copy.
    """
    if isinstance(t, Tensor):
        t = t.detach().cpu().numpy()
    try:
        arr = np.asarray(t, dtype=np.complex128)
    except (TypeError, ValueError):
        raise ConfigError(f"{field}: must be an array of complex transmissions") from None
    if arr.ndim != 1:
        raise ConfigError(f"{field}: must be 1-D (one transmission per level), got shape "
                          f"{arr.shape}")
    if arr.shape[0] < 2:
        raise ConfigError(f"{field}: need at least 2 codewords, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ConfigError(f"{field}: entry {bad} is not finite ({arr[bad]!r})")
    mag = np.abs(arr)
    if np.any(mag > 1.0 + PASSIVE_TOL):
        bad = int(np.argmax(mag))
        raise ConfigError(
            f"{field}: entry {bad} has |t| = {mag[bad]:.6g} > 1 (a passive element transmits "
            "at most all the light)"
        )
    d = np.abs(arr[:, None] - arr[None, :])
    np.fill_diagonal(d, np.inf)
    if np.any(d < DUPLICATE_TOL):
        i, j = (int(v) for v in np.unravel_index(np.argmin(d), d.shape))
        i, j = min(i, j), max(i, j)
        raise ConfigError(
            f"{field}: entries {i} and {j} are the same codeword ({arr[i]:.6g}); remove "
            "duplicates"
        )
    return arr.copy()


def validate_meta_atom_table(
    sizes: ArrayLike | Sequence[float], transmissions: ArrayLike | Sequence[complex]
) -> tuple[np.ndarray, np.ndarray]:
    """Check a meta-atom library: pillar size → complex transmission.

    Two atoms may transmit nearly alike (the library is what it is); use
    :func:`table_codebook` to check that a table is usable as a codebook.

    Args:
        sizes: ``(L,)`` pillar sizes in metres: finite, > 0, unique.
        transmissions: complex ``(L,)``: finite, ``|t| <= 1 + 1e-9``.

    Returns:
        ``(sizes float64 (L,), transmissions complex128 (L,))`` copies, in the given order.
    """
    try:
        s = np.asarray(sizes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("sizes: must be a list of pillar sizes in metres") from None
    try:
        t = np.asarray(transmissions, dtype=np.complex128)
    except (TypeError, ValueError):
        raise ConfigError("transmissions: must be a list of complex transmissions") from None
    if s.ndim != 1 or t.ndim != 1:
        raise ConfigError(f"sizes, transmissions: must be 1-D, got shapes {s.shape}, {t.shape}")
    if s.shape != t.shape:
        raise ConfigError(
            f"transmissions: {t.shape[0]} transmissions for {s.shape[0]} sizes (need one each)"
        )
    if s.shape[0] < 2:
        raise ConfigError(f"sizes: a meta-atom table needs at least 2 atoms, got {s.shape[0]}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        bad = int(np.flatnonzero(~(np.isfinite(s) & (s > 0)))[0])
        raise ConfigError(f"sizes: entry {bad} must be a finite length > 0 metres, got {s[bad]!r}")
    uniq, counts = np.unique(s, return_counts=True)
    if np.any(counts > 1):
        dup = float(uniq[np.argmax(counts > 1)])
        idx = [int(i) for i in np.flatnonzero(s == dup)]
        raise ConfigError(f"sizes: size {dup!r} m appears more than once (entries {idx})")
    if not np.all(np.isfinite(t)):
        bad = int(np.flatnonzero(~np.isfinite(t))[0])
        raise ConfigError(f"transmissions: entry {bad} is not finite ({t[bad]!r})")
    mag = np.abs(t)
    if np.any(mag > 1.0 + PASSIVE_TOL):
        bad = int(np.argmax(mag))
        raise ConfigError(
            f"transmissions: entry {bad} (size {s[bad]!r} m) has |t| = {mag[bad]:.6g} > 1"
        )
    return s.copy(), t.copy()


def min_spacing(codebook: ArrayLike | Tensor) -> float:
    """Smallest distance ``|c_i − c_j|`` (i ≠ j) between two codewords, in |t| units."""
    if isinstance(codebook, Tensor):
        codebook = codebook.detach().cpu().numpy()
    c = np.asarray(codebook, dtype=np.complex128).reshape(-1)
    if c.shape[0] < 2:
        raise ConfigError(f"codebook: need at least 2 codewords, got {c.shape[0]}")
    d = np.abs(c[:, None] - c[None, :])
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def _dedupe(table: np.ndarray) -> np.ndarray:
    keep: list[int] = []
    for i, v in enumerate(table):
        if all(abs(v - table[j]) >= DUPLICATE_TOL for j in keep):
            keep.append(i)
    return table[keep]


def _unit_disk(points: Tensor, squash: Squash) -> Tensor:
    """Real ``(..., 2)`` points → complex, radially squashed into ``|t| <= 1``."""
    r2 = points[..., 0] ** 2 + points[..., 1] ** 2
    if squash == "clip":
        # r / max(1, r): identity inside the disk, exact for |t| = 1 codewords.
        scale = torch.rsqrt(torch.clamp(r2, min=1.0))
    else:
        # tanh(r) / r, with its limit 1 at r = 0 (no 0/0 in value or gradient).
        small = r2 < 1e-12
        r = torch.sqrt(torch.where(small, torch.ones_like(r2), r2))
        scale = torch.where(small, 1.0 - r2 / 3.0, torch.tanh(r) / r)
    return torch.complex(points[..., 0] * scale, points[..., 1] * scale)


class LearnedCodebook(nn.Module):
    """``K`` learnable codewords, always inside the unit disk ``|t| <= 1``.

    The parameter ``points`` ``(K, 2)`` holds unconstrained (Re, Im); the codewords are its
    radial squash:

    * ``"clip"`` (default): ``p / max(1, |p|)``. Identity inside the disk, so a codebook
      initialised from unit-amplitude codewords is reproduced exactly; a point pushed outside
      stays on the circle (only its tangential gradient survives).
    * ``"tanh"``: ``p * tanh(|p|) / |p|``. Smooth everywhere, but ``|t| = 1`` is only reached
      in the limit; initial codewords with ``|t| > 1 − 1e-6`` are pulled in to ``1 − 1e-6``.

    Calling the module returns the complex codebook ``(K,)`` (complex64 for float32 points).

    Args:
        init: initial codebook, complex ``(K,)`` (validated by :func:`table_codebook`).
        squash: ``"clip"`` or ``"tanh"``.
        dtype: real dtype of ``points``.
    """

    def __init__(
        self, init: ArrayLike | Tensor, *, squash: Squash = "clip",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if squash not in ("clip", "tanh"):
            raise ConfigError(f"squash: unknown codebook squash {squash!r} (allowed: clip, tanh)")
        c = table_codebook(init)
        if squash == "tanh":
            r = np.abs(c)
            r_in = np.minimum(r, 1.0 - 1e-6)
            with np.errstate(divide="ignore", invalid="ignore"):
                gain = np.where(r > 0, np.arctanh(r_in) / np.where(r > 0, r, 1.0), 1.0)
            c = c * gain
        self.squash: Squash = squash
        pts = np.stack((c.real, c.imag), axis=-1)
        self.points = nn.Parameter(torch.tensor(pts, dtype=dtype))

    def forward(self) -> Tensor:
        """The current codebook, complex ``(K,)``, ``|t| <= 1``."""
        return _unit_disk(self.points, self.squash)

    def extra_repr(self) -> str:
        return f"K={self.points.shape[0]}, squash={self.squash!r}"

"""The sampling grid: an immutable description of how a field is sampled.

A field is an ``(..., ny, nx)`` complex tensor; the grid travels beside it, never inside it:
``propagate(field, z, grid=grid, wavelength=λ)``, ``forward_stack(..., grid=grid, ...)``.
It holds the shape, the pitch and ``pad``, the zero padding a propagation uses, so the three
travel together: a :class:`~optodesign.design.Design` gives its ``design.grid``, a training
config its ``cfg.optics.grid``. Axis order is ``(y, x)``. Coordinates are pixel centres in
metres; spatial frequencies follow ``numpy.fft.fftfreq`` order, in cycles per metre.

Centre convention (one for the whole package): the optical axis passes through the **centre of
pixel** ``(ny // 2, nx // 2)``, so ``x = (j − nx // 2) · pitch`` and ``y = (i − ny // 2) · pitch``.
On an odd grid that is the middle pixel; on an even grid the pixel just past the middle (the
``n // 2`` of a lens focus or of ``numpy.fft.fftshift``). The GDS origin, the STL part, the
lens focus and the rotation centre of fabrication errors all follow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UserError

__all__ = ["Grid", "GridMismatchError", "METHODS", "check_method"]

#: propagation methods a grid may name (:attr:`Grid.method`)
METHODS = ("asm", "rs")


class GridMismatchError(ValueError):
    """Two fields or a field and a grid do not describe the same sampling."""


@dataclass(frozen=True)
class Grid:
    """Square-pixel sampling of a plane, and how it is zero-padded for propagation.

    Attributes:
        shape: ``(ny, nx)`` number of samples.
        pitch: sample spacing in metres (square pixels).
        pad: zero-padding factor per axis used by :func:`optodesign.propagate` (>= 1; 1 means
            no padding, 2 doubles the window against circular wrap-around).
        method: how :func:`optodesign.propagate` computes a propagation on this grid:
            ``"asm"``, the band-limited angular spectrum (any geometry; converges as the
            padding grows), or ``"rs"``, the Rayleigh–Sommerfeld convolution (exact at pad 2
            where its kernel is sampled: :mod:`optodesign.optics.rayleigh`).

    Raises:
        UserError: a shape, pitch or pad out of range (one line naming the field).
    """

    shape: tuple[int, int]
    pitch: float
    pad: float = 2.0
    method: str = "asm"

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 2 or min(shape) < 1:
            raise UserError(f"shape: expected (ny, nx) with positive sizes, got {self.shape!r}")
        if not (_is_real(self.pitch) and math.isfinite(self.pitch) and self.pitch > 0):
            raise UserError(f"pitch: must be a finite length > 0 in metres, got {self.pitch!r}")
        if not (_is_real(self.pad) and math.isfinite(self.pad) and self.pad >= 1):
            raise UserError(f"pad: must be a finite number >= 1 (1 means no padding), got "
                            f"{self.pad!r}")
        check_method(self.method)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "pitch", float(self.pitch))
        object.__setattr__(self, "pad", float(self.pad))

    @property
    def ny(self) -> int:
        return self.shape[0]

    @property
    def nx(self) -> int:
        return self.shape[1]

    @property
    def extent(self) -> tuple[float, float]:
        """Physical size ``(height, width)`` of the window in metres."""
        return self.ny * self.pitch, self.nx * self.pitch

    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates, shape ``(nx,)``, metres; 0 at column ``nx // 2``."""
        return (np.arange(self.nx) - self.nx // 2) * self.pitch

    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates, shape ``(ny,)``, metres; 0 at row ``ny // 2``."""
        return (np.arange(self.ny) - self.ny // 2) * self.pitch

    def meshgrid(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Y, X)`` coordinate arrays of shape ``(ny, nx)`` in metres."""
        return np.meshgrid(self.y(), self.x(), indexing="ij")

    def fx(self) -> np.ndarray:
        """Spatial frequencies along x, shape ``(nx,)``, cycles/m, FFT order."""
        return np.fft.fftfreq(self.nx, d=self.pitch)

    def fy(self) -> np.ndarray:
        """Spatial frequencies along y, shape ``(ny,)``, cycles/m, FFT order."""
        return np.fft.fftfreq(self.ny, d=self.pitch)

    def padded(self) -> Grid:
        """The zero-padded window that propagation runs on: shape
        :func:`padded_shape` ``(shape, pad)``, same pitch, no further padding (``pad = 1``)."""
        return Grid(padded_shape(self.shape, self.pad), self.pitch, pad=1.0)

    def check_same(self, other: Grid, *, what: str = "grids") -> None:
        """Raise :class:`GridMismatchError` naming both geometries when their sampling (shape,
        pitch) differs; ``pad`` is how a propagation pads, not how a field is sampled."""
        if self.shape != other.shape or not math.isclose(self.pitch, other.pitch, rel_tol=1e-9):
            raise GridMismatchError(
                f"{what} differ: {self.shape} at pitch {self.pitch:.6g} m vs "
                f"{other.shape} at pitch {other.pitch:.6g} m"
            )

    def check_field(self, shape: tuple[int, ...], *, what: str = "field") -> None:
        """Raise :class:`GridMismatchError` naming both shapes when the last two axes of a
        field of ``shape`` are not this grid's ``(ny, nx)``."""
        got = tuple(int(s) for s in shape[-2:])
        if got != self.shape:
            raise GridMismatchError(
                f"{what}: its (ny, nx) = {got} (shape {tuple(int(s) for s in shape)}) does "
                f"not match the grid's {self.shape} at pitch {self.pitch:.6g} m"
            )


def check_method(value: object, *, field: str = "method",
                 error: type[UserError] = UserError) -> None:
    """Raise ``error`` naming ``field`` unless ``value`` is one of :data:`METHODS`."""
    if value not in METHODS:
        raise error(f"{field}: must be one of {', '.join(METHODS)}, got {value!r}")


def _is_real(v: object) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def padded_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """Shape of a window zero-padded by ``factor`` (>= 1) per axis, rounded up to an even size."""
    if factor < 1:
        raise ValueError(f"pad: must be >= 1 (1 means no padding), got {factor!r}")
    out = []
    for n in shape:
        m = int(math.ceil(n * factor))
        if m > n and m % 2:
            m += 1
        out.append(m)
    return out[0], out[1]

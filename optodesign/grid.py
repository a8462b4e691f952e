"""The sampling grid: an immutable description of how a field is sampled.

A field is an ``(..., ny, nx)`` complex tensor; the grid travels beside it, never inside it.
Axis order is ``(y, x)``. Coordinates are pixel centres in metres; spatial frequencies follow
``numpy.fft.fftfreq`` order, in cycles per metre.

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

__all__ = ["Grid", "GridMismatchError"]


class GridMismatchError(ValueError):
    """Two fields or a field and a grid do not describe the same sampling."""


@dataclass(frozen=True)
class Grid:
    """Square-pixel sampling of a plane.

    Attributes:
        shape: ``(ny, nx)`` number of samples.
        pitch: sample spacing in metres (square pixels).
    """

    shape: tuple[int, int]
    pitch: float

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape: expected (ny, nx) with positive sizes, got {self.shape!r}")
        if not (math.isfinite(self.pitch) and self.pitch > 0):
            raise ValueError(f"pitch: must be a finite length > 0 in metres, got {self.pitch!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "pitch", float(self.pitch))

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

    def padded(self, factor: float) -> Grid:
        """The grid of the zero-padded window used for propagation (same pitch)."""
        return Grid(padded_shape(self.shape, factor), self.pitch)

    def check_same(self, other: Grid, *, what: str = "grids") -> None:
        """Raise :class:`GridMismatchError` naming both geometries when they differ."""
        if self.shape != other.shape or not math.isclose(self.pitch, other.pitch, rel_tol=1e-9):
            raise GridMismatchError(
                f"{what} differ: {self.shape} at pitch {self.pitch:.6g} m vs "
                f"{other.shape} at pitch {other.pitch:.6g} m"
            )


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

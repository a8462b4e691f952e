"""Structural zeros: pixels of a multi-layer stack that cannot influence any detector.

Geometry (pixel units, pixel centres at integer indices ``(iy, ix)``). A mask of pitch ``p``
diffracts light at most to the half-angle ``θ`` with

    sin θ = min(1, λ / (2 p))

(the highest spatial frequency a pitch-``p`` grid carries, ``1/(2p)``). With ``distances``
``d_0..d_K`` (input→layer 1, layer i→i+1, ..., layer K→output), layer ``k`` (0-based) sits at
``z_k = Σ_{j<=k} d_j`` behind the input plane and ``Z − z_k`` before the output plane,
``Z = Σ_j d_j``. Then pixel ``(iy, ix)`` of layer ``k`` is

* reachable from the input when its centre lies within ``r_f = z_k tan θ / p`` pixels of the
  input box (forward cone), and
* seen by a detector when its centre lies within ``r_b = (Z − z_k) tan θ / p`` pixels of some
  detector box (backward cone),

where a box ``[y0, x0, h, w]`` covers the area ``[y0 − ½, y0 + h − ½] × [x0 − ½, x0 + w − ½]``
and the distance from a centre to it is ``√(gy² + gx²)``,
``gy = max(0, iy − (y0 + h − ½), (y0 − ½) − iy)`` (same for x). A pixel is free only if it is
in both cones; every other pixel is fixed (True). At distance 0 a cone is the box itself; with
``sin θ = 1`` it is unbounded for any distance > 0.

This is a geometric (ray-cone) bound at the grid's highest spatial frequency, so the free
region of a cone of radius ``r`` reaches ``r + ½`` pixel centres beyond the box edge pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["structural_mask", "diffraction_half_angle"]

Box = Sequence[int]


def diffraction_half_angle(pitch: float, wavelength: float) -> float:
    """Largest diffraction half-angle θ (radians) of a grid: ``sin θ = min(1, λ/(2·pitch))``."""
    return math.asin(min(1.0, wavelength / (2.0 * pitch)))


def _box_gap2(shape: tuple[int, int], box: Box) -> np.ndarray:
    """Squared distance (pixels²) from each pixel centre to a box's area, ``(ny, nx)``."""
    y0, x0, h, w = (int(v) for v in box)
    iy = np.arange(shape[0], dtype=np.float64)[:, None]
    ix = np.arange(shape[1], dtype=np.float64)[None, :]
    gy = np.maximum(0.0, np.maximum(iy - (y0 + h - 0.5), (y0 - 0.5) - iy))
    gx = np.maximum(0.0, np.maximum(ix - (x0 + w - 0.5), (x0 - 0.5) - ix))
    return gy * gy + gx * gx


def _check_box(name: str, box: Box) -> tuple[int, int, int, int]:
    try:
        y0, x0, h, w = (int(v) for v in box)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a pixel box [y0, x0, h, w], got {box!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"{name}: box height and width must be > 0, got {box!r}")
    return y0, x0, h, w


def structural_mask(*, shape: tuple[int, int], pitch: float, wavelength: float,
                    distances: Sequence[float], detectors: Sequence[Box],
                    input_box: Box | None = None) -> np.ndarray:
    """Pixels fixed because no input light reaches them or none of their light reaches a detector.

    Args:
        shape: ``(ny, nx)`` pixels per layer.
        pitch: pixel pitch, metres.
        wavelength: wavelength, metres.
        distances: ``K + 1`` distances in metres (input→layer 1, ..., layer K→output).
        detectors: pixel boxes ``[y0, x0, h, w]`` on the output plane (at least one).
        input_box: pixel box ``[y0, x0, h, w]`` lit on the input plane; None = whole grid.

    Returns:
        bool ``(K, ny, nx)``, True where the pixel is fixed (see module docstring for the cone
        geometry).

    Raises:
        ConfigError: a value is missing or out of range (names the field).
    """
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"shape: expected (ny, nx), got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise ConfigError(f"shape: sizes must be >= 1, got {shape!r}")
    for name, v in (("pitch", pitch), ("wavelength", wavelength)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{name}: must be a length > 0 in metres, got {v!r}")
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ConfigError(
            f"distances: need K + 1 >= 2 entries (input->layer 1 ... layer K->output), got {d.size}"
        )
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ConfigError(f"distances: must be finite and >= 0 metres, got {d.tolist()}")
    if len(detectors) == 0:
        raise ConfigError("detectors: need at least one pixel box [y0, x0, h, w]")
    boxes = [_check_box(f"detectors[{i}]", b) for i, b in enumerate(detectors)]
    grid = (ny, nx)
    if input_box is None:
        gap_in = np.zeros(grid)
    else:
        gap_in = _box_gap2(grid, _check_box("input_box", input_box))
    gap_det = np.min([_box_gap2(grid, b) for b in boxes], axis=0)

    sin_t = min(1.0, wavelength / (2.0 * pitch))
    tan_t = math.inf if sin_t >= 1.0 else sin_t / math.sqrt(1.0 - sin_t * sin_t)

    def radius2(z: float) -> float:
        if z <= 0:
            return 0.0
        r = z * tan_t / pitch
        return r * r

    total = float(d.sum())
    z = np.cumsum(d)[:-1]  # position of each layer behind the input plane
    # a tiny tolerance so that a pixel exactly on the cone's edge counts as reached
    tol = 1e-9
    masks = [
        ~((gap_in <= radius2(float(zk)) + tol) & (gap_det <= radius2(total - float(zk)) + tol))
        for zk in z
    ]
    return np.stack(masks).astype(bool)

"""Lattice geometry of fabrication errors: moving a layer (shift, rotation) on the pixel grid.

The line-width bias, which acts on the height map before the element physics, is
:func:`optodesign.raster.dilate_heights`.
"""

from __future__ import annotations

import math

import numpy as np

from ..grid import Grid

__all__ = ["place", "place_drawn"]


def place(t: np.ndarray, *, grid: Grid, shifts: np.ndarray | None = None,
          rotations: np.ndarray | None = None,
          axis: tuple[float, float] | None = None) -> np.ndarray:
    """Move each layer's transmission: rotate about the optical axis, then shift; zero-fill.

    The moved element is sampled at the (fixed) pixel centres by bilinear interpolation of
    the complex transmission, which for a translation is the area-weighted mix of the pixels
    a moved pixel overlaps. Outside the moved plate the transmission is 0 (the window is the
    holder's opaque aperture). Integer-pixel shifts (within 1e-9 px) are exact.

    Args:
        t: complex ``(K, ny, nx)`` transmissions.
        grid: their sampling (``grid.shape == (ny, nx)``; the pitch in metres).
        shifts: ``(K, 2)`` ``(dy, dx)`` metres; the structure moves by +dy rows / +dx cols.
        rotations: ``(K,)`` radians, a positive rotation about +z in the right-handed frame
            of ``manifest.json`` ``conventions.frame`` (counter-clockwise with x drawn right
            and y up, as in a GDS viewer; clockwise in the plots, which look from the
            source towards the detector with row 0 at the top), about
            the grid's optical axis, the centre of pixel ``(ny // 2, nx // 2)``.
        axis: ``(row, col)`` of the optical axis in (fractional) sample indices, when the
            grid samples a design more finely than its pixels (verify's drawn layers: the
            centre of the design's pixel ``(ny // 2, nx // 2)`` lies at ``(ny // 2 · s +
            (s − 1) / 2, …)`` on ``s`` samples per pixel); default ``(ny // 2, nx // 2)``.

    Returns:
        complex ``(K, ny, nx)`` (``t`` itself when nothing moves).

    Raises:
        GridMismatchError: ``t`` is not sampled on ``grid``.
    """
    grid.check_field(t.shape, what="transmissions")
    pitch = grid.pitch
    K, ny, nx = t.shape
    sh = np.zeros((K, 2)) if shifts is None else np.asarray(shifts, dtype=np.float64)
    rot = np.zeros(K) if rotations is None else np.asarray(rotations, dtype=np.float64)
    if not sh.any() and not rot.any():
        return t
    out = np.empty_like(t)
    # the optical axis: the centre of pixel (ny // 2, nx // 2), unless told otherwise
    cy, cx = (ny // 2, nx // 2) if axis is None else (float(axis[0]), float(axis[1]))
    for k in range(K):
        sy, sx = sh[k] / pitch
        sy, sx = _snap(sy), _snap(sx)
        if rot[k] == 0:
            if float(sy).is_integer() and float(sx).is_integer():
                out[k] = _shift_int(t[k], int(sy), int(sx))
                continue
            yy = np.arange(ny, dtype=np.float64)[:, None] - sy
            xx = np.arange(nx, dtype=np.float64)[None, :] - sx
            yy, xx = np.broadcast_arrays(yy, xx)
        else:
            c, s = math.cos(rot[k]), math.sin(rot[k])
            y = np.arange(ny, dtype=np.float64)[:, None] - cy - sy
            x = np.arange(nx, dtype=np.float64)[None, :] - cx - sx
            # inverse rotation: where in the unmoved element a fixed pixel centre now looks
            xx = c * x + s * y + cx
            yy = -s * x + c * y + cy
        out[k] = _bilinear(t[k], yy, xx)
    return out


def _snap(v: float) -> float:
    r = round(v)
    return float(r) if abs(v - r) < 1e-9 else float(v)


def _shift_int(a: np.ndarray, sy: int, sx: int) -> np.ndarray:
    out = np.zeros_like(a)
    ny, nx = a.shape
    if abs(sy) >= ny or abs(sx) >= nx:
        return out
    src_y = slice(max(0, -sy), ny - max(0, sy))
    dst_y = slice(max(0, sy), ny - max(0, -sy))
    src_x = slice(max(0, -sx), nx - max(0, sx))
    dst_x = slice(max(0, sx), nx - max(0, -sx))
    out[dst_y, dst_x] = a[src_y, src_x]
    return out


def _bilinear(a: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    ny, nx = a.shape
    y0 = np.floor(yy).astype(np.int64)
    x0 = np.floor(xx).astype(np.int64)
    wy = yy - y0
    wx = xx - x0
    out = np.zeros(yy.shape, dtype=a.dtype)
    for dy, fy in ((0, 1 - wy), (1, wy)):
        for dx, fx in ((0, 1 - wx), (1, wx)):
            yi, xi = y0 + dy, x0 + dx
            ok = (yi >= 0) & (yi < ny) & (xi >= 0) & (xi < nx) & (fy * fx != 0)
            w = np.where(ok, fy * fx, 0.0)
            out += w * a[np.clip(yi, 0, ny - 1), np.clip(xi, 0, nx - 1)]
    return out


def place_drawn(t: np.ndarray, *, grid: Grid, shifts: np.ndarray | None = None,
                rotations: np.ndarray | None = None,
                axis: tuple[float, float] | None = None) -> np.ndarray:
    """:func:`place` for a drawing of flat-topped cells (verify's drawn layers, ``s > 1``
    samples per pixel), by exact transforms of its band-limited version instead of
    interpolation (bilinear interpolation is 1-22 % off for rotations of 0.2-3°,
    ``tests/test_rs_crosscheck.py``).

    * A **rotation** is three shears (:func:`_rotate_shears`), each a sub-sample phase-ramp
      shift of every row or column: within 0.2 % of the analytic spectrum of the rotated
      pixels (0.2° and 3°, 2 and 4 samples per pixel).
    * A **shift** multiplies the drawing's spectrum by ``exp(−2πi (fy·dy + fx·dx))`` (on a
      zero-padded window): the band-limited drawing of the moved element, exactly, for any
      sub-sample shift (a translation commutes with the band limit the drawing is read with,
      :func:`optodesign.optics.cells.cell_band_limit`). What leaves the window is dropped and
      what enters it is 0 (the holder's opaque aperture), as in :func:`place`.

    Same arguments and conventions as :func:`place` (rotate about ``axis``, then shift).
    """
    grid.check_field(t.shape, what="transmissions")
    K, ny, nx = t.shape
    sh = np.zeros((K, 2)) if shifts is None else np.asarray(shifts, dtype=np.float64)
    rot = np.zeros(K) if rotations is None else np.asarray(rotations, dtype=np.float64)
    if not sh.any() and not rot.any():
        return t
    cy, cx = (ny // 2, nx // 2) if axis is None else (float(axis[0]), float(axis[1]))
    out = np.array(t, dtype=np.complex128, copy=True)
    for k in range(K):
        if rot[k]:
            out[k] = _rotate_shears(out[k], rot[k], cy, cx)
        sy, sx = _snap(sh[k, 0] / grid.pitch), _snap(sh[k, 1] / grid.pitch)
        if float(sy).is_integer() and float(sx).is_integer():
            out[k] = _shift_int(out[k], int(sy), int(sx))
        elif sy or sx:
            out[k] = _fourier_shift(out[k], sy, sx)
    return out


def _shear(a: np.ndarray, amount: float, centre: float, axis: int) -> np.ndarray:
    """Move each line of ``a`` along ``axis`` by ``amount × (its index across − centre)``
    samples, as a phase ramp of its spectrum (circular over ``a``: the caller pads)."""
    n = a.shape[axis]
    shift = amount * (np.arange(a.shape[1 - axis], dtype=np.float64) - centre)
    f = np.fft.fftfreq(n)
    if axis == 1:  # rows move along x
        ramp = np.exp(-2j * np.pi * shift[:, None] * f[None, :])
    else:
        ramp = np.exp(-2j * np.pi * f[:, None] * shift[None, :])
    return np.fft.ifft(np.fft.fft(a, axis=axis) * ramp, axis=axis)


def _rotate_shears(a: np.ndarray, angle: float, cy: float, cx: float) -> np.ndarray:
    """Rotate by three shears (x, y, x: ``R(θ) = Sx(−tan θ/2) Sy(sin θ) Sx(−tan θ/2)``), each
    an exact sub-sample shift of every row or column, on a canvas twice the window with the
    window in its middle (no shear pushes the element out of it): the band-limited drawing
    rotated without interpolation (Unser, Thévenaz & Yaroslavsky, IEEE Trans. Image Process.
    4, 1371 (1995))."""
    ny, nx = a.shape
    oy, ox = ny // 2 + 1, nx // 2 + 1
    canvas = np.zeros((2 * ny + 2, 2 * nx + 2), dtype=np.complex128)
    canvas[oy:oy + ny, ox:ox + nx] = a
    t = -math.tan(angle / 2)
    canvas = _shear(canvas, t, cy + oy, axis=1)
    canvas = _shear(canvas, math.sin(angle), cx + ox, axis=0)
    canvas = _shear(canvas, t, cy + oy, axis=1)
    return canvas[oy:oy + ny, ox:ox + nx]


def _fourier_shift(a: np.ndarray, sy: float, sx: float) -> np.ndarray:
    ny, nx = a.shape
    ly, lx = 2 * ny + 2 * math.ceil(abs(sy)), 2 * nx + 2 * math.ceil(abs(sx))
    spec = np.fft.fft2(a, s=(ly, lx))
    fy = np.fft.fftfreq(ly)[:, None]
    fx = np.fft.fftfreq(lx)[None, :]
    spec *= np.exp(-2j * np.pi * (fy * sy + fx * sx))
    out = np.fft.ifft2(spec)
    # the window's rows/cols: the moved content wraps into the padding, never into the window
    return out[:ny, :nx]

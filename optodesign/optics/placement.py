"""Moving layers on the pixel grid: a shift and a rotation about the optical axis, in torch.

The one implementation of the lattice geometry of fabrication errors (misalignment, rotation):
verify's models (:func:`optodesign.verify.model.render`) and error-aware training
(:mod:`optodesign.train.robust`) both call it. Batched over layers and samples: a complex
``(K, ny, nx)`` or ``(K, S, ny, nx)`` tensor, one shift and one rotation per ``(layer,
sample)``; differentiable with respect to the transmissions.

:func:`place` (bilinear interpolation, one sample per pixel) is the training model;
:func:`place_drawn` (exact transforms of the band-limited drawing, ``s > 1`` samples per
pixel) is verify's drawn model. The line-width bias, which acts on the height map before the
element physics, is :func:`optodesign.raster.dilate_heights`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..grid import Grid
from .propagation import _fft_dtype

__all__ = ["place", "place_drawn"]


def _moves(t: Tensor, grid: Grid, shifts: Any, rotations: Any
           ) -> tuple[Tensor, np.ndarray, np.ndarray] | None:
    """``t`` as ``(B, ny, nx)``, the shifts in (snapped) pixels ``(B, 2)`` and the rotations
    ``(B,)`` (float64 numpy), or None when nothing moves."""
    grid.check_field(tuple(t.shape), what="transmissions")
    lead = tuple(t.shape[:-2])
    sh = np.zeros(lead + (2,)) if shifts is None else _numpy(shifts)
    rot = np.zeros(lead) if rotations is None else _numpy(rotations)
    if not sh.any() and not rot.any():
        return None
    sh = np.broadcast_to(sh, lead + (2,)).reshape(-1, 2) / grid.pitch
    r = np.round(sh)
    sh = np.where(np.abs(sh - r) < 1e-9, r, sh)  # within 1e-9 px of an integer: exact
    return (t.reshape((-1,) + tuple(t.shape[-2:])), sh,
            np.broadcast_to(rot, lead).reshape(-1).astype(np.float64))


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _axis(ny: int, nx: int, axis: tuple[float, float] | None) -> tuple[float, float]:
    return (ny // 2, nx // 2) if axis is None else (float(axis[0]), float(axis[1]))


def place(t: Tensor, *, grid: Grid, shifts: Any = None, rotations: Any = None,
          axis: tuple[float, float] | None = None, periodic: bool = False) -> Tensor:
    """Move each layer's transmission: rotate about the optical axis, then shift; zero-fill.

    The moved element is sampled at the (fixed) pixel centres by bilinear interpolation of
    the complex transmission, which for a translation is the area-weighted mix of the pixels
    a moved pixel overlaps. Outside the moved plate the transmission is 0 (the window is the
    holder's opaque aperture). Integer-pixel shifts (within 1e-9 px) are exact.

    Args:
        t: complex ``(K, ny, nx)`` or ``(K, S, ny, nx)`` transmissions (S samples per layer).
        grid: their sampling (``grid.shape == (ny, nx)``; the pitch in metres).
        shifts: ``(K, 2)`` or ``(K, S, 2)`` ``(dy, dx)`` metres (numpy or a tensor); the
            structure moves by +dy rows / +dx cols.
        rotations: ``(K,)`` or ``(K, S)`` radians, a positive rotation about +z in the
            right-handed frame of ``manifest.json`` ``conventions.frame`` (counter-clockwise
            with x drawn right and y up, as in a GDS viewer; clockwise in the plots, which
            look from the source towards the detector with row 0 at the top), about the
            grid's optical axis, the centre of pixel ``(ny // 2, nx // 2)``.
        axis: ``(row, col)`` of the optical axis in (fractional) sample indices, when the
            grid samples a design more finely than its pixels (verify's drawn layers: the
            centre of the design's pixel ``(ny // 2, nx // 2)`` lies at ``(ny // 2 · s +
            (s − 1) / 2, …)`` on ``s`` samples per pixel); default ``(ny // 2, nx // 2)``.
        periodic: the window is one period of an infinite element (a grating,
            :attr:`optodesign.tasks.Task.periodic`): what leaves the window on one side
            re-enters on the other, as the neighbouring periods move in (:func:`_periodic`).

    Returns:
        ``t``'s shape and dtype (``t`` itself when nothing moves); differentiable in ``t``.

    Raises:
        GridMismatchError: ``t`` is not sampled on ``grid``.
    """
    moves = _moves(t, grid, shifts, rotations)
    if moves is None:
        return t
    if periodic:
        return _periodic(t, grid, shifts, rotations, axis)
    flat, sh, rot = moves
    B, ny, nx = flat.shape
    dev = t.device
    f64 = dict(dtype=torch.float64, device=dev)
    cy, cx = _axis(ny, nx, axis)
    sy = torch.as_tensor(sh[:, 0], **f64)[:, None, None]
    sx = torch.as_tensor(sh[:, 1], **f64)[:, None, None]
    rows = torch.arange(ny, **f64)[None, :, None]
    cols = torch.arange(nx, **f64)[None, None, :]
    # a pure shift samples at (i − sy, j − sx); a rotation looks, from each fixed pixel
    # centre, back into the unmoved element (the inverse rotation about the axis)
    c = torch.as_tensor(np.cos(rot), **f64)[:, None, None]
    s = torch.as_tensor(np.sin(rot), **f64)[:, None, None]
    y, x = rows - cy - sy, cols - cx - sx
    turned = torch.as_tensor(rot != 0, device=dev)[:, None, None]
    yy = torch.where(turned, -s * x + c * y + cy, (rows - sy).expand(B, ny, nx))
    xx = torch.where(turned, c * x + s * y + cx, (cols - sx).expand(B, ny, nx))
    out = _bilinear(flat, yy, xx)
    return out.reshape(t.shape)


def _bilinear(a: Tensor, yy: Tensor, xx: Tensor) -> Tensor:
    B, ny, nx = a.shape
    y0 = torch.floor(yy)
    x0 = torch.floor(xx)
    wy, wx = yy - y0, xx - x0
    y0, x0 = y0.long(), x0.long()
    # in real arithmetic on (re, im) pairs: the same numbers as a complex × real product,
    # several times faster on CPU
    pairs = torch.view_as_real(a.reshape(B, ny * nx).resolve_conj())
    out = None
    for dy, fy in ((0, 1 - wy), (1, wy)):
        for dx, fx in ((0, 1 - wx), (1, wx)):
            yi, xi = y0 + dy, x0 + dx
            w = fy * fx
            ok = (yi >= 0) & (yi < ny) & (xi >= 0) & (xi < nx) & (w != 0)
            w = torch.where(ok, w, torch.zeros_like(w)).to(pairs.dtype).reshape(B, -1, 1)
            idx = (yi.clamp(0, ny - 1) * nx + xi.clamp(0, nx - 1)).reshape(B, -1, 1)
            term = w * torch.gather(pairs, 1, idx.expand(-1, -1, 2))
            out = term if out is None else out + term
    assert out is not None
    return torch.view_as_complex(out).reshape(B, ny, nx)


def _periodic(t: Tensor, grid: Grid, shifts: Any, rotations: Any,
              axis: tuple[float, float] | None) -> Tensor:
    """:func:`place` for a window that is one period of an infinite element.

    A rotation tiles the element 3 × 3, rotates it about the central tile's axis and reads
    the central tile back, so the neighbouring periods turn into the window (a rotated
    grating is no longer periodic in the window: this is the rotated infinite grating seen
    through it). A shift is a circular phase ramp of the period's spectrum: the order
    amplitudes of the moved grating, exactly, for any sub-pixel shift (bilinear interpolation
    would smooth the period and change its orders)."""
    ny, nx = t.shape[-2:]
    if rotations is not None and np.any(_numpy(rotations)):
        cy, cx = _axis(ny, nx, axis)
        tiled = t.repeat(*([1] * (t.ndim - 2)), 3, 3)
        big = Grid((3 * ny, 3 * nx), grid.pitch, pad=grid.pad)
        t = place(tiled, grid=big, rotations=rotations,
                  axis=(cy + ny, cx + nx))[..., ny:2 * ny, nx:2 * nx]
    moves = _moves(t, grid, shifts, None)
    if moves is None:
        return t
    flat, sh, _ = moves
    compute = _compute((ny, nx), flat)
    f64 = dict(dtype=torch.float64, device=t.device)
    sy = torch.as_tensor(sh[:, 0], **f64)[:, None, None]
    sx = torch.as_tensor(sh[:, 1], **f64)[:, None, None]
    fy = torch.fft.fftfreq(ny, **f64)[None, :, None]
    fx = torch.fft.fftfreq(nx, **f64)[None, None, :]
    ramp = torch.exp(-2j * math.pi * (fy * sy + fx * sx)).to(compute)
    out = torch.fft.ifft2(torch.fft.fft2(flat.to(compute)) * ramp)
    return out.to(t.dtype).reshape(t.shape)


def place_drawn(t: Tensor, *, grid: Grid, shifts: Any = None, rotations: Any = None,
                axis: tuple[float, float] | None = None, periodic: bool = False) -> Tensor:
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

    Same arguments and conventions as :func:`place` (rotate about ``axis``, then shift;
    ``periodic``: the window is one period, rotated as a 3 × 3 tiling and shifted
    circularly, exact for the band-limited drawing of a periodic element); the
    FFTs run in a dtype this platform's FFT round-trips
    (:func:`~optodesign.optics.propagation._fft_dtype`), at least complex128 for a
    complex128 drawing.
    """
    moves = _moves(t, grid, shifts, rotations)
    if moves is None:
        return t
    flat, sh, rot = moves
    B, ny, nx = flat.shape
    cy, cx = _axis(ny, nx, axis)
    out = []
    for b in range(B):
        a = flat[b]
        if rot[b] and periodic:
            # the rotated infinite element seen through the window: rotate a 3 x 3 tiling
            a = _rotate_shears(a.repeat(3, 3), float(rot[b]), cy + ny, cx + nx)
            a = a[ny:2 * ny, nx:2 * nx]
        elif rot[b]:
            a = _rotate_shears(a, float(rot[b]), cy, cx)
        sy, sx = float(sh[b, 0]), float(sh[b, 1])
        if periodic and (sy or sx):
            a = _fourier_shift(a, sy, sx, circular=True)
        elif sy.is_integer() and sx.is_integer():
            a = _shift_int(a, int(sy), int(sx))
        elif sy or sx:
            a = _fourier_shift(a, sy, sx)
        out.append(a.to(t.dtype))
    return torch.stack(out).reshape(t.shape)


def _shift_int(a: Tensor, sy: int, sx: int) -> Tensor:
    """A zero-filled shift by whole samples (exact)."""
    ny, nx = a.shape
    if sy == 0 and sx == 0:
        return a
    out = torch.zeros_like(a)
    if abs(sy) >= ny or abs(sx) >= nx:
        return out
    out[max(0, sy):ny - max(0, -sy), max(0, sx):nx - max(0, -sx)] = \
        a[max(0, -sy):ny - max(0, sy), max(0, -sx):nx - max(0, sx)]
    return out


def _compute(shape: tuple[int, int], a: Tensor) -> torch.dtype:
    ctype = torch.complex128 if a.dtype == torch.complex128 else torch.complex64
    return _fft_dtype(shape, ctype, a.device)


def _shear(a: Tensor, amount: float, centre: float, axis: int) -> Tensor:
    """Move each line of ``a`` along ``axis`` by ``amount × (its index across − centre)``
    samples, as a phase ramp of its spectrum (circular over ``a``: the caller pads)."""
    n = a.shape[axis]
    f64 = dict(dtype=torch.float64, device=a.device)
    shift = amount * (torch.arange(a.shape[1 - axis], **f64) - centre)
    f = torch.fft.fftfreq(n, **f64)
    if axis == 1:  # rows move along x
        ramp = torch.exp(-2j * math.pi * shift[:, None] * f[None, :])
    else:
        ramp = torch.exp(-2j * math.pi * f[:, None] * shift[None, :])
    return torch.fft.ifft(torch.fft.fft(a, dim=axis) * ramp.to(a.dtype), dim=axis)


def _rotate_shears(a: Tensor, angle: float, cy: float, cx: float) -> Tensor:
    """Rotate by three shears (x, y, x: ``R(θ) = Sx(−tan θ/2) Sy(sin θ) Sx(−tan θ/2)``), each
    an exact sub-sample shift of every row or column, on a canvas twice the window with the
    window in its middle (no shear pushes the element out of it): the band-limited drawing
    rotated without interpolation (Unser, Thévenaz & Yaroslavsky, IEEE Trans. Image Process.
    4, 1371 (1995))."""
    ny, nx = a.shape
    oy, ox = ny // 2 + 1, nx // 2 + 1
    shape = (2 * ny + 2, 2 * nx + 2)
    canvas = torch.zeros(shape, dtype=_compute(shape, a), device=a.device)
    canvas[oy:oy + ny, ox:ox + nx] = a.to(canvas.dtype)
    t = -math.tan(angle / 2)
    canvas = _shear(canvas, t, cy + oy, axis=1)
    canvas = _shear(canvas, math.sin(angle), cx + ox, axis=0)
    canvas = _shear(canvas, t, cy + oy, axis=1)
    return canvas[oy:oy + ny, ox:ox + nx]


def _fourier_shift(a: Tensor, sy: float, sx: float, circular: bool = False) -> Tensor:
    """Shift by ``(sy, sx)`` samples as a phase ramp of the spectrum: on a zero-padded window
    (what leaves is dropped, 0 enters), or ``circular`` on the window itself (one period of a
    periodic element: exact for the band-limited drawing)."""
    ny, nx = a.shape
    if circular:
        ly, lx = ny, nx
    else:
        ly, lx = 2 * ny + 2 * math.ceil(abs(sy)), 2 * nx + 2 * math.ceil(abs(sx))
    spec = torch.fft.fft2(a.to(_compute((ly, lx), a)), s=(ly, lx))
    f64 = dict(dtype=torch.float64, device=a.device)
    fy = torch.fft.fftfreq(ly, **f64)[:, None]
    fx = torch.fft.fftfreq(lx, **f64)[None, :]
    spec = spec * torch.exp(-2j * math.pi * (fy * sy + fx * sx)).to(spec.dtype)
    # the window's rows/cols: the moved content wraps into the padding, never into the window
    return torch.fft.ifft2(spec)[:ny, :nx]

"""Forward models as pure functions of complex transmissions.

Training (through :class:`optodesign.models.stack.DiffractiveStack`) and verification (from
transmissions rebuilt from GDS/STL files) call the same functions, so a fabricated design is
simulated exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from ..grid import Grid
from ..optics.farfield import far_field_intensity
from ..optics.propagation import (
    LOSS_TOLERANCE,
    SamplingWarning,
    propagate,
    sampling_loss,
)
from ..optics.rayleigh import rs_problems

__all__ = ["forward_stack", "output_intensity", "OUTPUT_PLANES", "detector_energies",
           "auto_detectors", "place_images", "stack_sampling", "check_stack_sampling"]


def forward_stack(
    field: Tensor,
    transmissions: Sequence[Tensor] | Tensor,
    distances: Sequence[float],
    *,
    grid: Grid,
    wavelength: float,
) -> Tensor:
    """Propagate through K thin layers separated by free space.

    Args:
        field: complex ``(..., ny, nx)`` field on the input plane.
        transmissions: K complex ``(ny, nx)`` maps (or a ``(K, ny, nx)`` tensor, or one with
            extra leading batch dims ``(K, ..., ny, nx)`` that broadcast against ``field``).
        distances: K + 1 distances in metres: input -> layer 1, ..., layer K -> output.
        grid: the sampling of the field and of every layer (shape, pitch, zero padding).
        wavelength: metres.

    Returns:
        Complex field ``(..., ny, nx)`` on the output plane.

    Raises:
        GridMismatchError: the field or a transmission is not sampled on ``grid``.
    """
    if len(distances) != len(transmissions) + 1:
        raise ValueError(
            f"distances: need {len(transmissions) + 1} for {len(transmissions)} layers, "
            f"got {len(distances)}"
        )
    u = propagate(field, distances[0], grid=grid, wavelength=wavelength)
    for k, (t, d) in enumerate(zip(transmissions, distances[1:])):
        grid.check_field(t.shape, what=f"transmissions[{k}]")
        u = propagate(u * t, d, grid=grid, wavelength=wavelength)
    return u


#: where a task reads its output (:attr:`optodesign.tasks.Task.output_plane`): ``near``, the
#: plane the last distance away (angular spectrum); ``far_field``, the far field (the back focal
#: plane of an ideal lens, the last distance then only its focal length), binned onto the
#: design's angular cells; ``orders``, the diffraction orders of a grating of which the layer
#: is one period (:mod:`optodesign.optics.farfield`)
OUTPUT_PLANES = ("near", "far_field", "orders")


def output_intensity(field: Tensor, transmissions: Sequence[Tensor] | Tensor,
                     distances: Sequence[float], *, grid: Grid, wavelength: float,
                     plane: str = "near", oversample: int = 1) -> Tensor:
    """Output intensity of :func:`forward_stack` on the plane a task reads (:data:`OUTPUT_PLANES`).

    ``near``: ``|u|²`` after the last distance, on ``grid``. ``far_field`` / ``orders``: the
    field leaving the last layer goes through the far-field hop instead of the last distance
    (:func:`~optodesign.optics.farfield.far_field_intensity`, which with ``oversample = s``
    returns the design's ``(ny / s, nx / s)`` cells); the last distance is not propagated.
    """
    if plane == "near":
        u = forward_stack(field, transmissions, distances, grid=grid, wavelength=wavelength)
        return u.real**2 + u.imag**2
    if plane not in OUTPUT_PLANES:
        raise ValueError(f"plane: must be one of {', '.join(OUTPUT_PLANES)}, got {plane!r}")
    u = forward_stack(field, transmissions, (*distances[:-1], 0.0), grid=grid,
                      wavelength=wavelength)
    return far_field_intensity(u, grid, periodic=plane == "orders", oversample=oversample)


@torch.no_grad()
def stack_sampling(field: Tensor, transmissions: Sequence[Tensor] | Tensor,
                   distances: Sequence[float], *, grid: Grid,
                   wavelength: float) -> list[tuple[int, float, float, float]]:
    """The sampling loss of the field at *every* plane of a stack (not only the input):
    ``(plane, distance, band_limit_loss, wrap_loss)`` per propagation, plane 0 the input
    and plane k the field leaving layer k (:func:`~optodesign.optics.propagation.sampling_loss`,
    summed over the batch). On a Rayleigh–Sommerfeld grid both are 0: nothing is band-limited
    and nothing wraps (the light that leaves the window is lost physically)."""
    out = []
    u = field
    for k, d in enumerate(distances):
        if k > 0:
            u = u * transmissions[k - 1]
        if d:
            removed, lost = (0.0, 0.0) if grid.method == "rs" else \
                sampling_loss(u, d, grid=grid, wavelength=wavelength)
            out.append((k, float(d), removed, lost))
        u = propagate(u, d, grid=grid, wavelength=wavelength)
    return out


def check_stack_sampling(field: Tensor, transmissions: Sequence[Tensor] | Tensor,
                         distances: Sequence[float], *, grid: Grid,
                         wavelength: float) -> list[tuple[int, float, float, float]]:
    """:func:`stack_sampling`, warning (:class:`SamplingWarning`) for every plane that loses
    more than ``LOSS_TOLERANCE`` (1 %) of its energy to the band limit or to wrap-around, with
    what to change. Returns the measurements. Training calls it on its first batch."""
    import warnings

    found = stack_sampling(field, transmissions, distances, grid=grid, wavelength=wavelength)
    problems = []
    for k, d, removed, lost in found:
        where = "the input" if k == 0 else f"the field leaving layer {k}"
        parts = []
        if removed > LOSS_TOLERANCE:
            parts.append(f"the band limit removes {100 * removed:.1f}% of its energy")
        if lost > LOSS_TOLERANCE:
            parts.append(f"{100 * lost:.1f}% of its energy wraps around the padded window")
        if parts:
            problems.append(f"{where} over {d:.4g} m: {' and '.join(parts)}")
    if problems:  # one warning for the whole stack
        fix = f"increase pad (now {grid.pad:g})"
        rs = replace(grid, pad=max(grid.pad, 2.0), method="rs")
        if not any(rs_problems(rs, d, wavelength) for d in distances if d > 0):
            fix += (" or propagate by Rayleigh-Sommerfeld (optics.propagation = \"rs\"), "
                    "which is exact for this geometry at pad 2")
        warnings.warn("sampling: " + "; ".join(problems) + f"; {fix}", SamplingWarning,
                      stacklevel=2)
    return found


def detector_energies(intensity: Tensor, boxes: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """Energy in each detector box.

    Args:
        intensity: real ``(..., ny, nx)``.
        boxes: C boxes ``[y0, x0, h, w]`` in pixels.

    Returns:
        ``(..., C)`` summed intensity per box.
    """
    out = [intensity[..., y0:y0 + h, x0:x0 + w].sum(dim=(-2, -1)) for y0, x0, h, w in boxes]
    return torch.stack(out, dim=-1)


def auto_detectors(n_classes: int, shape: tuple[int, int], size: int) -> list[list[int]]:
    """Lay out ``n_classes`` square detectors of ``size`` px in rows around the centre.

    Rows as in Lin et al. (Science 2018): 10 classes -> 3/4/3; otherwise rows of
    ceil(sqrt(C)). Detectors are separated by one detector width.
    """
    import math

    if n_classes == 10:
        rows = [3, 4, 3]
    else:
        per = math.ceil(math.sqrt(n_classes))
        rows = [per] * (n_classes // per) + ([n_classes % per] if n_classes % per else [])
    ny, nx = shape
    gap = size
    height = len(rows) * size + (len(rows) - 1) * gap
    if height > ny or max(rows) * size + (max(rows) - 1) * gap > nx:
        raise ValueError(
            f"detectors: {n_classes} detectors of {size} px do not fit a {ny}x{nx} grid; "
            f"use smaller detectors or a larger grid"
        )
    boxes = []
    y = (ny - height) // 2
    for count in rows:
        width = count * size + (count - 1) * gap
        x = (nx - width) // 2
        for _ in range(count):
            boxes.append([y, x, size, size])
            x += size + gap
        y += size + gap
    return boxes


def place_images(images: Tensor, shape: tuple[int, int], size: int,
                 encoding: str = "amplitude") -> Tensor:
    """Upsample ``(B, h, w)`` images in [0, 1] to ``size`` px and centre them on ``shape``.

    Returns the complex input field ``(B, ny, nx)``: amplitude encoding uses the image as the
    field amplitude; phase encoding uses exp(iπ·image) inside the image square (0 outside).
    """
    import torch.nn.functional as F

    img = F.interpolate(images[:, None].float(), size=(size, size), mode="bilinear",
                        align_corners=False)[:, 0].clamp(0, 1)
    ny, nx = shape
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    out = torch.zeros((images.shape[0], ny, nx), dtype=torch.complex64, device=images.device)
    if encoding == "amplitude":
        out[:, y0:y0 + size, x0:x0 + size] = img.to(torch.complex64)
    elif encoding == "phase":
        out[:, y0:y0 + size, x0:x0 + size] = torch.polar(torch.ones_like(img), torch.pi * img)
    else:
        raise ValueError(f"encoding: must be 'amplitude' or 'phase', got {encoding!r}")
    return out

"""Band-limited angular-spectrum propagation.

``U(z) = IFFT{ FFT{U(0)} · H }`` with ``H = exp(i z sqrt(k² − (2π fx)² − (2π fy)²))`` on a
zero-padded window, evanescent components dropped, and the band limit of Matsushima &
Shimobaba, "Band-limited angular spectrum method for numerical simulation of free-space
propagation in far and near fields", Opt. Express 17, 19662 (2009), doi:10.1364/OE.17.019662.

Conventions: time dependence exp(−iωt), a plane wave travelling towards +z is exp(+ikz), so a
field with phase ``+2π x sin(θ)/λ`` travels towards +x. Fields are ``(..., ny, nx)`` complex
tensors sampled on a :class:`~optodesign.grid.Grid` (shape, pitch, zero-padding factor) that
travels beside them; the transfer function is computed in float64 (the phase ``k z`` is
large, float32 would lose it) and cached per (padded shape, pitch, wavelength, distance, band
limit, device, dtype), so a repeated call costs only FFT + multiply + inverse FFT. Where
the transfer function factors into a y and an x part to within :data:`SEPARABLE_TOLERANCE`
(paraxial geometries), the 2-D convolution runs as two 1-D ones (:func:`separable_transfer`).
The sampling checks live in :mod:`~optodesign.optics.sampling` (re-exported here). A grid of
``method = "rs"`` propagates by the Rayleigh–Sommerfeld convolution of
:mod:`~optodesign.optics.rayleigh` (same FFT plans and platform self-check).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..errors import UserError
from ..grid import Grid
from .rayleigh import rs_problems, rs_transfer
from .sampling import (
    LOSS_TOLERANCE,
    SamplingError,
    SamplingReport,
    SamplingWarning,
    _band_limit,
    _field_problems,
    _validate,
    check_sampling,
    sampling_loss,
)

__all__ = [
    "propagate",
    "transfer_function",
    "separable_transfer",
    "check_sampling",
    "sampling_loss",
    "LOSS_TOLERANCE",
    "SamplingReport",
    "SamplingWarning",
    "SamplingError",
    "clear_transfer_cache",
    "FFTSelfCheckError",
]

log = logging.getLogger(__name__)

_CACHE_SIZE = 64
_cache: OrderedDict[tuple, Any] = OrderedDict()


class FFTSelfCheckError(RuntimeError):
    """The platform FFT does not round-trip for a shape/dtype/device, in any way we can run it."""


def transfer_function(
    shape: tuple[int, int],
    distance: float,
    *,
    pitch: float,
    wavelength: float,
    bandlimit: bool = True,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.complex64,
    scale: float = 1.0,
) -> Tensor:
    """Angular-spectrum transfer function on an (already padded) ``shape``, FFT order.

    Computed in float64 (times ``scale``) and cast once to ``dtype``; cached, so treat the
    result as read-only. :func:`propagate` passes ``scale = 1/(ny nx)``: the inverse FFT's
    normalisation folded in, so the inverse transform runs unnormalised.

    Returns:
        Complex tensor ``(ny, nx)``: exp(i z sqrt(k² − kx² − ky²)) inside the propagating (and,
        with ``bandlimit``, the Matsushima) band, 0 outside.
    """
    device = torch.device(device)

    def make() -> Tensor:
        (fy, keep_y), (fx, keep_x) = _frequencies(shape, pitch, wavelength, distance,
                                                  bandlimit, device)
        arg = 1.0 / wavelength**2 - (fy[:, None] ** 2 + fx[None, :] ** 2)
        amplitude = ((arg > 0) & keep_y[:, None] & keep_x[None, :]).to(torch.float64) * scale
        kz = 2 * math.pi * torch.sqrt(torch.clamp(arg, min=0.0))
        return torch.polar(amplitude, kz * distance).to(dtype)

    return _cached((tuple(shape), float(pitch), float(wavelength), float(distance),
                    bool(bandlimit), str(device), dtype, float(scale)), make)


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    """``_cache[key]``, made by ``make()`` on a miss (least recently used evicted)."""
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = _cache[key] = make()
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return value


def _frequencies(shape: tuple[int, int], pitch: float, wavelength: float, distance: float,
                 bandlimit: bool, device: torch.device) -> tuple[tuple[Tensor, Tensor], ...]:
    """``((fy, keep_y), (fx, keep_x))``: each axis's FFT-order frequencies (float64) and the
    ones the Matsushima band limit keeps (all, without it or at distance 0)."""
    axes = []
    for n in shape:
        f = torch.fft.fftfreq(n, d=pitch, dtype=torch.float64, device=device)
        keep = torch.ones(n, dtype=torch.bool, device=device)
        if bandlimit and distance != 0:
            keep = f.abs() < _band_limit(n, pitch, wavelength, abs(distance))
        axes.append((f, keep))
    return tuple(axes)


#: the largest phase error (radians, anywhere in the passband) at which :func:`propagate`
#: factors the transfer function into a y and an x part (paraxial geometries, e.g. 36 µm pixels
#: at 532 nm): the field it returns is then off by at most this fraction of the field's norm
#: (the transform is unitary), and it runs 2 (ny + nx) 1-D FFTs per field instead of 3 (ny + nx)
SEPARABLE_TOLERANCE = 1e-3


def separable_transfer(
    shape: tuple[int, int],
    distance: float,
    *,
    pitch: float,
    wavelength: float,
    bandlimit: bool = True,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.complex64,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor] | None:
    """:func:`transfer_function` as ``hy[:, None] · hx[None, :]``, or None where that product
    is off by more than :data:`SEPARABLE_TOLERANCE` radians anywhere in the passband.

    The band limit is a rectangle, so it factors exactly; the phase ``z kz(fy, fx)`` does not,
    its non-separable part growing as ``π z λ³ fy² fx² / 2``. The factors are the exact phase
    along the two lines ``fx = Fx/√2`` and ``fy = Fy/√2`` (``F``: the largest kept frequency),
    which makes the remainder ``≈ π z λ³ (fy² − Fy²/2)(fx² − Fx²/2) / 2``: the minimax split of
    the leading term, ±¼ of it. The remainder is computed exactly (float64) on the kept
    frequencies, not estimated (a geometry whose leading term alone is over 4× the tolerance
    is declined without it). Any evanescent frequency inside the passband: None.

    Returns:
        ``(hy (ny,), hx (nx,))`` in ``dtype``, FFT order, ``scale`` folded into ``hy``; cached
        like :func:`transfer_function` (treat as read-only).
    """
    device = torch.device(device)
    return _cached(("separable", tuple(shape), float(pitch), float(wavelength), float(distance),
                    bool(bandlimit), str(device), dtype, float(scale)),
                   lambda: _factor(shape, distance, pitch, wavelength, bandlimit, device, dtype,
                                   scale))


def _factor(shape: tuple[int, int], distance: float, pitch: float, wavelength: float,
            bandlimit: bool, device: torch.device, dtype: torch.dtype,
            scale: float) -> tuple[Tensor, Tensor] | None:
    """:func:`separable_transfer`, uncached."""
    (fy, keep_y), (fx, keep_x) = _frequencies(shape, pitch, wavelength, distance, bandlimit,
                                              device)
    found = None
    inv2 = 1.0 / wavelength**2
    if keep_y.any() and keep_x.any():
        top_y, top_x = float(fy.abs()[keep_y].max()), float(fx.abs()[keep_x].max())
        # the leading term of the remainder, to skip the exact check where it cannot pass
        # (declining only ever keeps the exact transfer function)
        leading = math.pi * abs(distance) * wavelength**3 * top_y**2 * top_x**2 / 8
        if top_y**2 + top_x**2 < inv2 and leading <= 4 * SEPARABLE_TOLERANCE:

            def phase(a: Tensor | float, b: Tensor | float) -> Tensor:
                arg = torch.as_tensor(inv2 - a**2 - b**2, dtype=torch.float64, device=device)
                return 2 * math.pi * distance * torch.sqrt(arg.clamp(min=0.0))

            my, mx = top_y / math.sqrt(2), top_x / math.sqrt(2)
            py, px = phase(fy, mx), phase(my, fx) - phase(my, mx)
            rest = (phase(fy[keep_y][:, None], fx[keep_x][None, :])
                    - py[keep_y][:, None] - px[keep_x][None, :])
            if float(rest.abs().max()) <= SEPARABLE_TOLERANCE:
                found = (torch.polar(keep_y.to(torch.float64) * scale, py).to(dtype),
                         torch.polar(keep_x.to(torch.float64), px).to(dtype))
    return found


def clear_transfer_cache() -> None:
    """Forget every cached transfer function (frees memory on the device)."""
    _cache.clear()


#: (padded shape, dtype, device, threads, pruned plan, separable shape) -> the complex dtype in
#: which the FFTs run correctly
_fft_checked: dict[tuple, torch.dtype] = {}

#: padded bytes per chunk and CPU thread: the batch is propagated a few fields at a time so
#: each field's passes stay in cache (benchmarks/propagation.py, "chunked")
CHUNK_BYTES = 2 << 20


class Plan(NamedTuple):
    """How :func:`propagate` transforms a batch on the CPU (:func:`_plan`): the field's
    ``(ny, nx)``, the chunk sizes the batch runs in (at most two: the chunk and the remainder)
    and whether each chunk runs the pruned 1-D transforms (:func:`_pruned`) or ``fft2``."""

    shape: tuple[int, int]
    chunks: tuple[int, ...]
    pruned: bool


def _plan(field_shape: tuple[int, ...], padded: tuple[int, int], itemsize: int,
          device: torch.device) -> Plan | None:
    """How :func:`propagate` transforms a batch: None for one batched ``fft2``/``ifft2`` (GPU,
    pad 1, or a batch that fits one chunk on several threads), else a :class:`Plan`.

    On the CPU the batch runs in chunks of about :data:`CHUNK_BYTES` of padded field per
    thread, which keeps every pass in cache: one batched transform of a few hundred padded
    fields is 2-3x slower per field on 2 threads (benchmarks/propagation.py). On one thread
    each chunk's zero-padded transform is also pruned (the zero rows are never transformed,
    the cropped rows never computed: 3/4 of the work at pad 2); on several threads the strided
    1-D passes are slower than MKL's ``fft2`` of the chunk.
    """
    ny, nx = field_shape[-2:]
    batch = math.prod(field_shape[:-2])
    if device.type != "cpu" or padded == (ny, nx) or batch == 0:
        return None
    threads = torch.get_num_threads()
    size = max(1, min(batch, CHUNK_BYTES * threads // (padded[0] * padded[1] * itemsize)))
    if threads > 1 and size == batch:
        return None
    return Plan((ny, nx), tuple(sorted({size, batch % size} - {0})), threads == 1)


def _padded(x: Tensor, padded: tuple[int, int], h: Tensor) -> Tensor:
    """``ifft2(fft2(x, s=padded) · h, norm="forward")[..., :ny, :nx]``, batched."""
    ny, nx = x.shape[-2:]
    # fft2 with s= zero-pads at the end of each axis; for a linear convolution the position of
    # the padding does not matter, and cropping [:ny, :nx] recovers the original window.
    # In place: fft2's backward does not need its output, so this saves an allocation.
    out = torch.fft.ifft2(torch.fft.fft2(x, s=padded).mul_(h), norm="forward")
    return out if padded == (ny, nx) else out[..., :ny, :nx]


def _pruned(x: Tensor, padded: tuple[int, int], h: Tensor) -> Tensor:
    """``ifft2(fft2(x, s=padded) · h, norm="forward")[..., :ny, :nx]`` for ``x`` of shape
    ``(k, ny, nx)``, skipping the zero input rows and the discarded output columns.

    Forward: the y-pass only on the nx columns that are not zero padding, the x-pass on every
    row; inverse: the x-pass on every row, keeping nx columns, then the y-pass on those.
    """
    ny, nx = x.shape[-2:]
    spectrum = torch.fft.fft(torch.fft.fft(x, n=padded[0], dim=-2), n=padded[1], dim=-1)
    # in place: fft's backward does not need its output, so this saves an allocation
    rows = torch.fft.ifft(spectrum.mul_(h), dim=-1, norm="forward")[..., :nx]
    return torch.fft.ifft(rows, dim=-2, norm="forward")[..., :ny, :]


def _separable(x: Tensor, padded: tuple[int, int], hy: Tensor, hx: Tensor) -> Tensor:
    """``ifft2(fft2(x, s=padded) · hy ⊗ hx, norm="forward")[..., :ny, :nx]`` as two 1-D
    convolutions: along x on the ny rows, keeping nx columns, then along y on those columns.
    """
    ny, nx = x.shape[-2:]
    # in place: fft's backward does not need its output, so this saves an allocation
    rows = torch.fft.ifft(torch.fft.fft(x, n=padded[1], dim=-1).mul_(hx), dim=-1,
                          norm="forward")[..., :nx]
    return torch.fft.ifft(torch.fft.fft(rows, n=padded[0], dim=-2).mul_(hy[:, None]), dim=-2,
                          norm="forward")[..., :ny, :]


@torch.no_grad()
def _round_trips(padded: tuple[int, int], dtype: torch.dtype, device: torch.device,
                 plan: Plan | None = None,
                 separable: tuple[int, int] | None = None) -> bool:
    """Whether the forward transform :func:`propagate` runs conserves energy (Parseval) and its
    unnormalised inverse returns ``n`` times a random field, with exactly the calls (lengths,
    norms, batch sizes) that :func:`propagate` makes: ``fft2``/``ifft2`` of ``padded``, or for
    a :class:`Plan` from :func:`_plan`, those of each chunk size (``fft2`` with ``s=padded``,
    or the 1-D transforms of :func:`_pruned`); with ``separable`` (the field's ``(ny, nx)``),
    those of :func:`_separable` (per chunk size, or on one field).
    """
    if separable is not None:
        return _separable_round_trips(padded, dtype, device, separable,
                                      plan.chunks if plan else (1,))
    g = torch.Generator(device=device).manual_seed(12345)  # never touches the global RNG
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    n = padded[0] * padded[1]
    tol = 1e-4 if dtype == torch.complex64 else 1e-10
    for k in plan.chunks if plan else (None,):
        shape = padded if plan is None else (k, *plan.shape)
        x = torch.complex(torch.randn(shape, generator=g, device=device, dtype=real),
                          torch.randn(shape, generator=g, device=device, dtype=real))
        if plan is None or not plan.pruned:
            spectrum = torch.fft.fft2(x, s=padded)
            back = torch.fft.ifft2(spectrum, norm="forward")[..., :shape[-2], :shape[-1]]
        else:
            ny, nx = plan.shape
            spectrum = torch.fft.fft(torch.fft.fft(x, n=padded[0], dim=-2), n=padded[1], dim=-1)
            rows = torch.fft.ifft(spectrum, dim=-1, norm="forward")[..., :nx]
            back = torch.fft.ifft(rows, dim=-2, norm="forward")[..., :ny, :]
        parseval = (spectrum.abs().square().sum() / (n * x.abs().square().sum())).item()
        err = ((back.div(n) - x).norm() / x.norm()).item()
        if not (math.isfinite(err) and err < tol and abs(parseval - 1) < tol):
            return False
    return True


@torch.no_grad()
def _separable_round_trips(padded: tuple[int, int], dtype: torch.dtype, device: torch.device,
                           shape: tuple[int, int], chunks: tuple[int, ...]) -> bool:
    """:func:`_round_trips` for the calls of :func:`_separable` on chunks of ``shape`` fields."""
    g = torch.Generator(device=device).manual_seed(12345)  # never touches the global RNG
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    tol = 1e-4 if dtype == torch.complex64 else 1e-10
    ny, nx = shape
    for k in chunks:
        x = torch.complex(torch.randn((k, ny, nx), generator=g, device=device, dtype=real),
                          torch.randn((k, ny, nx), generator=g, device=device, dtype=real))
        along_x = torch.fft.fft(x, n=padded[1], dim=-1)
        rows = torch.fft.ifft(along_x, dim=-1, norm="forward")[..., :nx]
        along_y = torch.fft.fft(rows, n=padded[0], dim=-2)
        back = torch.fft.ifft(along_y, dim=-2, norm="forward")[..., :ny, :]
        energy = x.abs().square().sum()
        parseval = (along_x.abs().square().sum() / (padded[1] * energy),
                    along_y.abs().square().sum() / (padded[0] * padded[1] ** 2 * energy))
        err = ((back.div(padded[0] * padded[1]) - x).norm() / x.norm()).item()
        if not (math.isfinite(err) and err < tol and
                all(abs(p.item() - 1) < tol for p in parseval)):
            return False
    return True


def _fft_dtype(padded: tuple[int, int], dtype: torch.dtype, device: torch.device,
               plan: Plan | None = None,
               separable: tuple[int, int] | None = None) -> torch.dtype:
    """The dtype to run :func:`propagate`'s FFTs in for this padded shape and ``plan``
    (from :func:`_plan`; None: batched ``fft2``), or with ``separable`` the field's
    ``(ny, nx)`` for :func:`_separable`'s calls: ``dtype`` itself, unless this platform's FFT
    fails the round trip there, then complex128.

    Checked once per (padded shape, dtype, device, thread count, plan). Torch 2.13/2.14 CPU
    builds (MKL) on AMD EPYC with 2 threads return a single complex64 ``ifft2`` of exactly
    2048² scaled by 1/2048² (see README, "Platform notes"); whichever size or call a library
    breaks next, the check catches it instead of returning a silently wrong field.

    Raises:
        FFTSelfCheckError: neither dtype round-trips.
    """
    key = (padded, dtype, str(device), torch.get_num_threads(), plan, separable)
    found = _fft_checked.get(key)
    if found is None:
        for candidate in dict.fromkeys((dtype, torch.complex128)):
            if _round_trips(padded, candidate, device, plan, separable):
                found = candidate
                break
        else:
            raise FFTSelfCheckError(
                f"the FFT of this platform does not round-trip a {padded[0]}x{padded[1]} field "
                f"({dtype}, {device}, {torch.get_num_threads()} threads); try another pad or "
                f"torch.set_num_threads(1)")
        if found != dtype:
            log.warning("platform FFT: %s %dx%d on %s with %d threads fails its round trip; "
                        "propagating in %s instead", dtype, padded[0], padded[1], device,
                        torch.get_num_threads(), found)
        _fft_checked[key] = found
    return found


#: geometries whose first field has been checked (see propagate's "Warns")
_warned: set[tuple] = set()

def propagate(
    field: Tensor,
    distance: float,
    *,
    grid: Grid,
    wavelength: float,
    bandlimit: bool = True,
) -> Tensor:
    """Propagate a sampled field over ``distance`` in a homogeneous medium.

    Band-limited angular spectrum method (Matsushima & Shimobaba 2009,
    doi:10.1364/OE.17.019662) with zero padding against circular wrap-around.

    Args:
        field: complex tensor ``(..., ny, nx)`` (complex64 or complex128, any device); leading
            dimensions are batch dimensions. Differentiable.
        distance: metres; negative propagates backwards; 0 returns the input unchanged.
        grid: the field's sampling: ``shape == field.shape[-2:]``, pitch in metres,
            ``pad``, the zero-padding factor per axis (2 doubles the window), and ``method``:
            ``"rs"`` propagates by the Rayleigh–Sommerfeld convolution instead
            (:mod:`~optodesign.optics.rayleigh`; ``bandlimit`` does not apply; forwards only,
            where its kernel is sampled, else :class:`SamplingError`).
        wavelength: wavelength in the medium, metres.
        bandlimit: apply the Matsushima band limit (keep True unless you know why not).

    Returns:
        Complex tensor of the same shape, dtype and device: the field at ``distance``.

    Raises:
        UserError: a non-positive wavelength, a non-complex or < 2-D tensor.
        GridMismatchError: ``field.shape[-2:]`` is not ``grid.shape`` (names both).
        SamplingError: the window cannot represent the propagation at all.

    Warns:
        SamplingWarning: the sampling is only approximate (once per geometry); the message
            says which quantity to change.
    """
    if not isinstance(field, Tensor):
        raise UserError(f"field: expected a torch complex tensor, got {type(field).__name__}")
    if not field.is_complex():
        raise UserError(
            f"field: expected a complex tensor (complex64/complex128), got {field.dtype}"
        )
    if field.ndim < 2:
        raise UserError(f"field: expected shape (..., ny, nx), got {tuple(field.shape)}")
    _validate(grid, distance, wavelength)
    grid.check_field(field.shape)
    if distance == 0:
        return field
    ny, nx = grid.shape
    if grid.method == "rs":
        return _rayleigh_sommerfeld(field, distance, grid, wavelength)
    key = (grid, float(wavelength), float(distance), bool(bandlimit))
    first = key not in _warned
    if first:
        report = check_sampling(grid, distance, wavelength=wavelength, bandlimit=bandlimit)
        if report.fatal:
            raise SamplingError(report.problems[0])
    nyp, nxp = grid.padded().shape
    geometry = dict(pitch=grid.pitch, wavelength=wavelength, bandlimit=bandlimit,
                    device=field.device, scale=1.0 / (nyp * nxp))
    paraxial = separable_transfer((nyp, nxp), distance, dtype=field.dtype,
                                  **geometry) is not None
    separable = (ny, nx) if paraxial else None
    if first:
        _, compute = _plan_dtype(field, (nyp, nxp), separable)
        spectrum = torch.fft.fft2(field.detach().to(compute), s=(nyp, nxp))
        for problem in _field_problems(spectrum, report, grid=grid, distance=distance,
                                       wavelength=wavelength, bandlimit=bandlimit):
            warnings.warn(problem, SamplingWarning, stacklevel=2)
        _warned.add(key)
    if paraxial:
        plan, compute = _plan_dtype(field, (nyp, nxp), separable)
        hy, hx = separable_transfer((nyp, nxp), distance, dtype=compute, **geometry)
        return _run(field, lambda x: _separable(x.to(compute), (nyp, nxp), hy, hx), plan)
    # the inverse FFT's 1/(nyp nxp) lives in the cached transfer function, so the inverse runs
    # unnormalised (norm="forward"): one pass fewer, and it avoids the scaled complex64
    # inverse that some MKL builds get wrong (see _fft_dtype)
    return convolve(field, (nyp, nxp), lambda dtype: transfer_function(
        (nyp, nxp), distance, dtype=dtype, **geometry))


def convolve(field: Tensor, padded: tuple[int, int],
             transfer: Callable[[torch.dtype], Tensor]) -> Tensor:
    """The linear convolution ``ifft2(fft2(field, s=padded) · H, norm="forward")[..., :ny, :nx]``
    of a batch ``(..., ny, nx)``, with ``H = transfer(dtype)`` (the inverse's ``1 / (nyp nxp)``
    included): in chunks as :func:`_plan` says, in a dtype this platform's FFT round-trips
    (:func:`_fft_dtype`), returned in the field's dtype. Differentiable. Both propagation
    methods and the cells' band limit (:func:`~optodesign.optics.cells.cell_band_limit`) run
    through it."""
    plan, compute = _plan_dtype(field, padded)
    h = transfer(compute)

    def transform(x: Tensor) -> Tensor:
        x = x.to(compute)
        return _pruned(x, padded, h) if plan and plan.pruned else _padded(x, padded, h)
    return _run(field, transform, plan)


def _plan_dtype(field: Tensor, padded: tuple[int, int],
                separable: tuple[int, int] | None = None) -> tuple[Plan | None, torch.dtype]:
    """:func:`_plan` for ``field`` and the dtype its FFTs run correctly in
    (:func:`_fft_dtype`)."""
    plan = _plan(tuple(field.shape), padded, field.element_size(), field.device)
    compute = _fft_dtype(padded, field.dtype, field.device, plan, separable)
    if plan and compute != field.dtype:
        # the fallback dtype has twice the bytes: chunk for it (and check that plan too)
        plan = _plan(tuple(field.shape), padded, 16, field.device)
        compute = _fft_dtype(padded, compute, field.device, plan, separable)
    return plan, compute


def _run(field: Tensor, transform: Callable[[Tensor], Tensor], plan: Plan | None) -> Tensor:
    """``transform`` of the batch in the FFT's dtype (``transform``'s), in the chunks of
    ``plan`` (None: in one call), back in the field's dtype."""
    if plan is None:
        return transform(field).to(field.dtype)
    ny, nx = field.shape[-2:]
    parts = [transform(part) for part in field.reshape(-1, ny, nx).split(max(plan.chunks))]
    out = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out.reshape(field.shape).to(field.dtype)


def _rayleigh_sommerfeld(field: Tensor, distance: float, grid: Grid,
                         wavelength: float) -> Tensor:
    """:func:`propagate` on a grid of ``method = "rs"``: the linear Rayleigh–Sommerfeld
    convolution (:mod:`~optodesign.optics.rayleigh`), same plans and FFT self-check."""
    problems = rs_problems(grid, distance, wavelength)
    if problems:
        raise SamplingError(problems[0])
    padded = grid.padded().shape
    key = ("rs", padded, grid.pitch, float(wavelength), float(distance), str(field.device))
    return convolve(field, padded, lambda dtype: _cached((*key, dtype), lambda: rs_transfer(
        padded, distance, pitch=grid.pitch, wavelength=wavelength, device=field.device,
        dtype=dtype, scale=1.0 / (padded[0] * padded[1]))))

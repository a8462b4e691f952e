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
limit, device, dtype), so a repeated call costs only FFT + multiply + inverse FFT.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..grid import Grid

__all__ = [
    "propagate",
    "transfer_function",
    "check_sampling",
    "sampling_loss",
    "SamplingReport",
    "SamplingWarning",
    "SamplingError",
    "clear_transfer_cache",
    "FFTSelfCheckError",
]

log = logging.getLogger(__name__)

_CACHE_SIZE = 64
_cache: OrderedDict[tuple, Tensor] = OrderedDict()


class SamplingWarning(UserWarning):
    """The grid represents the propagation only approximately; the message says what to change."""


class SamplingError(UserError):
    """The grid cannot represent the propagation at all; the result would be meaningless."""


class FFTSelfCheckError(RuntimeError):
    """The platform FFT does not round-trip for a shape/dtype/device, in any way we can run it."""


@dataclass(frozen=True)
class SamplingReport:
    """How well a padded window of pitch ``pitch`` represents a propagation over ``distance``.

    Attributes:
        band_fraction: fraction (0..1] of the usable frequency radius min(1/(2 pitch), 1/λ)
            that survives the band limit along the worse axis (1 = nothing removed).
        spread: lateral walk-off (metres) of the steepest wave the grid carries,
            |z|·tan(θ) with sin θ = min(1, λ / (2 pitch)).
        margin: zero-padding on each side of the field (metres), along the smaller axis.
        problems: human-readable warnings (empty when the sampling is fine).
        fatal: True when the result would be meaningless.
    """

    band_fraction: float
    spread: float
    margin: float
    problems: tuple[str, ...]
    fatal: bool


def _validate(grid: Grid, distance: float, wavelength: float) -> None:
    """The grid validated its own shape, pitch and pad; check what travels beside it."""
    if not isinstance(grid, Grid):
        raise UserError(f"grid: expected an optodesign.grid.Grid, got {type(grid).__name__}")
    if not isinstance(wavelength, (int, float)) or not math.isfinite(wavelength) or \
            wavelength <= 0:
        raise UserError(f"wavelength: must be a finite length > 0 in metres, got "
                        f"{wavelength!r}")
    if not isinstance(distance, (int, float)) or not math.isfinite(distance):
        raise UserError(f"distance: must be a finite length in metres, got {distance!r}")


def _band_limit(n_padded: int, pitch: float, wavelength: float, distance: float) -> float:
    """Matsushima & Shimobaba (2009) eq. (13): |f| < 1 / (λ sqrt((2 Δf z)² + 1)), Δf = 1/S."""
    df = 1.0 / (n_padded * pitch)
    return 1.0 / (wavelength * math.sqrt((2.0 * df * distance) ** 2 + 1.0))


def check_sampling(
    grid: Grid,
    distance: float,
    *,
    wavelength: float,
    bandlimit: bool = True,
) -> SamplingReport:
    """Check that a grid can represent a propagation; see :class:`SamplingReport`.

    Args:
        grid: the unpadded field's sampling (shape, pitch) and its zero-padding factor.
        distance: propagation distance in metres (sign ignored).
        wavelength: wavelength in the medium, metres.
        bandlimit: whether the Matsushima band limit will be applied.
    """
    _validate(grid, distance, wavelength)
    z = abs(distance)
    shape, pitch, pad = grid.shape, grid.pitch, grid.pad
    nyp, nxp = grid.padded().shape
    usable = min(1.0 / (2 * pitch), 1.0 / wavelength)
    fraction = min(1.0, min(_band_limit(n, pitch, wavelength, z) for n in (nyp, nxp)) / usable)
    sin_t = min(1.0, wavelength / (2 * pitch))
    spread = z * sin_t / math.sqrt(max(1e-12, 1 - sin_t**2)) if sin_t < 1 else math.inf
    if z == 0:
        spread = 0.0
    margin = min((nyp - shape[0]), (nxp - shape[1])) * pitch / 2
    problems: list[str] = []
    fatal = False
    if bandlimit and fraction < 0.5:
        # The grid keeps little of the band; whether that matters depends on the field's
        # spectrum, which propagate() measures on its first call for a geometry.
        fatal = min(_band_limit(n, pitch, wavelength, z) * n * pitch for n in (nyp, nxp)) < 2
        problems.append(
            f"the padded window ({nxp}x{nyp} px at {pitch:.4g} m) is small for distance "
            f"{z:.4g} m: the band limit keeps only {100 * fraction:.0f}% of the frequency band; "
            f"increase pad (now {pad:g}), or reduce the distance"
        )
    if not bandlimit and fraction < 1.0:
        # Without the band limit the sampled transfer function aliases where its local
        # frequency exceeds the sampling rate, i.e. beyond the Matsushima limit.
        problems.append(
            f"the transfer function is aliased at distance {z:.4g} m "
            f"({100 * (1 - fraction):.0f}% of the band); use bandlimit=True or increase pad "
            f"(now {pad:g})"
        )
    return SamplingReport(fraction, spread, margin, tuple(problems), fatal)


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
    key = (tuple(shape), float(pitch), float(wavelength), float(distance), bool(bandlimit),
           str(device), dtype, float(scale))
    cached = _cache.get(key)
    if cached is not None:
        _cache.move_to_end(key)
        return cached
    ny, nx = shape
    fy = torch.fft.fftfreq(ny, d=pitch, dtype=torch.float64, device=device)
    fx = torch.fft.fftfreq(nx, d=pitch, dtype=torch.float64, device=device)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    arg = 1.0 / wavelength**2 - f2
    propagating = arg > 0
    kz = 2 * math.pi * torch.sqrt(torch.clamp(arg, min=0.0))
    phase = kz * distance
    h = torch.polar(propagating.to(torch.float64) * scale, phase)
    if bandlimit and distance != 0:
        ly = _band_limit(ny, pitch, wavelength, abs(distance))
        lx = _band_limit(nx, pitch, wavelength, abs(distance))
        keep = (fy.abs()[:, None] < ly) & (fx.abs()[None, :] < lx)
        h = h * keep
    h = h.to(dtype)
    _cache[key] = h
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return h


def clear_transfer_cache() -> None:
    """Forget every cached transfer function (frees memory on the device)."""
    _cache.clear()


#: (padded shape, dtype, device, threads, pruned plan) -> the complex dtype in which the FFTs
#: run correctly
_fft_checked: dict[tuple, torch.dtype] = {}

#: padded bytes per chunk on one CPU thread: the batch is propagated a few fields at a time so
#: each field's passes stay in cache (benchmarks/propagation.py, "chunked pruned")
CHUNK_BYTES = 2 << 20


def _plan(field_shape: tuple[int, ...], padded: tuple[int, int], itemsize: int,
          device: torch.device) -> tuple[tuple[int, int], tuple[int, ...]] | None:
    """How :func:`propagate` transforms a batch: None for one batched ``fft2``/``ifft2`` (GPU,
    several CPU threads, or pad 1), else ``((ny, nx), chunk sizes)`` for the pruned 1-D
    transforms of chunks of the batch (at most two sizes: the chunk and the remainder).

    On one CPU thread the zero-padded transform is pruned (the zero rows are never
    transformed, the cropped rows never computed: 3/4 of the work at pad 2) and the batch runs
    in chunks of about :data:`CHUNK_BYTES` of padded field, which keeps every pass in cache;
    batched, the strided 1-D passes are slower than MKL's fft2, and with several threads the
    many small calls cost more than they save.
    """
    ny, nx = field_shape[-2:]
    batch = math.prod(field_shape[:-2])
    if device.type != "cpu" or torch.get_num_threads() != 1 or padded == (ny, nx) or \
            batch == 0:
        return None
    size = max(1, min(batch, CHUNK_BYTES // (padded[0] * padded[1] * itemsize)))
    return (ny, nx), tuple(sorted({size, batch % size} - {0}))


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


@torch.no_grad()
def _round_trips(padded: tuple[int, int], dtype: torch.dtype, device: torch.device,
                 pruned: tuple | None = None) -> bool:
    """Whether the forward transform :func:`propagate` runs conserves energy (Parseval) and its
    unnormalised inverse returns ``n`` times a random field, with exactly the calls (lengths,
    norms, batch sizes) that :func:`propagate` makes: ``fft2``/``ifft2`` of ``padded``, or for
    a ``pruned`` plan from :func:`_plan`, the 1-D transforms of :func:`_pruned` per chunk size.
    """
    (ny, nx), chunks = pruned or ((0, 0), ())
    g = torch.Generator(device=device).manual_seed(12345)  # never touches the global RNG
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    n = padded[0] * padded[1]
    tol = 1e-4 if dtype == torch.complex64 else 1e-10
    for k in chunks or (None,):
        shape = padded if k is None else (k, ny, nx)
        x = torch.complex(torch.randn(shape, generator=g, device=device, dtype=real),
                          torch.randn(shape, generator=g, device=device, dtype=real))
        if k is None:
            spectrum = torch.fft.fft2(x, s=padded)
            back = torch.fft.ifft2(spectrum, norm="forward")
        else:
            spectrum = torch.fft.fft(torch.fft.fft(x, n=padded[0], dim=-2), n=padded[1], dim=-1)
            rows = torch.fft.ifft(spectrum, dim=-1, norm="forward")[..., :nx]
            back = torch.fft.ifft(rows, dim=-2, norm="forward")[..., :ny, :]
        parseval = (spectrum.abs().square().sum() / (n * x.abs().square().sum())).item()
        err = ((back.div(n) - x).norm() / x.norm()).item()
        if not (math.isfinite(err) and err < tol and abs(parseval - 1) < tol):
            return False
    return True


def _fft_dtype(padded: tuple[int, int], dtype: torch.dtype, device: torch.device,
               pruned: tuple | None = None) -> torch.dtype:
    """The dtype to run :func:`propagate`'s FFTs in for this padded shape and ``pruned`` plan
    (from :func:`_plan`; None: batched ``fft2``): ``dtype`` itself, unless this platform's FFT
    fails the round trip there, then complex128.

    Checked once per (padded shape, dtype, device, thread count, plan). Torch 2.13/2.14 CPU
    builds (MKL) on AMD EPYC with 2 threads return a single complex64 ``ifft2`` of exactly
    2048² scaled by 1/2048² (see README, "Platform notes"); whichever size or call a library
    breaks next, the check catches it instead of returning a silently wrong field.

    Raises:
        FFTSelfCheckError: neither dtype round-trips.
    """
    key = (padded, dtype, str(device), torch.get_num_threads(), pruned)
    found = _fft_checked.get(key)
    if found is None:
        for candidate in dict.fromkeys((dtype, torch.complex128)):
            if _round_trips(padded, candidate, device, pruned):
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


_warned: set[tuple] = set()

#: energy fraction of a field's spectrum that may be lost to sampling before propagate() warns
LOSS_TOLERANCE = 0.01


@torch.no_grad()
def sampling_loss(field: Tensor, distance: float, *, grid: Grid, wavelength: float,
                  bandlimit: bool = True) -> tuple[float, float]:
    """What ``grid`` does to *this* field over ``distance``: the fraction of its propagating
    energy the band limit removes, and the fraction that walks further than the zero padding
    (wraps around), summed over every field of the batch. Evanescent energy is not counted.

    Returns:
        ``(band_limit_loss, wrap_loss)``, fractions in [0, 1].
    """
    _validate(grid, distance, wavelength)
    grid.check_field(field.shape)
    nyp, nxp = grid.padded().shape
    spectrum = torch.fft.fft2(field.detach().to(torch.complex128), s=(nyp, nxp))
    report = check_sampling(grid, distance, wavelength=wavelength, bandlimit=bandlimit)
    removed, lost = _losses(spectrum, report, grid=grid, distance=distance,
                            wavelength=wavelength, bandlimit=bandlimit)
    return removed, lost


def _losses(spectrum: Tensor, report: SamplingReport, *, grid: Grid, distance: float,
            wavelength: float, bandlimit: bool) -> tuple[float, float]:
    """Band-limit and wrap-around energy fractions of a padded spectrum (see
    :func:`sampling_loss`)."""
    nyp, nxp = spectrum.shape[-2:]
    pitch = grid.pitch
    power = (spectrum.abs() ** 2).reshape(-1, nyp, nxp).sum(0).to(torch.float64)
    total = power.sum().item()
    if total == 0:
        return 0.0, 0.0
    fy = torch.fft.fftfreq(nyp, d=pitch, dtype=torch.float64, device=power.device)
    fx = torch.fft.fftfreq(nxp, d=pitch, dtype=torch.float64, device=power.device)
    s2 = (wavelength**2) * (fy[:, None] ** 2 + fx[None, :] ** 2)
    propagating = s2 < 1
    z = abs(distance)
    keep = propagating
    removed = 0.0
    if bandlimit:
        keep = propagating & (fy.abs()[:, None] < _band_limit(nyp, pitch, wavelength, z)) & (
            fx.abs()[None, :] < _band_limit(nxp, pitch, wavelength, z))
        removed = power[propagating & ~keep].sum().item() / total
    lost = 0.0
    if report.margin > 0:
        walk = z * torch.sqrt(s2 / torch.clamp(1 - s2, min=1e-12))
        lost = power[keep & (walk > 2 * report.margin)].sum().item() / total
    return removed, lost


@torch.no_grad()
def _field_problems(spectrum: Tensor, report: SamplingReport, *, grid: Grid, distance: float,
                    wavelength: float, bandlimit: bool) -> list[str]:
    """What the grid does to *this* field: energy removed by the band limit (window too small
    for the distance) and energy that walks off further than the zero padding (wraps around).
    Evanescent energy is dropped by physics and not counted."""
    nyp, nxp = spectrum.shape[-2:]
    z = abs(distance)
    removed, lost = _losses(spectrum, report, grid=grid, distance=distance,
                            wavelength=wavelength, bandlimit=bandlimit)
    problems = []
    if bandlimit and removed > LOSS_TOLERANCE:
        problems.append(
            f"the band limit removed {100 * removed:.1f}% of the field's energy: the padded "
            f"window ({nxp}x{nyp} px at {grid.pitch:.4g} m) is too small for distance "
            f"{z:.4g} m; increase pad (now {grid.pad:g}) or reduce the distance"
        )
    elif not bandlimit and report.band_fraction < 1:
        problems.extend(p for p in report.problems if "aliased" in p)
    if lost > LOSS_TOLERANCE:
        problems.append(
            f"{100 * lost:.1f}% of the field's energy travels at angles that walk more than "
            f"twice the zero padding ({report.margin:.4g} m per side) over {z:.4g} m and "
            f"wraps around the window; increase pad (now {grid.pad:g})"
        )
    return problems


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
        grid: the field's sampling: ``shape == field.shape[-2:]``, pitch in metres, and
            ``pad``, the zero-padding factor per axis (2 doubles the window).
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
    key = (grid, float(wavelength), float(distance), bool(bandlimit))
    first = key not in _warned
    if first:
        report = check_sampling(grid, distance, wavelength=wavelength, bandlimit=bandlimit)
        if report.fatal:
            raise SamplingError(report.problems[0])
    nyp, nxp = grid.padded().shape
    pruned = _plan(tuple(field.shape), (nyp, nxp), field.element_size(), field.device)
    compute = _fft_dtype((nyp, nxp), field.dtype, field.device, pruned)
    if pruned and compute != field.dtype:
        # the fallback dtype has twice the bytes: chunk for it (and check that plan too)
        pruned = _plan(tuple(field.shape), (nyp, nxp), 16, field.device)
        compute = _fft_dtype((nyp, nxp), compute, field.device, pruned)
    # The inverse FFT's 1/(nyp nxp) lives in the cached transfer function, so the inverse runs
    # unnormalised (norm="forward"): one pass fewer, and it avoids the scaled complex64 inverse
    # that some MKL builds get wrong (see _fft_dtype).
    h = transfer_function((nyp, nxp), distance, pitch=grid.pitch, wavelength=wavelength,
                          bandlimit=bandlimit, device=field.device, dtype=compute,
                          scale=1.0 / (nyp * nxp))
    # fft2 with s= zero-pads at the end of each axis; for a linear convolution the position of
    # the padding does not matter, and cropping [:ny, :nx] recovers the original window.
    spectrum = None
    if first:
        spectrum = torch.fft.fft2(field.detach().to(compute), s=(nyp, nxp)) if pruned else \
            torch.fft.fft2(field.to(compute), s=(nyp, nxp))
        for problem in _field_problems(spectrum, report, grid=grid, distance=distance,
                                       wavelength=wavelength, bandlimit=bandlimit):
            warnings.warn(problem, SamplingWarning, stacklevel=2)
        _warned.add(key)
    if pruned:
        flat = field.reshape(-1, ny, nx).to(compute)
        parts = [_pruned(part, (nyp, nxp), h) for part in flat.split(max(pruned[1]))]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.reshape(field.shape).to(field.dtype)
    if spectrum is None:
        spectrum = torch.fft.fft2(field.to(compute), s=(nyp, nxp))
    # in place: fft2's backward does not need its output, so this saves an allocation
    out = torch.fft.ifft2(spectrum.mul_(h), norm="forward")
    if (nyp, nxp) != (ny, nx):
        out = out[..., :ny, :nx]
    return out.to(field.dtype)

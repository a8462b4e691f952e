"""Complex quantizers: joint codebook quantization and the baselines it is measured against.

A real metasurface offers a finite set of complex transmissions (one per meta-atom), not any
phase at amplitude 1. Rounding Re and Im apart, or amplitude and phase apart, breaks complex
multiplication; the joint quantizer maps each complex weight to the nearest codeword of a
2-D codebook by distance in the complex plane (Geng et al., "Ultra-efficient physical field
computing by complex-valued network quantization", Nat. Commun. 2026). During training a soft
assignment ``p_k = softmax_k(−T |w − c_k|²)`` (soft-to-hard vector quantization, Agustsson et
al., arXiv:1704.00648) hardens as ``T`` grows over the epochs, the complex analogue of PSQ
(QuATON, arXiv:2310.03049).

Raw parameters are real tensors ``(..., ny, nx, 2)`` holding (Re, Im); every quantizer here
has ``raw_kind == "complex"``. Pure functions do the work; the modules hold only schedule
state and, for a learned codebook, its parameters.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from ..errors import ConfigError
from .base import Quantizer
from .codebooks import LearnedCodebook, min_spacing, polar_codebook, table_codebook

__all__ = [
    "ComplexMethod",
    "Schedule",
    "ComplexQuantizer",
    "JointComplexQuantizer",
    "IndependentReImQuantizer",
    "IndependentAmpPhaseQuantizer",
    "raw_to_complex",
    "complex_to_raw",
    "clip_to_unit_disk",
    "squared_distances",
    "nearest_indices",
    "soft_assignment",
    "soft_quantize",
    "joint_temperature",
    "quantization_error",
]

ComplexMethod = Literal["joint", "joint-learned", "reim", "ampphase"]
Schedule = Literal["geometric", "linear", "fixed"]
InitKind = Literal["phase", "codewords"]

#: Pixels per chunk (times codebook size) when computing hard indices, to bound memory.
_CHUNK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------- pure functions
def raw_to_complex(raw: Tensor) -> Tensor:
    """Real ``(..., 2)`` (Re, Im) → complex ``(...)`` (complex64 for float32, keeps grad)."""
    if raw.shape[-1:] != (2,) or raw.is_complex():
        raise ValueError(
            f"raw: complex quantizers take a real tensor (..., 2) of (Re, Im), got "
            f"{tuple(raw.shape)} {raw.dtype}"
        )
    return torch.complex(raw[..., 0], raw[..., 1])


def complex_to_raw(w: Tensor) -> Tensor:
    """Complex ``(...)`` → real ``(..., 2)`` (Re, Im); the inverse of :func:`raw_to_complex`."""
    if not w.is_complex():
        w = w.to(torch.complex64 if w.dtype != torch.float64 else torch.complex128)
    return torch.stack((w.real, w.imag), dim=-1)


def clip_to_unit_disk(w: Tensor) -> Tensor:
    """Radial clip ``w / max(1, |w|)``: passive, identity inside the disk, no NaN gradient at 0.

    Args:
        w: complex ``(...)``.
    """
    r2 = w.real**2 + w.imag**2
    return w * torch.rsqrt(torch.clamp(r2, min=1.0))


def squared_distances(w: Tensor, codebook: Tensor) -> Tensor:
    """``|w − c_k|²`` in the complex plane.

    Args:
        w: complex ``(...)``.
        codebook: complex ``(L,)``.

    Returns:
        real ``(..., L)``.
    """
    c = codebook.to(device=w.device, dtype=w.dtype)
    dre = w.real.unsqueeze(-1) - c.real
    dim = w.imag.unsqueeze(-1) - c.imag
    return dre * dre + dim * dim


def nearest_indices(w: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codeword (complex-plane distance) of every element.

    Ties go to the lowest index. Computed in chunks without grad, so a large layer does not
    materialise a full ``(ny, nx, L)`` distance tensor.

    Args:
        w: complex ``(...)``.
        codebook: complex ``(L,)``.

    Returns:
        int64 ``(...)``.
    """
    with torch.no_grad():
        flat = w.reshape(-1)
        L = int(codebook.shape[0])
        step = max(1, _CHUNK_ELEMENTS // max(L, 1))
        out = torch.empty(flat.shape, dtype=torch.int64, device=w.device)
        for s in range(0, flat.shape[0], step):
            out[s : s + step] = torch.argmin(squared_distances(flat[s : s + step], codebook), -1)
        return out.reshape(w.shape)


def soft_assignment(w: Tensor, codebook: Tensor, temperature: float | Tensor) -> Tensor:
    """``p_k = softmax_k(−T |w − c_k|²)``.

    Args:
        w: complex ``(...)``.
        codebook: complex ``(L,)``.
        temperature: ``T`` in 1/|t|² (absolute, not relative to the codebook spacing).

    Returns:
        real ``(..., L)``, summing to 1 over the last axis.
    """
    return torch.softmax(-temperature * squared_distances(w, codebook), dim=-1)


def soft_quantize(w: Tensor, codebook: Tensor, temperature: float | Tensor) -> Tensor:
    """``Σ_k p_k c_k`` with :func:`soft_assignment`; differentiable in ``w`` and ``codebook``.

    Args:
        w: complex ``(...)``.
        codebook: complex ``(L,)``.
        temperature: ``T`` in 1/|t|².

    Returns:
        complex ``(...)``, same dtype as ``w``.
    """
    p = soft_assignment(w, codebook, temperature)
    c = codebook.to(device=w.device, dtype=w.dtype)
    return torch.complex(p @ c.real, p @ c.imag)


def joint_temperature(
    epoch: int, n_epochs: int, *, t_start: float, t_end: float, schedule: Schedule,
    warmup_epochs: int = 0,
) -> float | None:
    """Relative temperature of the joint quantizer at ``epoch`` (0-based) of ``n_epochs``.

    The first ``warmup_epochs`` epochs are full precision (returns ``None``). The remaining
    ``n_q = n_epochs − warmup_epochs`` epochs go from ``t_start`` (first) to ``t_end`` (last):
    ``geometric`` ``t_start·(t_end/t_start)^s``, ``linear`` ``t_start + (t_end − t_start)·s``,
    with ``s = (epoch − warmup) / (n_q − 1)`` clipped to [0, 1] (``s = 1`` when ``n_q == 1``);
    ``fixed`` is ``t_end`` throughout. A pure function, so a resumed run is exact.
    """
    if n_epochs < 1 or epoch < 0:
        raise ValueError(f"epoch/n_epochs: need 0 <= epoch and n_epochs >= 1, got {epoch}, "
                         f"{n_epochs}")
    if epoch < warmup_epochs:
        return None
    if schedule == "fixed":
        return float(t_end)
    n_q = n_epochs - warmup_epochs
    s = 1.0 if n_q <= 1 else min(1.0, max(0.0, (epoch - warmup_epochs) / (n_q - 1)))
    if schedule == "geometric":
        return float(t_start * (t_end / t_start) ** s)
    return float(t_start + (t_end - t_start) * s)


def quantization_error(w: Tensor | ArrayLike, quantizer: Quantizer) -> float:
    """Mean ``|hard(w) − w|²`` of complex weights ``w`` under a complex quantizer.

    Args:
        w: complex ``(...)`` weights (tensor or array); float64 precision is used.
        quantizer: a quantizer with ``raw_kind == "complex"``.
    """
    if quantizer.raw_kind != "complex":
        raise ValueError(f"quantizer: {type(quantizer).__name__} is not a complex quantizer")
    wt = torch.as_tensor(np.asarray(w) if not isinstance(w, Tensor) else w)
    wt = wt.detach().to(torch.complex128)
    with torch.no_grad():
        q = quantizer.hard(complex_to_raw(wt)).to(torch.complex128)
    return float(torch.mean(torch.abs(q - wt) ** 2))


# ---------------------------------------------------------------------------- quantizers
class ComplexQuantizer(Quantizer):
    """Shared behaviour of the complex quantizers (raw ``(..., ny, nx, 2)``, (Re, Im)).

    ``init_raw`` draws uniform random phases at amplitude ``init_amplitude`` (0.9: inside the
    disk, away from the |t| = 1 edge where clipping kills radial gradients); ``prepare``
    clips raw values into the unit disk; ``hard`` returns the complex dtype of ``raw``.
    """

    raw_kind = "complex"
    init_amplitude: float = 0.9

    def hard(self, raw: Tensor) -> Tensor:
        idx = self.indices(raw)
        t = self.table().detach().to(device=idx.device, dtype=_complex_dtype(raw))
        return t[idx]

    def init_raw(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        phase = torch.rand(shape, generator=generator, dtype=dtype) * (2 * torch.pi)
        a = self.init_amplitude
        return torch.stack((a * torch.cos(phase), a * torch.sin(phase)), dim=-1)

    def prepare(self, raw: Tensor) -> Tensor:
        return complex_to_raw(clip_to_unit_disk(raw_to_complex(raw)))


class JointComplexQuantizer(ComplexQuantizer):
    """Nearest-codeword quantization in the complex plane, trained with a hardening soft assignment.

    Training path (``forward``), per the schedule set by :meth:`set_progress`:

    * warm-up epochs: full precision, ``w`` clipped to ``|w| <= 1``;
    * then ``Σ_k p_k c_k`` with ``p_k = softmax_k(−T |w − c_k|²)``, ``T = t_rel / d_min²``
      where ``d_min`` is the smallest spacing of the initial codebook and ``t_rel`` follows
      :func:`joint_temperature`. At ``t_rel`` the logit gap between a codeword and its nearest
      neighbour, seen from the codeword, is ``t_rel``; so the defaults (2 → 200, geometric)
      start soft across neighbours and end hard except within ~d_min/200 of a decision
      boundary, for any codebook;
    * ``straight_through=True``: the forward value is the hard codeword and the gradient that
      of the soft assignment.

    Before the first ``set_progress`` call the quantizer behaves as at the first QAT epoch
    (``t_rel = t_start``, no warm-up). ``hard``/``indices`` always take the nearest codeword.

    Args:
        codebook: complex ``(L,)`` codebook (validated by :func:`table_codebook`), or a
            :class:`LearnedCodebook` whose points are trained with the layer.
        t_start: relative temperature at the first QAT epoch, > 0.
        t_end: relative temperature at the last epoch, > 0.
        schedule: ``"geometric"`` (default), ``"linear"`` or ``"fixed"`` (``t_end`` always).
        warmup_epochs: full-precision epochs before QAT, >= 0.
        straight_through: hard forward value with the soft assignment's gradient.
        init: ``init_raw`` draws ``"phase"`` (random phase at amplitude 0.9) or
            ``"codewords"`` (uniformly random codewords).
    """

    def __init__(
        self, codebook: ArrayLike | Tensor | LearnedCodebook, *, t_start: float = 2.0,
        t_end: float = 200.0, schedule: Schedule = "geometric", warmup_epochs: int = 0,
        straight_through: bool = False, init: InitKind = "phase",
    ) -> None:
        super().__init__()
        for name, v in (("t_start", t_start), ("t_end", t_end)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name}: relative temperature must be a number > 0, got {v!r}")
        if schedule not in get_args(Schedule):
            raise ConfigError(f"schedule: unknown schedule {schedule!r} (allowed: "
                              f"{', '.join(get_args(Schedule))})")
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) \
                or warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs: must be an integer >= 0, got {warmup_epochs!r}")
        if init not in get_args(InitKind):
            raise ConfigError(f"init: unknown init {init!r} (allowed: phase, codewords)")
        self.learned: LearnedCodebook | None
        if isinstance(codebook, LearnedCodebook):
            self.learned = codebook
            initial = codebook().detach().to(torch.complex128).cpu().numpy()
        else:
            self.learned = None
            initial = table_codebook(codebook)
            _register_table(self, "_codebook", initial)
        self.spacing = min_spacing(initial)
        self.t_start = float(t_start)
        self.t_end = float(t_end)
        self.schedule: Schedule = schedule
        self.warmup_epochs = int(warmup_epochs)
        self.straight_through = bool(straight_through)
        self.init = init
        self._t_rel: float | None = self.t_start

    # -- schedule
    def set_progress(self, epoch: int, n_epochs: int) -> None:
        self._t_rel = joint_temperature(
            epoch, n_epochs, t_start=self.t_start, t_end=self.t_end, schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
        )

    @property
    def full_precision(self) -> bool:
        """True during warm-up (forward is the clipped raw weight)."""
        return self._t_rel is None

    @property
    def temperature(self) -> float | None:
        """Absolute temperature ``T`` (1/|t|²) now, ``None`` during warm-up."""
        return None if self._t_rel is None else self._t_rel / self.spacing**2

    # -- tables and paths
    def table(self) -> Tensor:
        if self.learned is not None:
            return self.learned()
        return torch.complex(self._codebook[:, 0], self._codebook[:, 1])

    def forward(self, raw: Tensor) -> Tensor:
        w = raw_to_complex(raw)
        if self.full_precision:
            return clip_to_unit_disk(w)
        c = self.table()
        soft = soft_quantize(w, c, self.temperature)
        if not self.straight_through:
            return soft
        hard = c.detach().to(device=w.device, dtype=w.dtype)[nearest_indices(w, c)]
        return hard + (soft - soft.detach())

    def indices(self, raw: Tensor) -> Tensor:
        return nearest_indices(raw_to_complex(raw).detach(), self.table().detach())

    def init_raw(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        if self.init == "phase":
            return super().init_raw(shape, generator=generator, dtype=dtype)
        table = self.table().detach().cpu()
        idx = torch.randint(0, table.shape[0], shape, generator=generator)
        return complex_to_raw(table[idx]).to(dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "method": "joint-learned" if self.learned is not None else "joint",
            "n_levels": self.n_levels,
            "min_spacing": self.spacing,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "schedule": self.schedule,
            "warmup_epochs": self.warmup_epochs,
            "straight_through": self.straight_through,
            "squash": self.learned.squash if self.learned is not None else None,
            "temperature_rel": self._t_rel,
        }


def _uniform_levels(n: int, extent: float) -> np.ndarray:
    return np.linspace(-extent, extent, n) if n > 1 else np.zeros(1)


def _round_to_levels(x: Tensor, lo: float, hi: float, n: int) -> Tensor:
    """Index of the nearest of ``n`` uniform levels on [lo, hi] (int64, clamped)."""
    if n == 1:
        return torch.zeros(x.shape, dtype=torch.int64, device=x.device)
    idx = torch.round((x.detach() - lo) / (hi - lo) * (n - 1))
    return torch.clamp(idx, 0, n - 1).to(torch.int64)


def _ste(x: Tensor, q: Tensor) -> Tensor:
    """Straight-through estimator (Bengio et al., arXiv:1308.3432): value q, gradient of x."""
    return x + (q - x).detach()


class IndependentReImQuantizer(ComplexQuantizer):
    """Baseline: Re and Im each rounded to a uniform grid on [−extent, extent], independently.

    ``bits`` are split as ``ceil(bits/2)`` for Re and ``floor(bits/2)`` for Im, so the table —
    the Cartesian product, index ``i_re * n_im + i_im`` — has exactly ``2**bits`` codewords
    (a single level is 0). Forward is the clipped straight-through estimator. For a Cartesian
    lattice this *is* the nearest codeword; what it cannot do is use a non-separable codebook.
    With the default ``extent = 1`` the corner codewords have ``|t|`` up to √2, which no
    passive element makes (the baseline as usually stated); ``extent = 1/√2`` keeps the
    whole lattice passive.

    Args:
        bits: total bits per pixel, >= 1.
        extent: half-width of the grid on each axis, > 0.
    """

    def __init__(self, bits: int = 4, *, extent: float = 1.0) -> None:
        super().__init__()
        bits = _int_option(bits, "bits", 1)
        if not (isinstance(extent, (int, float)) and math.isfinite(extent) and extent > 0):
            raise ConfigError(f"extent: must be a number > 0, got {extent!r}")
        self.bits = bits
        self.extent = float(extent)
        self.n_re = 2 ** ((bits + 1) // 2)
        self.n_im = 2 ** (bits // 2)
        re = _uniform_levels(self.n_re, self.extent)
        im = _uniform_levels(self.n_im, self.extent)
        self.register_buffer("_re_levels", torch.from_numpy(re), persistent=False)
        self.register_buffer("_im_levels", torch.from_numpy(im), persistent=False)
        _register_table(self, "_table", (re[:, None] + 1j * im[None, :]).ravel())

    def table(self) -> Tensor:
        return torch.complex(self._table[:, 0], self._table[:, 1])

    def _axis_indices(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        e = self.extent
        return (_round_to_levels(raw[..., 0], -e, e, self.n_re),
                _round_to_levels(raw[..., 1], -e, e, self.n_im))

    def indices(self, raw: Tensor) -> Tensor:
        raw_to_complex(raw)  # shape check
        i_re, i_im = self._axis_indices(raw)
        return i_re * self.n_im + i_im

    def forward(self, raw: Tensor) -> Tensor:
        raw_to_complex(raw)
        i_re, i_im = self._axis_indices(raw)
        e = self.extent
        x = torch.clamp(raw, -e, e)
        q_re = self._re_levels.to(device=raw.device, dtype=raw.dtype)[i_re]
        q_im = self._im_levels.to(device=raw.device, dtype=raw.dtype)[i_im]
        return torch.complex(_ste(x[..., 0], q_re), _ste(x[..., 1], q_im))

    def describe(self) -> dict[str, Any]:
        return {"method": "reim", "bits": self.bits, "n_levels": self.n_levels,
                "n_re": self.n_re, "n_im": self.n_im, "extent": self.extent}


class IndependentAmpPhaseQuantizer(ComplexQuantizer):
    """Baseline: amplitude and phase rounded separately (straight-through estimator).

    Amplitude: ``2**amp_bits`` uniform levels ``linspace(min_amplitude, 1, ·)`` (just 1.0 for
    ``amp_bits == 0``, i.e. a phase-only quantizer); phase: ``2**phase_bits`` levels
    ``2πp/P``, wrap-aware. The table is :func:`polar_codebook` (index ``a * P + p``). Rounding
    |w| and arg w apart is *not* the nearest codeword in the complex plane: near the middle
    between two rings, the other ring's codeword can be closer.

    Args:
        amp_bits: amplitude bits, >= 0.
        phase_bits: phase bits, >= 1.
        min_amplitude: smallest amplitude level in (0, 1); default ``1 / 2**amp_bits``.
    """

    def __init__(self, amp_bits: int = 2, phase_bits: int = 2, *,
                 min_amplitude: float | None = None) -> None:
        super().__init__()
        amp_bits = _int_option(amp_bits, "amp_bits", 0)
        phase_bits = _int_option(phase_bits, "phase_bits", 1)
        self.amp_bits, self.phase_bits = amp_bits, phase_bits
        self.n_amp, self.n_phase = 2**amp_bits, 2**phase_bits
        if min_amplitude is None:
            min_amplitude = 1.0 / self.n_amp
        if self.n_amp > 1 and not (isinstance(min_amplitude, (int, float))
                                   and 0 < min_amplitude < 1):
            raise ConfigError(f"min_amplitude: must lie in (0, 1), got {min_amplitude!r}")
        self.min_amplitude = float(min_amplitude) if self.n_amp > 1 else 1.0
        amps = np.linspace(self.min_amplitude, 1.0, self.n_amp) if self.n_amp > 1 else np.ones(1)
        self.register_buffer("_amp_levels", torch.from_numpy(amps), persistent=False)
        _register_table(self, "_table", polar_codebook(self.n_amp, self.n_phase,
                                                       min_amplitude=self.min_amplitude))

    def table(self) -> Tensor:
        return torch.complex(self._table[:, 0], self._table[:, 1])

    def _polar(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        re, im = raw[..., 0], raw[..., 1]
        r2 = re * re + im * im
        zero = r2 == 0
        # No NaN gradients at the origin: amplitude via a clamped sqrt, angle of (1, 0) there.
        amp = torch.sqrt(torch.clamp(r2, min=1e-30))
        phase = torch.atan2(torch.where(zero, torch.zeros_like(im), im),
                            torch.where(zero, torch.ones_like(re), re))
        i_a = _round_to_levels(amp, self.min_amplitude, 1.0, self.n_amp)
        step = 2 * math.pi / self.n_phase
        i_p = torch.remainder(torch.round(phase.detach() / step), self.n_phase).to(torch.int64)
        return amp, phase, i_a, i_p

    def indices(self, raw: Tensor) -> Tensor:
        raw_to_complex(raw)
        _, _, i_a, i_p = self._polar(raw)
        return i_a * self.n_phase + i_p

    def forward(self, raw: Tensor) -> Tensor:
        raw_to_complex(raw)
        amp, phase, i_a, i_p = self._polar(raw)
        q_a = self._amp_levels.to(device=raw.device, dtype=raw.dtype)[i_a]
        a = _ste(torch.clamp(amp, self.min_amplitude, 1.0), q_a)
        ph = _ste(phase, i_p.to(raw.dtype) * (2 * math.pi / self.n_phase))
        return torch.complex(a * torch.cos(ph), a * torch.sin(ph))

    def describe(self) -> dict[str, Any]:
        return {"method": "ampphase", "amp_bits": self.amp_bits, "phase_bits": self.phase_bits,
                "n_levels": self.n_levels, "min_amplitude": self.min_amplitude}


# ---------------------------------------------------------------------------- constructor
def complex_quantizer(
    method: ComplexMethod, codebook: ArrayLike | Tensor | None = None, **options: Any
) -> ComplexQuantizer:
    """The complex family's constructor behind
    :func:`optodesign.quantize.registry.build_quantizer`, which checks the method, its options
    and the codebook first: call that.

    Args:
        method: ``"joint"`` (fixed codebook), ``"joint-learned"`` (its points become a
            :class:`LearnedCodebook`; extra option ``squash``), ``"reim"`` or ``"ampphase"``
            (these build their own tables).
        codebook: complex ``(L,)`` for the joint methods.
        **options: keyword options of the chosen class (see each class).
    """
    if method == "joint-learned":
        squash = options.pop("squash", "clip")
        return JointComplexQuantizer(LearnedCodebook(codebook, squash=squash), **options)
    if method == "joint":
        return JointComplexQuantizer(codebook, **options)
    cls = IndependentReImQuantizer if method == "reim" else IndependentAmpPhaseQuantizer
    return cls(**options)


def _int_option(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{field}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _register_table(module: torch.nn.Module, name: str, table: np.ndarray) -> None:
    """Store a complex table as a real ``(L, 2)`` buffer: ``module.to(float32)`` would drop
    the imaginary part of a complex buffer. Not persistent: it is rebuilt from the options."""
    pts = np.stack((table.real, table.imag), axis=-1).astype(np.float64)
    module.register_buffer(name, torch.from_numpy(pts), persistent=False)


def _complex_dtype(raw: Tensor) -> torch.dtype:
    return torch.complex128 if raw.dtype == torch.float64 else torch.complex64

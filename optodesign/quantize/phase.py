"""Phase quantizers for phase-only layers: PSQ (FT / LI / LT) and the PQ, STE, GS, DSQ baselines.

Every quantizer here takes a real phase map ``raw`` (radians, any range; ``(..., ny, nx)``),
owns a phase table ``φ`` (``(L,)``, sorted, in ``[0, 2π)``, see :mod:`.levels`) and

* ``forward(raw)`` returns the training-path complex transmission (unit modulus except GS);
* ``indices(raw)`` returns the wrap-aware nearest level (identical for all methods here, so
  the hard model does not depend on which method trained it);
* ``hard(raw)`` = ``table()[indices(raw)]`` is what evaluation and export use.

Temperatures act on phases in radians, so ``T`` is in 1/rad and ``τ`` (Gumbel-softmax) in rad.
Defaults are expressed through the smallest level gap ``Δ`` of the table (``Δ = 2π/L`` for
uniform tables) so that the same default means the same sharpness for any ``L``; the
resolved absolute values are reported by ``describe()``.

Schedules depend only on ``(epoch, n_epochs)`` given to ``set_progress``: with warm-up
``w`` and ``p = clip((epoch − w) / max(1, n_epochs − w − 1), 0, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Quantizer
from .levels import (
    TWO_PI,
    explicit_levels,
    level_gaps,
    level_midpoints,
    nearest_level,
    uniform_levels,
    unwrap_from,
)

__all__ = [
    "PhaseQuantizer",
    "PostTrainingQuantizer",
    "STEQuantizer",
    "GumbelSoftmaxQuantizer",
    "DSQQuantizer",
    "PSQQuantizer",
]

#: PSQ-FT's default temperature, 1/rad, for every table (see :class:`PSQQuantizer` and
#: docs/quantizers.md: the one default that is not a multiple of ``1/Δ``).
FT_T = 12.0


def _phase(q: Tensor) -> Tensor:
    """Unit-modulus transmission ``exp(i q)`` (complex64 for float32 ``q``)."""
    return torch.polar(torch.ones_like(q), q)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value > 0
    ):
        raise ConfigError(f"{name}: must be a number > 0, got {value!r}")
    return float(value)


def _count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


class PhaseQuantizer(Quantizer):
    """Common part: the phase table, wrap-aware ``indices``, ``table``, schedule progress.

    Args:
        phases: ``(L,)`` phase table in radians (validated), or an int ``L`` for uniform levels.
    """

    raw_kind = "phase"
    method: str = "phase"

    def __init__(self, phases: np.ndarray | Sequence[float] | int) -> None:
        super().__init__()
        if isinstance(phases, (int, np.integer)) and not isinstance(phases, bool):
            ph = uniform_levels(int(phases))
        else:
            ph = explicit_levels(phases)
        self.register_buffer("phases", torch.as_tensor(ph, dtype=torch.float64))
        self._phases_np = ph
        self._gaps = level_gaps(ph)
        self._mids = level_midpoints(ph)
        #: smallest circular level gap Δ (radians); sets the default temperature scales.
        self.delta = float(self._gaps.min())
        self.epoch, self.n_epochs = 0, 1

    def table(self) -> Tensor:
        return _phase(self.phases)

    def indices(self, raw: Tensor) -> Tensor:
        return nearest_level(raw, self.phases)

    def hard(self, raw: Tensor) -> Tensor:
        """``table()[indices(raw)]``, complex64 for float32 ``raw`` (complex128 for float64)."""
        return _phase(self.hard_phase(raw))

    def hard_phase(self, raw: Tensor) -> Tensor:
        """Phase of the nearest level, radians, ``raw``'s shape and dtype (no gradient)."""
        return self.phases.to(device=raw.device, dtype=raw.dtype)[self.indices(raw)]

    def set_progress(self, epoch: int, n_epochs: int) -> None:
        self.epoch = _count("epoch", epoch, 0)
        self.n_epochs = _count("n_epochs", n_epochs, 1)

    def _progress(self, warmup: int = 0) -> float:
        span = max(1, self.n_epochs - warmup - 1)
        return min(1.0, max(0.0, (self.epoch - warmup) / span))

    def _options(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        """``{"method", "phases", **options}`` (PSQ-LT adds ``learned_t``):
        ``build_quantizer(method, phases=phases, options=options)`` rebuilds it."""
        return {"method": self.method, "phases": [float(p) for p in self._phases_np],
                **self._options()}


class PostTrainingQuantizer(PhaseQuantizer):
    """PQ: train in full precision (``forward = exp(i·raw)``), quantize to the nearest level after.

    A PQ model's training path *is* the FP32 model; ``hard`` gives the post-training-quantized
    one. Also used for method ``"fp32"``.
    """

    method = "pq"

    def forward(self, raw: Tensor) -> Tensor:
        return _phase(raw)


class STEQuantizer(PhaseQuantizer):
    """Hard quantization with the straight-through estimator.

    Value: the nearest level's phase; gradient w.r.t. ``raw``: identity.
    Bengio, Léonard & Courville, arXiv:1308.3432.
    """

    method = "ste"

    def forward(self, raw: Tensor) -> Tensor:
        return _phase(raw + (self.hard_phase(raw) - raw).detach())


class GumbelSoftmaxQuantizer(PhaseQuantizer):
    """Gumbel-softmax over the levels (Jang, Gu & Poole, arXiv:1611.01144).

    Logits ``ℓ_k = −d(x, φ_k)/τ`` with ``d`` the circular distance (radians) and ``τ`` (radians)
    annealed geometrically from ``tau_start`` to ``tau_end``. Training mode draws Gumbel noise
    ``g_k`` from torch's global RNG and uses ``p = softmax(ℓ + g)``; eval mode uses
    ``softmax(ℓ)`` (deterministic). The output mixes *transmissions*, ``Σ_k p_k t_k`` (wrap-safe,
    no phase averaging across 2π; the modulus dips below 1 while ``p`` is soft).

    Args:
        phases: phase table or number of levels.
        tau_start: initial τ in radians (default ``Δ``: neighbouring levels differ by one
            logit unit, so the noise explores).
        tau_end: final τ in radians (default ``Δ/50``: essentially the nearest level).
    """

    method = "gs"

    def __init__(self, phases: np.ndarray | Sequence[float] | int, *,
                 tau_start: float | None = None, tau_end: float | None = None) -> None:
        super().__init__(phases)
        self.tau_start = _positive("gs_tau_start", self.delta if tau_start is None else tau_start)
        self.tau_end = _positive("gs_tau_end", self.delta / 50 if tau_end is None else tau_end)

    @property
    def tau(self) -> float:
        return self.tau_start * (self.tau_end / self.tau_start) ** self._progress()

    def forward(self, raw: Tensor) -> Tensor:
        ph = self.phases.to(device=raw.device, dtype=raw.dtype)
        u = torch.remainder(raw, TWO_PI).unsqueeze(-1)
        # circular distance for u, φ in [0, 2π): π − |π − |u − φ||, logits = −d/τ
        logits = (torch.abs(math.pi - torch.abs(u - ph)) - math.pi) / self.tau
        if self.training:
            g = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
            logits = logits - torch.log(-torch.log(g))
        p = torch.softmax(logits, dim=-1)
        return torch.complex(p @ torch.cos(ph), p @ torch.sin(ph))

    def _options(self) -> dict[str, Any]:
        return {"gs_tau_start": self.tau_start, "gs_tau_end": self.tau_end}


class DSQQuantizer(PhaseQuantizer):
    """Differentiable soft quantization (Gong et al., ICCV 2019, arXiv:1908.05033), on a circle.

    In interval ``i`` (``φ_i <= u < φ_{i+1}``, the last one running to ``φ_0 + 2π`` ≡ level 0)
    with gap ``g_i`` and midpoint ``m_i``::

        k_i = ln(2/α − 1) / g_i,   s = 1 / tanh(k_i g_i / 2) = 1 / (1 − α)
        soft(u) = φ_i + g_i · (1 + s · tanh(k_i (u − m_i))) / 2

    which runs from ``φ_i`` to ``φ_{i+1}`` with a step at ``m_i``; ``α ∈ (0, 1)`` is annealed
    linearly from ``alpha_start`` to ``alpha_end`` (smaller = sharper). As in the paper the
    forward value is the hard level (``sgn`` of the soft step) and the backward pass uses the
    soft step's derivative; ``hard_forward=False`` returns the soft staircase itself.

    Args:
        phases: phase table or number of levels.
        alpha_start: initial α (default 0.2, the paper's initial value).
        alpha_end: final α (default 0.01).
        hard_forward: forward hard value with the DSQ gradient (default, the paper) or soft.
    """

    method = "dsq"

    def __init__(self, phases: np.ndarray | Sequence[float] | int, *,
                 alpha_start: float = 0.2, alpha_end: float = 0.01,
                 hard_forward: bool = True) -> None:
        super().__init__(phases)
        for name, a in (("dsq_alpha_start", alpha_start), ("dsq_alpha_end", alpha_end)):
            if not (_positive(name, a) < 1):
                raise ConfigError(f"{name}: must lie in (0, 1), got {a!r}")
        self.alpha_start, self.alpha_end = float(alpha_start), float(alpha_end)
        self.hard_forward = bool(hard_forward)

    @property
    def alpha(self) -> float:
        p = self._progress()
        return self.alpha_start + (self.alpha_end - self.alpha_start) * p

    def soft_phase(self, raw: Tensor) -> Tensor:
        """The DSQ soft staircase, radians, in ``[φ_0, φ_0 + 2π]``."""
        kw = {"device": raw.device, "dtype": raw.dtype}
        ph = self.phases.to(**kw)
        gaps = torch.as_tensor(self._gaps, **kw)
        mids = torch.as_tensor(self._mids, **kw)
        u = unwrap_from(raw, float(self._phases_np[0]))
        i = (torch.searchsorted(ph, u.detach().contiguous(), right=True) - 1).clamp_(0)
        g, m = gaps[i], mids[i]
        a = self.alpha
        k = math.log(2 / a - 1) / g
        return ph[i] + g * (1 + torch.tanh(k * (u - m)) / (1 - a)) / 2

    def forward(self, raw: Tensor) -> Tensor:
        soft = self.soft_phase(raw)
        if not self.hard_forward:
            return _phase(soft)
        return _phase(soft + (self.hard_phase(raw) - soft).detach())

    def _options(self) -> dict[str, Any]:
        return {"dsq_alpha_start": self.alpha_start, "dsq_alpha_end": self.alpha_end,
                "dsq_hard_forward": self.hard_forward}


class PSQQuantizer(PhaseQuantizer):
    """Progressive sigmoid quantization (QuATON, Kariyawasam et al., arXiv:2310.03049).

    Soft staircase of sigmoids, one step per circular gap, generalised to non-uniform tables
    and made periodic. With ``u = φ_0 + ((x − φ_0) mod 2π)`` and the steps of the neighbouring
    periods included::

        Q_T(u) = φ_0 + Σ_{n=-N}^{N} Σ_{i=0}^{L-1} g_i [σ(T (u − m_i − 2πn)) − [n < 0]]

    where only steps within ``16/T`` of the window ``[φ_0, φ_0 + 2π]`` are evaluated (each
    dropped term is below ``g·e^{-16}`` ≈ 1e-7·g, under float32 resolution), so ``exp(i Q_T)``
    is 2π-periodic and continuous across the cut to ~1e-6 at any temperature. For a uniform
    table the ``n = 0`` terms are QuATON's ``l + Σ_{i=0}^{L-2} Δ σ(T(x − l − Δ/2 − iΔ))``
    plus the wrap step from the top level up to ``2π`` (≡ level 0). As ``T → ∞``, ``Q_T`` →
    the nearest level; at a sharp temperature only the ``L`` steps of the window (and a
    neighbour or two) are evaluated.
    The forward pass is the soft staircase (no STE); hard levels only for evaluation/export.

    Temperature ``T`` (1/rad) schedules. ``T·Δ`` is the sharpness (a step is ``≈ 4/T`` wide,
    against the level gap ``Δ``); ``4/T`` is also the step width in raw phase, which the
    optimizer crosses in steps of about its learning rate (radians):

    * ``"ft"``: fixed ``T = t`` (default ``12`` rad⁻¹ whatever ``Δ`` is: steps ≈ 0.33 rad
      wide, about 7 Adam steps at lr 0.05; ``T·Δ`` = 38, 19, 4.7 for L = 2, 4, 16).
    * ``"li"``: after ``warmup_epochs`` of full precision (forward ``exp(i·raw)``), ``T`` rises
      linearly per epoch from ``t_start`` (default ``2/Δ``) to ``t_end`` (default ``64/Δ``).
    * ``"lt"``: learnable ``T = 1/(Δ·|k| + ε)``; ``k`` is an ``nn.Parameter`` measured in level
      gaps (dimensionless, so one optimizer step moves the sharpness alike for every ``L``),
      initialised so that ``T = t_start`` (default ``2/Δ``, ``k = 0.499``); ``ε = lt_eps``
      (default ``Δ/1000``, so ``T <= 1000/Δ``). The regulariser ``½ λ(p) k²`` pulls ``k → 0``
      (``T`` up) with a weight rising geometrically with the schedule progress,
      ``λ(p) = lt_lambda · (lt_lambda_end / lt_lambda)^p`` (defaults 1e-3 → 1e4), so the last
      epoch trains at ``λ = lt_lambda_end``. The task pushes ``k`` the other way with a
      gradient of about ``a/k`` (``a = |∂L/∂ log T|`` ≈ 0.01–0.03 on the MNIST benchmark), so
      ``k`` settles near ``√(a/λ)``: ``T·Δ`` ≈ 2, 10, 100, 500 over a 4-epoch run.

    ``T·Δ = 50`` leaves a level within ``Δ·σ(−25) ≈ 1e-11 Δ`` of its hard value and every
    point more than ``Δ/10`` from a decision boundary within ``Δ·σ(−5) ≈ 0.007 Δ``; the
    soft and hard *models* agree only once the steps are also narrower than what the
    optimizer can park a pixel on (``T·Δ`` in the hundreds at L = 2), hence LT's ``ε``.
    ``T·Δ = 2`` is a smooth ramp with a visible staircase. docs/quantizers.md gives the
    measurements behind every default.
    """

    def __init__(self, phases: np.ndarray | Sequence[float] | int, *,
                 schedule: Literal["ft", "li", "lt"] = "li",
                 t: float | None = None, t_start: float | None = None,
                 t_end: float | None = None, warmup_epochs: int = 0,
                 lt_lambda: float = 1e-3, lt_lambda_end: float = 1e4,
                 lt_eps: float | None = None) -> None:
        super().__init__(phases)
        if schedule not in ("ft", "li", "lt"):
            raise ConfigError(f"schedule: unknown PSQ schedule {schedule!r} (allowed: ft, li, lt)")
        self.schedule = schedule
        self.method = f"psq-{schedule}"
        d = self.delta
        self.warmup_epochs = _count("warmup_epochs", warmup_epochs, 0)
        self.t = _positive("t", FT_T if t is None else t)
        self.t_start = _positive("t_start", 2 / d if t_start is None else t_start)
        self.t_end = _positive("t_end", 64 / d if t_end is None else t_end)
        self.lt_lambda = _positive("lt_lambda", lt_lambda)
        self.lt_lambda_end = _positive("lt_lambda_end", lt_lambda_end)
        if self.lt_lambda_end < self.lt_lambda:
            raise ConfigError(f"lt_lambda_end: must be >= lt_lambda = {self.lt_lambda:g} so the "
                              f"regulariser grows, got {lt_lambda_end}")
        self.lt_eps = _positive("lt_eps", d / 1000 if lt_eps is None else lt_eps)
        if schedule == "lt":
            if 1 / self.t_start <= self.lt_eps:
                raise ConfigError(
                    f"t_start: must be < 1/lt_eps = {1 / self.lt_eps:.6g} 1/rad, got {self.t_start}"
                )
            self.k = nn.Parameter(torch.tensor((1 / self.t_start - self.lt_eps) / d))

    # ---------------------------------------------------------------- schedule state
    @property
    def in_warmup(self) -> bool:
        return self.epoch < self.warmup_epochs

    @property
    def lt_weight(self) -> float:
        """λ(p) for the current epoch (LT), 0 during warm-up."""
        if self.in_warmup:
            return 0.0
        p = self._progress(self.warmup_epochs)
        return self.lt_lambda * (self.lt_lambda_end / self.lt_lambda) ** p

    def temperature(self) -> Tensor:
        """Current ``T`` in 1/rad (a tensor; differentiable w.r.t. ``k`` for LT)."""
        if self.schedule == "lt":
            return 1 / (self.delta * self.k.abs() + self.lt_eps)
        if self.schedule == "ft":
            return torch.tensor(self.t, dtype=torch.float64)
        p = self._progress(self.warmup_epochs)
        return torch.tensor(self.t_start + (self.t_end - self.t_start) * p, dtype=torch.float64)

    # ---------------------------------------------------------------- quantizer
    def soft_phase(self, raw: Tensor, temperature: Tensor | float | None = None) -> Tensor:
        """``Q_T(raw)`` in radians (between ``φ_0 − g_{L-1}`` and ``φ_0 + 2π + g_0``).

        Args:
            raw: real ``(..., ny, nx)`` phases, radians.
            temperature: ``T`` in 1/rad; default: the current scheduled / learned one.
        """
        T = self.temperature() if temperature is None else temperature
        T = torch.as_tensor(T)
        reach = 16.0 / float(T.detach())  # beyond this a step's tail is < e^-16 ≈ 1e-7
        # a scheduled T is a 0-d CPU tensor: it enters device ops as a scalar, since moving it
        # (and reading it back) would synchronise host and GPU for every layer and step
        T = T.to(dtype=raw.dtype) if T.dim() == 0 and T.device.type == "cpu" else \
            T.to(device=raw.device, dtype=raw.dtype)
        ph0 = float(self._phases_np[0])
        u = unwrap_from(raw, ph0)
        out = torch.full_like(u, ph0)
        n_max = int(math.ceil(reach / TWO_PI)) + 1
        for n in range(-n_max, n_max + 1):
            for gi, mi in zip(self._gaps, self._mids, strict=True):
                c = float(mi) + TWO_PI * n
                if c < ph0 - reach or c > ph0 + TWO_PI + reach:
                    continue
                out = out + float(gi) * (torch.sigmoid(T * (u - c)) - (1.0 if n < 0 else 0.0))
        return out

    def forward(self, raw: Tensor) -> Tensor:
        if self.in_warmup:
            return _phase(raw)
        return _phase(self.soft_phase(raw))

    def regularization(self) -> Tensor:
        if self.schedule != "lt":
            return torch.zeros(())
        return 0.5 * self.lt_weight * self.k ** 2

    def _options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"warmup_epochs": self.warmup_epochs}
        if self.schedule == "ft":
            opts["t"] = self.t
        elif self.schedule == "li":
            opts.update(t_start=self.t_start, t_end=self.t_end)
        else:
            opts.update(t_start=self.t_start, lt_lambda=self.lt_lambda,
                        lt_lambda_end=self.lt_lambda_end, lt_eps=self.lt_eps)
        return opts

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.schedule == "lt":
            d["learned_t"] = float(self.temperature().detach())
        return d


# ------------------------------------------------------------------------- constructor
def phase_quantizer(method: str, phases: np.ndarray | Sequence[float] | int,
                         **options: Any) -> PhaseQuantizer:
    """The phase family's constructor behind :func:`optodesign.quantize.registry.build_quantizer`,
    which checks the method and its options first: call that.

    Args:
        method: ``fp32, pq, ste, gs, dsq, psq-ft, psq-li`` or ``psq-lt`` (``fp32`` is PQ: its
            training path is full precision).
        phases: ``(L,)`` phase table in radians, or an int ``L`` for uniform levels.
        **options: the method's options (``gs_``/``dsq_`` prefixed for GS and DSQ).
    """
    q: PhaseQuantizer
    if method in ("fp32", "pq"):
        q = PostTrainingQuantizer(phases)
        q.method = method
    elif method == "ste":
        q = STEQuantizer(phases)
    elif method == "gs":
        q = GumbelSoftmaxQuantizer(phases, tau_start=options.get("gs_tau_start"),
                                   tau_end=options.get("gs_tau_end"))
    elif method == "dsq":
        q = DSQQuantizer(phases, **{k.removeprefix("dsq_"): v for k, v in options.items()})
    else:
        q = PSQQuantizer(phases, schedule=method.removeprefix("psq-"), **options)  # type: ignore[arg-type]
    return q


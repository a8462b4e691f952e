"""Adaptive precision: a bit width per layer, chosen from each layer's measured sensitivity.

Not every layer of a diffractive stack needs the same number of levels. This module measures,
for a trained full-precision (or soft) model, how much the task metric drops when one layer
alone is hard-quantized at ``b`` bits while the others stay at full precision
(:func:`layer_sensitivity`), and then picks per-layer widths that minimise the summed drop
under a total bit budget (:func:`adaptive_precision`, an exact multiple-choice knapsack,
:func:`allocate_bits`). The scheme is ours: a post-training,
sensitivity-based knapsack in the spirit of mixed-precision allocation for neural networks
(HAWQ, arXiv:1905.03696), measured on the optical task metric instead of a Hessian. The joint
complex quantizer it is normally used with follows Geng et al., "Ultra-efficient physical field
computing by complex-valued network quantization", Nat. Commun. 2026.

A *family* (:class:`BitFamily`) turns a bit width into a quantizer with ``2**b`` levels: the
joint quantizer on :func:`joint_codebook`, the independent Re/Im or amplitude/phase baselines,
or any phase quantizer. :func:`train_mixed_precision` then fine-tunes (quantization-aware) a
stack whose layers have different widths with the one training loop
(:meth:`~optodesign.train.trainer.Trainer.fit`), and returns a
:class:`~optodesign.design.Design` whose per-layer tables are padded to a common length (see
:func:`pad_level_tables`).

Typical use::

    fam = BitFamily("joint")
    metric = task_metric(evaluator)                       # or on a validation split
    sens = layer_sensitivity(raw_fp, metric, fam, bit_choices=(1, 2, 3, 4))
    alloc = adaptive_precision(sens, max_drop=0.005)      # fewest bits within 0.5 % accuracy
    result = train_mixed_precision(trainer, fam.quantizers(alloc.bits), init_raw=raw_fp)
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..quantize.base import Quantizer
from ..quantize.codebooks import phase_codebook, polar_codebook
from ..quantize.complex import (
    clip_to_unit_disk,
    raw_to_complex,
)
from ..quantize.registry import build_quantizer, method_names

if TYPE_CHECKING:
    from ..design import Design
    from ..evaluate import Evaluator
    from ..models.stack import DiffractiveStack
    from .trainer import Trainer

log = logging.getLogger(__name__)

__all__ = [
    "BitAllocation",
    "BitFamily",
    "LayerSensitivity",
    "MixedPrecisionResult",
    "joint_codebook",
    "ampphase_split",
    "full_precision_transmissions",
    "task_metric",
    "layer_sensitivity",
    "adaptive_precision",
    "allocate_bits",
    "pad_level_tables",
    "raw_from_checkpoint",
    "train_mixed_precision",
]

#: Families whose raw parameter is complex (Re, Im); every other name is a phase method.
COMPLEX_FAMILIES = method_names("complex")


# ---------------------------------------------------------------------------- codebooks per width
def _bits(value: object, field_name: str = "bits") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{field_name}: must be an integer >= 1, got {value!r}")
    return int(value)


def ampphase_split(bits: int) -> tuple[int, int]:
    """``(amp_bits, phase_bits)`` for ``bits``: phase first, one amplitude bit per two more.

    ``amp_bits = max(0, (bits − 2) // 2)``: 1–3 bits are phase-only rings (2, 4, 8 phases),
    4 bits = 2 amplitudes × 8 phases, 5 = 2 × 16, 6 = 4 × 16. Phase carries most of what a
    diffractive layer does; amplitude levels only pay once phase is reasonably fine.
    """
    b = _bits(bits)
    amp = max(0, (b - 2) // 2)
    return amp, b - amp


def joint_codebook(bits: int) -> np.ndarray:
    """The default ``2**bits``-codeword codebook of the joint family, complex128 ``(2**bits,)``.

    A polar grid with :func:`ampphase_split` (phase-only rings up to 3 bits, then rings of
    amplitude ``linspace(1/A, 1, A)``). It is exactly the table of the amplitude/phase
    baseline with the same split, so joint and independent amplitude/phase rounding differ
    only in how weights are assigned and trained, not in what the fab can make.
    """
    amp_bits, phase_bits = ampphase_split(bits)
    if amp_bits == 0:
        return phase_codebook(2**phase_bits)
    return polar_codebook(2**amp_bits, 2**phase_bits)


@dataclass(frozen=True)
class BitFamily:
    """A quantizer family indexed by bit width: ``family(b)`` has ``2**b`` levels.

    Args:
        method: ``"joint"`` (fixed :func:`joint_codebook`), ``"joint-learned"`` (the same,
            learnable), ``"reim"`` (independent Re/Im, ``extent`` default ``1/√2`` so every
            codeword is passive), ``"ampphase"`` (:func:`ampphase_split`), or a phase method of
            :data:`optodesign.quantize.registry.METHODS` (``"psq-li"``, ``"ste"``, …) with
            ``2**b`` uniform phase levels.
        options: the method's options (registry), given to every quantizer of the family
            (e.g. ``{"warmup_epochs": 1}`` for the joint quantizer).
    """

    method: str = "joint"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = COMPLEX_FAMILIES + method_names("phase")
        if self.method not in allowed:
            raise ConfigError(f"method: unknown bit family {self.method!r} (allowed: "
                              f"{', '.join(allowed)})")
        self(1)  # fail early on bad options

    @property
    def raw_kind(self) -> str:
        """``"complex"`` or ``"phase"``: the raw parameter the family's quantizers take."""
        return "complex" if self.method in COMPLEX_FAMILIES else "phase"

    def __call__(self, bits: int) -> Quantizer:
        b = _bits(bits)
        if self.method in ("joint", "joint-learned"):
            return build_quantizer(self.method, codebook=joint_codebook(b), options=self.options)
        if self.method == "reim":
            return build_quantizer("reim", options={**self.options, "bits": b})
        if self.method == "ampphase":
            amp, phase = ampphase_split(b)
            return build_quantizer("ampphase", options={**self.options, "amp_bits": amp,
                                                        "phase_bits": phase})
        return build_quantizer(self.method, levels=2**b, options=self.options)

    def quantizers(self, bits: Sequence[int]) -> list[Quantizer]:
        """One quantizer per layer, layer ``i`` at ``bits[i]``."""
        return [self(b) for b in bits]

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "options": dict(self.options)}


# ---------------------------------------------------------------------------- sensitivity
def full_precision_transmissions(raw: Sequence[Tensor]) -> list[Tensor]:
    """Full-precision transmissions of raw layer parameters, without gradient.

    Complex raws ``(ny, nx, 2)`` give ``clip_to_unit_disk(Re + i Im)`` (what the joint
    quantizer's warm-up trains); phase raws ``(ny, nx)`` give ``exp(i φ)``.
    """
    out = []
    with torch.no_grad():
        for r in raw:
            r = r.detach()
            if r.ndim == 3 and r.shape[-1] == 2:
                out.append(clip_to_unit_disk(raw_to_complex(r)))
            else:
                out.append(torch.polar(torch.ones_like(r), r))
    return out


def task_metric(evaluator: Evaluator, *, images: np.ndarray | None = None,
                labels: np.ndarray | None = None,
                batch_size: int = 256) -> Callable[[Sequence[Tensor]], float]:
    """The task's primary metric (higher is better) of a list of transmissions.

    Without ``images`` it is ``evaluator.evaluate(ts)[task.primary_metric]`` (the design's
    test split for a D2NN). With ``images``/``labels`` (a validation split of a supervised
    task held out from training, so that the allocation is not fitted on the test set) it is
    that metric there (:meth:`~optodesign.evaluate.Evaluator.classify`).

    Args:
        evaluator: scores transmissions for the design's task.
        images: ``(N, h, w)`` input images, or None.
        labels: ``(N,)`` integer labels (with ``images``).
        batch_size: images per forward pass.
    """
    task = evaluator.task
    key = task.primary_metric
    if images is None:
        return lambda ts: float(evaluator.evaluate(list(ts))[key])
    if not task.supervised or labels is None or len(labels) != len(images):
        raise ValueError("images/labels: a validation split needs a D2NN and one label per image")
    lab = np.asarray(labels)

    def metric(ts: Sequence[Tensor]) -> float:
        tt = [t.to(evaluator.device, torch.complex64) for t in ts]
        preds = evaluator.classify(tt, images, batch_size=batch_size)
        return float(task.metrics_of_predictions(preds, lab)[key])

    return metric


@dataclass(frozen=True)
class LayerSensitivity:
    """Metric of a model with one layer alone hard-quantized, per layer and bit width.

    Attributes:
        bit_choices: the widths measured, ascending.
        reference: the metric with every layer at full precision (the reference transmissions).
        metrics: ``metrics[i][j]`` = metric with layer ``i`` at ``bit_choices[j]`` bits.
    """

    bit_choices: tuple[int, ...]
    reference: float
    metrics: tuple[tuple[float, ...], ...]

    @property
    def n_layers(self) -> int:
        return len(self.metrics)

    def drop(self, layer: int, bits: int) -> float:
        """``reference − metric`` for layer ``layer`` at ``bits`` (may be < 0: noise or luck)."""
        if bits not in self.bit_choices:
            raise KeyError(f"bits: {bits} was not measured (have {self.bit_choices})")
        return self.reference - self.metrics[layer][self.bit_choices.index(bits)]

    __call__ = drop

    def table(self) -> np.ndarray:
        """Drops as ``(n_layers, len(bit_choices))`` float64."""
        return self.reference - np.asarray(self.metrics, dtype=np.float64)

    def monotone(self) -> LayerSensitivity:
        """The conservative envelope: a width's drop is at least any wider width's drop.

        Measured drops are noisy (a finite validation set), so a layer can score better at 2
        bits than at 3; taken at face value the knapsack would then prefer 2 bits. The
        envelope ``drop(b) = max_{b' >= b} drop(b')`` keeps "more bits never hurt".
        """
        m = np.asarray(self.metrics, dtype=np.float64)
        env = np.minimum.accumulate(m[:, ::-1], axis=1)[:, ::-1]
        return LayerSensitivity(self.bit_choices, self.reference,
                                tuple(tuple(float(v) for v in row) for row in env))

    def to_dict(self) -> dict[str, Any]:
        return {"bit_choices": list(self.bit_choices), "reference": self.reference,
                "metrics": [list(m) for m in self.metrics]}


def layer_sensitivity(
    raw: Sequence[Tensor], metric: Callable[[Sequence[Tensor]], float],
    family: Callable[[int], Quantizer], *, bit_choices: Sequence[int] = (1, 2, 3, 4),
    reference: Sequence[Tensor] | None = None,
) -> LayerSensitivity:
    """Measure each layer's sensitivity to quantization at each width (post-training).

    For every layer ``i`` and width ``b``, layer ``i`` becomes ``q.hard(q.prepare(raw[i]))``
    with ``q = family(b)`` (the nearest level of the clipped or wrapped weight: what the fab
    would make) and every other layer keeps its reference
    transmission; ``metric`` scores the result. ``len(raw) · len(bit_choices) + 1`` metric
    calls in all.

    Args:
        raw: per-layer raw parameters of a trained model (complex ``(ny, nx, 2)`` or phase
            ``(ny, nx)``, matching the family's ``raw_kind``).
        metric: transmissions (K complex ``(ny, nx)``) → task metric, higher is better
            (:func:`task_metric`).
        family: bit width → quantizer (:class:`BitFamily`).
        bit_choices: widths to measure, integers >= 1.
        reference: transmissions of the other layers; default
            :func:`full_precision_transmissions` of ``raw`` (pass ``stack.transmissions()``
            of a soft model to measure around it instead).

    Returns:
        :class:`LayerSensitivity`.
    """
    choices = tuple(sorted({_bits(b, "bit_choices") for b in bit_choices}))
    if not choices:
        raise ConfigError("bit_choices: need at least one bit width")
    if len(raw) < 1:
        raise ValueError("raw: need at least one layer")
    ref = (full_precision_transmissions(raw) if reference is None
           else [t.detach() for t in reference])
    if len(ref) != len(raw):
        raise ValueError(f"reference: {len(ref)} transmissions for {len(raw)} layers")
    base = float(metric(ref))
    rows = []
    with torch.no_grad():
        for i, r in enumerate(raw):
            row = []
            for b in choices:
                ts = list(ref)
                q = family(b)
                ts[i] = q.hard(q.prepare(r.detach())).to(ref[i].dtype)
                row.append(float(metric(ts)))
            log.info("layer %d: metric %s at bits %s (reference %.4g)", i, row, choices, base)
            rows.append(tuple(row))
    return LayerSensitivity(choices, base, tuple(rows))


# ---------------------------------------------------------------------------- allocation
@dataclass(frozen=True)
class BitAllocation:
    """Per-layer bit widths chosen by :func:`allocate_bits`.

    Attributes:
        bits: bit width of each layer.
        predicted_drop: Σ of the per-layer metric drops at those widths (additive model).
        used_bits: Σ bits.
    """

    bits: tuple[int, ...]
    predicted_drop: float
    used_bits: int


def allocate_bits(
    sensitivity: Callable[[int, int], float], n_layers: int, *, total_bits: int,
    bit_choices: Sequence[int] = (1, 2, 3, 4),
) -> BitAllocation:
    """Adaptive precision: per-layer bit widths minimising the summed metric drop on a budget.

    Treats the drops as additive over layers (the separable model of mixed-precision
    allocation, e.g. HAWQ, arXiv:1905.03696; adaptive precision for complex optical layers:
    Geng et al., Nat. Commun. 2026) and solves the resulting multiple-choice knapsack exactly
    by dynamic programming over the bits spent, ``O(n_layers · total_bits · len(bit_choices))``.
    Ties go to fewer total bits, then to the lexicographically smallest bits tuple.

    Args:
        sensitivity: ``sensitivity(i, b)`` = task-metric drop when layer ``i`` alone is
            quantized at ``b`` bits (called once per pair; must be finite).
        n_layers: number of layers, >= 1.
        total_bits: budget, ``Σ bits_i <= total_bits``.
        bit_choices: allowed widths, integers >= 0.

    Returns:
        The optimal :class:`BitAllocation`.

    Raises:
        ConfigError: bad arguments or a budget below ``n_layers · min(bit_choices)``.
    """
    n = _int_at_least(n_layers, "n_layers", 1)
    budget = _int_at_least(total_bits, "total_bits", 0)
    choices = sorted({_int_at_least(b, "bit_choices", 0) for b in bit_choices})
    if not choices:
        raise ConfigError("bit_choices: need at least one bit width")
    if budget < n * choices[0]:
        raise ConfigError(f"total_bits: {budget} is below the minimum {n * choices[0]} "
                          f"({n} layers x {choices[0]} bits)")
    budget = min(budget, n * choices[-1])
    cost = np.empty((n, len(choices)))
    for i, (li, b) in enumerate(itertools.product(range(n), choices)):
        v = float(sensitivity(li, b))
        if not math.isfinite(v):
            raise ValueError(f"sensitivity: returned {v!r} for layer {li} at {b} bits")
        cost[i // len(choices), i % len(choices)] = v
    # best[u] = (cost, bits tuple) of the first i layers spending exactly u bits.
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for li in range(n):
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for u, (c0, bits) in best.items():
            for j, b in enumerate(choices):
                v = u + b
                if v > budget:
                    break
                cand = (c0 + float(cost[li, j]), bits + (b,))
                if v not in nxt or cand < nxt[v]:
                    nxt[v] = cand
        best = nxt
    u_best = min(best, key=lambda u: (best[u][0], u, best[u][1]))
    c_best, bits_best = best[u_best]
    return BitAllocation(bits=bits_best, predicted_drop=c_best, used_bits=u_best)


def _int_at_least(value: object, field_name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{field_name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def adaptive_precision(
    sensitivity: LayerSensitivity, *, total_bits: int | None = None,
    max_drop: float | None = None, monotone: bool = True,
) -> BitAllocation:
    """Per-layer widths from measured sensitivities: a budget, or the fewest bits for a drop.

    Exactly one of:

    * ``total_bits``: minimise the predicted drop ``Σ_i drop_i(b_i)`` s.t. ``Σ b_i <=
      total_bits`` (:func:`allocate_bits`);
    * ``max_drop``: the smallest budget whose optimal allocation predicts a drop
      ``<= max_drop`` (metric units, e.g. 0.005 = half a percent of accuracy), and that
      allocation; if none does, the optimal allocation at the full budget (the least
      predicted drop; check ``predicted_drop`` against ``max_drop``).

    Drops are treated as additive over layers (the usual separable approximation). With
    ``monotone`` (default) they are first replaced by :meth:`LayerSensitivity.monotone`, so
    measurement noise cannot make a narrower width look better than a wider one; slightly
    negative drops (luck) are kept.
    """
    if (total_bits is None) == (max_drop is None):
        raise ConfigError("adaptive_precision: give exactly one of total_bits or max_drop")
    if monotone:
        sensitivity = sensitivity.monotone()
    n, choices = sensitivity.n_layers, sensitivity.bit_choices
    if total_bits is not None:
        return allocate_bits(sensitivity.drop, n, total_bits=total_bits, bit_choices=choices)
    if not (isinstance(max_drop, (int, float)) and math.isfinite(max_drop)):
        raise ConfigError(f"max_drop: must be a finite number, got {max_drop!r}")
    best = None
    for budget in range(n * choices[0], n * choices[-1] + 1):
        best = allocate_bits(sensitivity.drop, n, total_bits=budget, bit_choices=choices)
        if best.predicted_drop <= max_drop:
            return best
    assert best is not None
    return best


# ---------------------------------------------------------------- mixed-precision designs
def pad_level_tables(tables: Sequence[np.ndarray | Tensor]) -> np.ndarray:
    """Stack per-layer level tables of different lengths into ``(K, L_max)`` complex128.

    A :class:`~optodesign.design.Design` holds one table length for all layers; a shorter table
    is padded by repeating its last entry. Level maps never index the padding, so the design's
    transmissions are unchanged; the real width of layer ``i`` is recorded in
    ``design.quantizer["bits"]``.
    """
    rows = [np.asarray(t.detach().cpu().numpy() if isinstance(t, Tensor) else t,
                       dtype=np.complex128).ravel() for t in tables]
    if not rows:
        raise ValueError("tables: need at least one layer")
    width = max(r.size for r in rows)
    return np.stack([np.concatenate([r, np.full(width - r.size, r[-1])]) for r in rows])


def raw_from_checkpoint(path: str | Path) -> list[Tensor]:
    """The per-layer raw parameters of the kept epoch in a trainer's ``checkpoint.pt`` (run
    dir or file): the best on validation (``train.keep = "best"``), else the last.

    Read with :func:`optodesign.train.rundir.load_checkpoint` (``weights_only=True``: a file
    holding anything but tensors and plain data is refused, never executed).
    """
    from .rundir import load_checkpoint

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint (train first with `optodesign train`)")
    ckpt = load_checkpoint(path)
    # the kept epoch's parameters (what the run's design was written from), else the last
    best = ckpt.get("best")
    state = best["stack"] if isinstance(best, dict) else ckpt["stack"]
    keys = sorted((k for k in state if k.startswith("raw.")), key=lambda k: int(k.split(".")[1]))
    return [state[k].clone() for k in keys]


@dataclass(frozen=True)
class MixedPrecisionResult:
    """Outcome of :func:`train_mixed_precision`.

    Attributes:
        design: the hard-quantized design (tables padded, widths in ``quantizer["bits"]``).
        stack: the trained stack.
        history: per epoch, as :meth:`~optodesign.train.trainer.Trainer.fit` records it.
        bits: per-layer widths (``ceil(log2 n_levels)``).
    """

    design: Design
    stack: DiffractiveStack
    history: list[dict[str, Any]]
    bits: tuple[int, ...]


def _design(trainer: Trainer, stack: DiffractiveStack, metrics: dict[str, Any],
            bits: tuple[int, ...], kind: str, info: dict[str, Any]) -> Design:
    from ..design import Design

    template = dict(trainer.template, layer_kind=kind, free_levels=())
    quant = {"method": "mixed-precision", "n_levels": max(q.n_levels for q in stack.quantizers),
             "bits": list(bits), "total_bits": int(sum(bits)), "process": None,
             "layers": [q.describe() for q in stack.quantizers], **info}
    return Design(levels=stack.levels(),
                  level_tables=pad_level_tables([q.table() for q in stack.quantizers]),
                  metrics=metrics, quantizer=quant, **template)


def train_mixed_precision(
    trainer: Trainer, quantizers: Sequence[Quantizer], *,
    init_raw: Sequence[Tensor] | None = None, epochs: int | None = None,
    qat_start: int | None = None, out_dir: str | Path | None = None,
    info: dict[str, Any] | None = None,
) -> MixedPrecisionResult:
    """Quantization-aware training of a stack whose layers have their own quantizers.

    Runs the trainer's one loop, :meth:`~optodesign.train.trainer.Trainer.fit`, with the
    trainer's task and data (``trainer.cfg.train``: batch size, learning rate, loss): full
    precision before ``qat_start``, then ``prepare`` and quantization-aware training with the
    schedules over the remaining epochs. With the trainer's own quantizers (``build_quantizers``) it
    reproduces ``Trainer.run``'s design exactly, without checkpoints and plots. With
    ``epochs = 0`` nothing is trained: the result is the post-training quantization of
    ``init_raw``.

    Args:
        trainer: a :class:`~optodesign.train.trainer.Trainer` built from the task's config
            (its quantization section is not used; no process table).
        quantizers: one per layer (``len == cfg.optics.layers``), e.g.
            ``BitFamily("joint").quantizers(alloc.bits)``; all of one ``raw_kind``.
        init_raw: per-layer raw parameters to start from (e.g. :func:`raw_from_checkpoint` of
            a full-precision run); default: the quantizers' ``init_raw`` with the config seed.
        epochs: training epochs; default ``trainer.cfg.train.epochs``.
        qat_start: first quantization-aware epoch; default ``trainer.cfg.train.qat_start``
            (pass 0 to fine-tune a full-precision ``init_raw``). Full-precision epochs need
            quantizers of the config's kind (complex methods: clipped Re + i Im; phase:
            ``exp(iφ)``).
        out_dir: if given, the design is saved there.
        info: extra JSON-able entries for ``design.quantizer`` (e.g. the sensitivities).

    Returns:
        :class:`MixedPrecisionResult`; ``design.metrics`` are the hard-quantized test
        metrics, scored exactly as ``Evaluator.from_design(design)`` scores them.

    Raises:
        ConfigError: a process table (mixed widths need their own codebooks), a layer count
            mismatch, mixed raw kinds, full-precision epochs of the wrong kind.
    """
    cfg = trainer.cfg
    if trainer.process_table is not None:
        raise ConfigError("quantization.process: mixed precision uses one codebook per width; "
                          "a process's fixed table cannot change size per layer")
    qs = list(quantizers)
    if len(qs) != cfg.optics.layers:
        raise ConfigError(f"quantizers: {len(qs)} for {cfg.optics.layers} layers")
    kinds = {q.raw_kind for q in qs}
    if len(kinds) != 1:
        raise ConfigError("quantizers: all layers must take the same raw kind")
    kind = "complex" if kinds == {"complex"} else "phase"
    n_epochs = cfg.train.epochs if epochs is None else int(epochs)
    if n_epochs < 0:
        raise ConfigError(f"epochs: must be >= 0, got {epochs}")
    start = cfg.train.qat_start if qat_start is None else int(qat_start)
    if start < 0:
        raise ConfigError(f"qat_start: must be >= 0, got {qat_start}")
    if start > 0 and n_epochs > 0 and (kind == "complex") != cfg.is_complex:
        raise ConfigError(f"qat_start: full-precision epochs follow the config's method "
                          f"{cfg.quantization.method!r}, but the quantizers are {kind}")
    bits = tuple(int(math.ceil(math.log2(q.n_levels))) for q in qs)

    def design(stack: DiffractiveStack, metrics: dict[str, Any]) -> Design:
        return _design(trainer, stack, metrics, bits, kind, {})

    # the one training loop: same data order, loss, optimiser steps and scoring as Trainer.run
    fit = trainer.fit(qs, epochs=n_epochs, qat_start=start, init_raw=init_raw, design=design)
    stack, evaluator = fit.stack, fit.evaluator
    with torch.no_grad():
        metrics = dict(evaluator.evaluate(stack.transmissions("hard")))
    metrics["total_bits"] = int(sum(bits))
    result = _design(trainer, stack, metrics, bits, kind, dict(info or {}))
    if out_dir is not None:
        result.save(out_dir)
    return MixedPrecisionResult(result, stack, fit.history, bits)

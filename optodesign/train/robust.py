"""Error-aware training: ``[fabrication] errors = FILE`` trains under sampled fabrication errors.

The error file is the one verify reads (:func:`optodesign.variation.spec.load_errors`: the same
names, units and magnitudes). Every training step draws ``samples`` realisations of the
errors, scaled by a curriculum (0 → ``strength`` over the first ``ramp`` fraction of the
epochs), scores each with the task loss and optimises a statistic of them: ``mean``, or
``p5`` (the mean of the worst 5 % of the samples, at least one: the conditional value at risk
whose limit is verify's 5th-percentile gate).

A realisation is made by verify's own code, never a copy of it (:class:`ErrorSampler`):

1. the step's hard design (the level maps export would write, the process's level table) is
   the nominal :class:`~optodesign.process.physical.Physical`, built by the process's
   structure as verify builds it from a fab directory;
2. :func:`~optodesign.variation.perturb.apply_systematic` and
   :func:`~optodesign.variation.perturb.apply_random` draw the realisation (every error of the
   file: heights, index, κ, line-width bias, detuning, misalignment, rotation, spacing), from
   verify's streams seeded by ``(seed, sample, error)``;
3. the structure's :meth:`~optodesign.process.structure.Structure.element_transmissions`
   (verify's element physics, for every process kind) gives the elements as made; each
   trained layer is multiplied by the ratio of the made to the nominal elements, so a hard
   layer becomes exactly what verify simulates and a soft one keeps its gradient (the
   fabrication change of each pixel is held fixed within the step). For a relief's line-width
   bias a fixed factor would hide how the design shapes its own error, so the gradient (never
   the value) also carries the bias's first-order change (:func:`bias_strips`: each pixel
   takes a strip ``|bias|`` wide of every neighbour raised above it, or lowered below it):
   the optimiser sees that two equal neighbours make no bias error;
4. the layers move as verify's training model moves them (sub-pixel shifts and rotations about
   the optical axis): a design read as band-limited cells (``pixels = "cells"``, near-field
   tasks: :func:`optodesign.evaluate.reads_cells`) by exact transforms of its drawing
   (:func:`optodesign.optics.placement.place_drawn`), else bilinearly
   (:func:`optodesign.optics.placement.place`); then they propagate over the realisation's
   own distances (spacing errors) at its wavelength (detuning).

For a hard design the realisation equals verify's training-model rendering of the same
``Physical`` (:func:`optodesign.verify.model.render`) to float precision
(``tests/test_robust.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..grid import Grid
from ..optics.placement import place, place_drawn
from ..process.structure import take_levels
from ..variation.perturb import apply_random, apply_systematic
from ..variation.spec import ErrorModel

if TYPE_CHECKING:
    from ..evaluate import Evaluator
    from ..process import Physical, Process

__all__ = ["VALIDATION_REALISATIONS", "VALIDATION_START", "ErrorSampler", "Realisation",
           "Robust", "aggregate", "bias_strips", "scaled", "validation_score"]

#: realisations the kept epoch is chosen by (``Trainer._validation_score``), at the errors
#: file's own magnitudes; their sample numbers start far above any training step's
VALIDATION_REALISATIONS = 8
VALIDATION_START = 1 << 62


@dataclass(frozen=True)
class Robust:
    """``[fabrication]`` error-aware training settings.

    Attributes:
        errors: the errors file (verify's format).
        samples: error realisations per step. strength: the magnitudes' scale at full
        curriculum. ramp: fraction of the epochs over which the scale rises from 0.
        statistic: ``mean`` or ``p5``.
    """

    errors: str
    samples: int = 4
    strength: float = 1.0
    ramp: float = 0.5
    statistic: str = "mean"

    def scale(self, epoch: int, n_epochs: int) -> float:
        """The curriculum: ``strength · min(1, (epoch + 1) / (ramp · n_epochs))``."""
        if self.ramp <= 0:
            return self.strength
        return self.strength * min(1.0, (epoch + 1) / max(1.0, self.ramp * n_epochs))


def aggregate(losses: Tensor, statistic: str) -> Tensor:
    """``mean`` of the per-sample losses, or ``p5``: the mean of the worst 5 % (>= 1)."""
    if statistic == "mean":
        return losses.mean()
    k = max(1, math.ceil(0.05 * losses.numel()))
    return torch.topk(losses, k).values.mean()


def scaled(model: ErrorModel, scale: float) -> ErrorModel:
    """Every magnitude of ``model`` times ``scale`` (the curriculum)."""
    return ErrorModel(**{k: v * scale for k, v in model.to_dict().items()})


@dataclass(frozen=True)
class Realisation:
    """One fabricated realisation of the trained layers.

    Attributes:
        transmissions: K complex ``(ny, nx)`` layers (differentiable in the trained ones).
        distances: ``K + 1`` metres (spacing errors). wavelength: metres (detuning).
        physical: the realisation as verify describes it.
    """

    transmissions: list[Tensor]
    distances: tuple[float, ...]
    wavelength: float
    physical: Physical


@dataclass(frozen=True)
class _Nominal:
    physical: Physical
    elements: np.ndarray


class ErrorSampler:
    """Draws fabricated realisations of the trained layers with verify's error models
    (module docstring).

    Args:
        model: the errors file's :class:`~optodesign.variation.spec.ErrorModel`.
        process: the process the design is made in (its structure is verify's physics).
        grid: the layers' sampling. wavelength: the design's, metres. distances: ``K + 1``.
        seed: the run's seed; realisation ``i`` is verify's sample ``i`` of this seed.
        oversample: sub-pixels per pixel for the line-width bias (the errors file's
            ``[sweep] oversample``, as verify uses it).
        periodic: the layer is one period of a grating (the task's
            :attr:`~optodesign.tasks.Task.periodic`, as verify places it).
        cells: the layers are read as band-limited cells
            (:func:`optodesign.evaluate.reads_cells`): they move exactly, else bilinearly.
    """

    def __init__(self, model: ErrorModel, *, process: Process, grid: Grid, wavelength: float,
                 distances: Sequence[float], seed: int = 0, oversample: int = 8,
                 periodic: bool = False, cells: bool = False) -> None:
        self.model, self.process, self.grid = model, process, grid
        self.periodic, self.cells = bool(periodic), bool(cells)
        self.wavelength, self.distances = float(wavelength), tuple(float(d) for d in distances)
        self.seed, self.oversample = int(seed), int(oversample)
        # the last made/nominal ratio, with the Physical it was made for (holding it keeps
        # the ids in its element_key from being reused)
        self._cache: tuple[Any, Physical, np.ndarray] | None = None

    def nominal(self, levels: np.ndarray, tables: np.ndarray) -> _Nominal:
        """The hard design as fabricated without errors: ``levels`` int ``(K, ny, nx)``,
        ``tables`` complex ``(K, L)`` (the design's level tables)."""
        structure = self.process.structure
        tables = np.asarray(tables, dtype=np.complex128)
        levels = np.asarray(levels).astype(np.int64)
        values = np.stack([np.asarray(structure.level_values(tb), dtype=np.float64)
                           for tb in tables])
        phys = structure.physical(levels, take_levels(values, levels), values, tables,
                                  wavelength=self.wavelength, distances=self.distances,
                                  oversample=self.oversample)
        self._cache = None
        return _Nominal(phys, structure.element_transmissions(phys, pitch=self.grid.pitch))

    def sample(self, ts: Sequence[Tensor], nominal: _Nominal, *, scale: float,
               index: int) -> Realisation:
        """Realisation ``index`` (verify's sample number) of the layers ``ts`` (K complex
        ``(ny, nx)``, the trained transmissions of ``nominal``'s design), errors scaled by
        ``scale``."""
        m = scaled(self.model, scale)
        base = nominal.physical
        phys = apply_random(apply_systematic(base, m), m, seed=self.seed, sample=index)
        t = torch.stack(list(ts))
        if phys.element_key() != base.element_key():
            key = phys.element_key()
            if self._cache is None or self._cache[0] != key:
                made = self.process.structure.element_transmissions(phys, pitch=self.grid.pitch)
                e0 = nominal.elements
                ok = np.abs(e0) > 1e-300
                ratio = np.divide(made, e0, out=np.zeros_like(made), where=ok)
                self._cache = (key, phys, ratio)
            t0, t = t, t * torch.as_tensor(self._cache[2], device=t.device).to(t.dtype)
            if phys.kind == "thin" and phys.bias:  # the bias's gradient, not its value
                strips = bias_strips(t0, base.heights, phys.bias, self.grid.pitch)
                t = t + (strips - strips.detach())
        move = place_drawn if self.cells else place
        t = move(t, grid=self.grid, shifts=phys.shifts, rotations=phys.rotations,
                 periodic=self.periodic)
        return Realisation(list(t.unbind(0)), tuple(phys.distances), float(phys.wavelength),
                           phys)


def bias_strips(t: Tensor, heights: np.ndarray, bias: float, pitch: float) -> Tensor:
    """The first-order change of pixel-averaged transmissions under a line-width bias.

    :func:`~optodesign.raster.dilate_heights` grows raised regions by ``bias`` at every edge
    (erodes them for ``bias < 0``): a pixel then takes a strip ``|bias|`` wide of each
    4-neighbour raised above it (lowered below it), so its average changes by
    ``|bias| / pitch · Σ (t_neighbour − t_pixel)`` over those neighbours (corners, where two
    strips meet, are second order; outside the array the edge pixels continue, as there).

    Args:
        t: ``(..., ny, nx)`` complex transmissions of the nominal levels.
        heights: ``(..., ny, nx)`` nominal heights (which neighbour is raised), metres.
        bias: metres per edge. pitch: metres.
    """
    h = torch.as_tensor(np.asarray(heights), device=t.device)
    out = torch.zeros_like(t)
    for dim in (-1, -2):
        n = t.shape[dim]
        for step in (1, -1):
            idx = torch.clamp(torch.arange(n, device=t.device) + step, 0, n - 1)
            hn = h.index_select(dim, idx)
            mask = hn > h if bias > 0 else hn < h
            out = out + torch.where(mask, t.index_select(dim, idx) - t, 0)
    return out * (abs(bias) / pitch)


def validation_score(sampler: ErrorSampler, nominal: _Nominal, ts: Sequence[Tensor],
                     evaluator: Evaluator, *, statistic: str, images: np.ndarray | None = None,
                     labels: np.ndarray | None = None) -> float:
    """The score the kept epoch is chosen by under error-aware training: ``statistic``
    (verify's: ``mean`` or ``p5``, the 5th percentile) of the hard design's primary metric
    over :data:`VALIDATION_REALISATIONS` fixed realisations at the errors file's own
    magnitudes, the same every epoch; accuracy on ``images``/``labels`` (the validation
    split) for a supervised task, else the task's own metric."""
    from ..variation.spec import Tolerance

    values = []
    with torch.no_grad():
        for i in range(VALIDATION_REALISATIONS):
            r = sampler.sample(ts, nominal, scale=1.0, index=VALIDATION_START + i)
            at = {"wavelength": r.wavelength, "distances": r.distances}
            if labels is not None:
                pred = evaluator.classify(r.transmissions, images, **at)
                values.append(float((pred == labels).mean()))
            else:
                values.append(float(evaluator.evaluate(r.transmissions, **at)[
                    evaluator.primary_metric]))
    return Tolerance(statistic=statistic).statistic_of(np.asarray(values))

"""Verify's simulation models: the training model, and the drawn model chosen by convergence.

A :class:`SimModel` says how a fab directory is simulated: the propagation method (the
band-limited angular spectrum, ``asm``, or the Rayleigh–Sommerfeld convolution, ``rs``:
:mod:`optodesign.optics.rayleigh`), the zero-padding factor of every propagation and
``oversample``, the samples per design pixel along each axis. Under a model
with ``oversample = s``:

* each fabricated layer is **drawn** on a grid of pitch ``pitch / s`` (the structure's
  :meth:`~optodesign.process.structure.Structure.drawn_transmissions`: flat-topped pixels,
  level edges moved by the line-width bias) and moved by the geometry of a shift or a
  rotation about the optical axis (:func:`~optodesign.optics.placement.place_drawn`: a
  shift exactly, as a phase ramp of the band-limited drawing; a rotation by the area each
  rotated cell covers);
* the input (a test image's field, or the plane wave) is the training input held constant
  over each design pixel;
* for ``s > 1``, and at ``s = 1`` for a design trained with ``pixels = "cells"`` (the
  default; :attr:`optodesign.evaluate.Evaluator.cells`), every sample of a drawing (layers
  and input) is a flat-topped cell: the drawing is band-limited to the grid with each cell's
  exact spectrum
  (:func:`~optodesign.optics.cells.cell_band_limit`), so the model converges in ``s`` from
  ``s = 2`` (point samples converge as ``s⁻²``: 13 % change of the quickstart's detector
  energies from 2 to 4 samples per pixel, against 0.25 % with cells);
* the output intensity is averaged over each design pixel's ``s × s`` samples, so detectors,
  foci and targets are read on the design's pixels exactly as training reads them.

``SimModel.training(design)`` (the design's pad, samples per pixel and method) is the
**training model**: verify reproduces the trained metric from the files under it, bit for bit.
:func:`converge` chooses the simulation model by convergence: where the Rayleigh–Sommerfeld
convolution can simulate the design it runs at pad 2, exact in the padding, and raises the
oversampling until the task's readings (detector energies) of probe inputs change by less than
a stated tolerance; elsewhere it raises the oversampling, then the padding, of the angular
spectrum. It returns every step for the report; the primary metric is then computed on every
test image under the training and the chosen model (the model gap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from ..evaluate import Evaluator, reads_cells
from ..grid import Grid, check_method
from ..optics.cells import fine_axis, fine_grid
from ..optics.placement import place, place_drawn
from ..optics.rayleigh import rs_stack_problems
from ..tasks import get_task

if TYPE_CHECKING:
    from ..design import Design
    from ..process.physical import Physical
    from .readback import FabStack

__all__ = ["SimModel", "ModelEvaluator", "evaluator_for", "render", "Convergence",
           "ConvergenceStep", "converge", "ENERGY_TOLERANCE",
           "MAX_PAD", "MAX_OVERSAMPLE"]

#: convergence: largest relative change (L2 over every probe input) of the task's readings
ENERGY_TOLERANCE = 0.01
#: the ladder stops here (not converged if still changing)
MAX_PAD = 16.0
MAX_OVERSAMPLE = 4
#: probe inputs whose readings are compared (D2NN: the first test images)
PROBE_IMAGES = 32


@dataclass(frozen=True)
class SimModel:
    """How a fab directory is simulated (see the module docstring).

    Attributes:
        pad: zero-padding factor per axis of every propagation (>= 1).
        oversample: samples per design pixel per axis (>= 1).
    """

    pad: float
    oversample: int = 1
    method: str = "asm"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pad) and self.pad >= 1):
            raise UserError(f"pad: must be a number >= 1, got {self.pad!r}")
        if int(self.oversample) != self.oversample or self.oversample < 1:
            raise UserError(f"oversample: must be an integer >= 1, got {self.oversample!r}")
        check_method(self.method)
        object.__setattr__(self, "pad", float(self.pad))
        object.__setattr__(self, "oversample", int(self.oversample))

    @classmethod
    def training(cls, design: Design) -> SimModel:
        """The model training used: the design's padding, samples per pixel and method."""
        return cls(design.pad, design.oversample, design.propagation)

    def grid(self, design_grid: Grid) -> Grid:
        """The sampling this model propagates on: ``s`` samples per design pixel."""
        g = fine_grid(design_grid, self.oversample, self.pad)
        return replace(g, method=self.method)

    def axis(self, design_grid: Grid) -> tuple[float, float]:
        """The optical axis (centre of design pixel ``(ny // 2, nx // 2)``) in fine samples."""
        return fine_axis(design_grid.shape, self.oversample)

    def is_training(self, design: Design) -> bool:
        return self == SimModel.training(design)

    def label(self) -> str:
        how = "Rayleigh-Sommerfeld" if self.method == "rs" else "angular spectrum"
        return f"{how}, pad {self.pad:g}, {self.oversample}x{self.oversample} samples per pixel"

    def to_json(self) -> dict[str, Any]:
        return {"pad": self.pad, "oversample": self.oversample, "method": self.method}

    def problems(self, design: Design) -> list[str]:
        """Why this model cannot simulate ``design`` (empty: it can): for ``rs``, every
        propagated distance must be one the sampled kernel represents
        (:func:`~optodesign.optics.rayleigh.rs_problems`)."""
        if self.method != "rs":
            return []
        return rs_stack_problems(self.grid(design.grid), design.distances, design.wavelength,
                                 task=get_task(design.task))


@dataclass
class ModelEvaluator(Evaluator):
    """The :class:`~optodesign.evaluate.Evaluator` of a design under a :class:`SimModel`:
    transmissions are drawn ``(K, [S,] ny·s, nx·s)``, inputs held over each pixel, output
    intensities averaged back onto the design's pixels, so every task scores unchanged."""

    model: SimModel = field(default_factory=lambda: SimModel(2.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.cells:  # (with cells, Evaluator's own __post_init__ did it)
            self.task = self.task.under(self)

    def _sampling(self) -> Grid:
        return self.model.grid(self.design.grid)

    @property
    def oversample(self) -> int:
        return self.model.oversample


def evaluator_for(ev: Evaluator, model: SimModel) -> Evaluator:
    """``ev`` itself under the training model, else a :class:`ModelEvaluator` sharing its
    design, device and dataset."""
    if model.is_training(ev.design) and not isinstance(ev, ModelEvaluator):
        return ev
    base = ev.design
    return ModelEvaluator(base, ev.device, ev.dataset, model=model)


def render(fab: FabStack, phys: Physical, model: SimModel,
           elements: np.ndarray | None = None) -> np.ndarray:
    """Complex128 ``(K, ny·s, nx·s)`` transmissions of ``phys`` drawn under ``model``.

    ``elements``: the drawn element transmissions of ``phys`` before placement, if already
    computed (Monte-Carlo samples share them). With ``oversample = 1`` this is exactly the
    training model's :meth:`~optodesign.verify.readback.FabStack.transmissions`.
    """
    g = fab.design.grid
    if elements is None:
        elements = draw_elements(fab, phys, model)
    if phys.shifts is None and phys.rotations is None:
        return elements
    t = torch.as_tensor(elements)
    task = get_task(fab.design.task)
    # a drawing of cells (every drawn model, and one sample per pixel of a cells design)
    # moves exactly; point samples by interpolation
    cells = model.oversample > 1 or reads_cells(task, fab.design.pixels)
    move = place_drawn if cells else place
    t = move(t, grid=model.grid(g), shifts=phys.shifts, rotations=phys.rotations,
             axis=model.axis(g), periodic=task.periodic)
    return t.numpy()


def draw_elements(fab: FabStack, phys: Physical, model: SimModel) -> np.ndarray:
    """The elements of ``phys`` drawn under ``model``, before any shift or rotation."""
    structure = fab.process.structure
    pitch = fab.design.pitch
    if model.oversample == 1:
        return structure.element_transmissions(phys, pitch=pitch)
    return structure.drawn_transmissions(phys, pitch=pitch, oversample=model.oversample)


#: bytes of padded complex64 fields propagated at once by the convergence ladder
BATCH_BYTES = 64 * 2**20


def batch_size(grid: Grid) -> int:
    """Images per forward pass on ``grid``: as many padded fields as fit in
    :data:`BATCH_BYTES` (at least 1, at most 256)."""
    nyp, nxp = grid.padded().shape
    return max(1, min(256, BATCH_BYTES // (nyp * nxp * 8)))


# ---------------------------------------------------------------------------- convergence
@dataclass(frozen=True)
class ConvergenceStep:
    """One model of the ladder: the change of the probe readings from the model it refines
    (relative L2; ``None`` for the first), and its primary metric on every test image
    (computed for the training and the chosen model only; NaN otherwise)."""

    model: SimModel
    metric: float
    metric_change: float | None
    energy_change: float | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**self.model.to_json(),
                "metric": None if math.isnan(self.metric) else self.metric,
                "metric_change": self.metric_change, "energy_change": self.energy_change,
                "seconds": self.seconds}


@dataclass(frozen=True)
class Convergence:
    """The ladder :func:`converge` climbed.

    Attributes:
        steps: every model simulated, in order (the first is the training model).
        chosen: the coarsest model whose next pad step and next oversampling step both changed
            the readings by less than the tolerance (or the finest simulated, when a cap was
            reached first: ``converged`` is then False).
        converged: whether the tolerance was met.
        energy_tolerance: the stated tolerance (relative L2 change of the readings).
        nominal: every metric of the nominal files under ``chosen`` (every test image).
        seconds: time of the full-metric evaluations.
    """

    steps: tuple[ConvergenceStep, ...]
    chosen: SimModel
    converged: bool
    energy_tolerance: float
    nominal: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen.to_json(), "converged": self.converged,
                "energy_tolerance": self.energy_tolerance,
                "steps": [s.to_json() for s in self.steps]}


def _readings(ev: Evaluator, ts: Tensor, probe: np.ndarray | None) -> Tensor:
    """The task's readings (D2NN: detector energies) of the probe inputs, float64."""
    field_in = ev.images_to_field(probe) if probe is not None else ev.plane_wave()
    inten = ev.output_intensity(field_in, ts)
    return ev.task.read(inten).to(torch.float64)


def converge(fab: FabStack, ev: Evaluator, *, metric: str, test_samples: int | None = None,
             start: SimModel | None = None, energy_tolerance: float = ENERGY_TOLERANCE,
             max_pad: float = MAX_PAD, max_oversample: int = MAX_OVERSAMPLE,
             probe_images: int = PROBE_IMAGES) -> Convergence:
    """Raise the oversampling (×2), then the padding (×2), until a step changes the task's
    readings (D2NN: detector energies) of the probe inputs by at most ``energy_tolerance``
    (relative L2 over every probe input and reading).

    The probe inputs are the first ``probe_images`` test images (D2NN) or the plane wave.
    Where the Rayleigh–Sommerfeld convolution can simulate the design
    (:meth:`SimModel.problems`), the ladder runs it at pad 2, where it is exact in the padding
    (no wrap-around, no band limit), and raises only the oversampling. Otherwise (the
    angular spectrum), oversampling is raised at the training padding (the drawing's error is
    local; the padding factor keeps the physical window), then the padding at the accepted
    oversampling (a grid coarser than λ/2 cannot carry the wide angles a padding step is
    judged on). The chosen
    model is the coarse end of the last accepted step of each kind, or the finest simulated
    when a cap (``max_oversample``; ``max_pad``, at least twice the training pad) is reached
    first (``converged`` False). The primary metric is then computed on every test image under
    the training model and the chosen one.
    """
    import time

    start = start or SimModel.training(fab.design)
    probe = None
    if ev.task.supervised:
        n = min(probe_images, test_samples) if test_samples else probe_images
        probe, _ = ev.test_split(n)
    steps: list[ConvergenceStep] = []
    cache: dict[SimModel, Tensor] = {}

    def simulate(m: SimModel, ref: SimModel | None = None) -> ConvergenceStep:
        t0 = time.perf_counter()
        e = evaluator_for(ev, m)
        t = torch.as_tensor(render(fab, fab.physical, m).astype(np.complex64), device=ev.device)
        with torch.no_grad():
            r = torch.cat([_readings(e, t, None if probe is None else probe[i:i + b])
                           for b in [batch_size(e.grid)]
                           for i in range(0, 1 if probe is None else len(probe), b)])
        de = None
        if ref is not None:
            pr = cache[ref]
            de = float((r - pr).norm() / max(float(r.norm()), 1e-300))
        cache[m] = r
        steps.append(ConvergenceStep(m, math.nan, None, de, time.perf_counter() - t0))
        return steps[-1]

    def ok(step: ConvergenceStep) -> bool:
        return step.energy_change is not None and step.energy_change <= energy_tolerance

    def raise_oversampling(current: SimModel) -> tuple[SimModel, bool]:
        """Double the samples per pixel until a step changes the readings by at most the
        tolerance: (the coarse end of that step, True), or (the finest simulated, False)."""
        while current.oversample * 2 <= max_oversample:
            nxt = replace(current, oversample=current.oversample * 2)
            if ok(simulate(nxt, current)):
                return current, True
            current = nxt
        return current, False

    simulate(start)
    rs = _rayleigh_sommerfeld(fab.design, start, max_oversample)
    if rs is not None:
        # exact in the padding at pad 2: only the samples per pixel are left to converge
        if rs != start:
            simulate(rs, start)
        current, over_ok = raise_oversampling(rs)
        return _finish(fab, ev, steps, start, current, over_ok, energy_tolerance, metric,
                       test_samples)
    current = start
    # samples per pixel first, at the training padding: the drawing's error is local (edges
    # of pixels), and a grid coarser than λ/2 misrepresents the wide angles a padding step
    # is judged on
    current, over_ok = raise_oversampling(current)
    max_pad = max(max_pad, 2 * start.pad)  # a design trained with a large pad gets one step
    pad_ok = False
    while current.pad * 2 <= max_pad:
        nxt = SimModel(current.pad * 2, current.oversample)
        if ok(simulate(nxt, current)):
            pad_ok = True
            break
        current = nxt
    return _finish(fab, ev, steps, start, current, pad_ok and over_ok, energy_tolerance, metric,
                   test_samples)


def _rayleigh_sommerfeld(design: Design, start: SimModel, max_oversample: int) -> SimModel | None:
    """The coarsest Rayleigh–Sommerfeld model (pad 2, from the training samples per pixel,
    with room for one step of oversampling under ``max_oversample``) that can simulate
    ``design``, if any."""
    s = start.oversample
    while s * 2 <= max_oversample:
        m = SimModel(2.0, s, "rs")
        if not m.problems(design):
            return m
        s *= 2
    return None


def _finish(fab: FabStack, ev: Evaluator, steps: list[ConvergenceStep], start: SimModel,
            current: SimModel, converged: bool, energy_tolerance: float, metric: str,
            test_samples: int | None) -> Convergence:
    """The ladder's result: the metric of the training model and of the chosen one (the
    finest simulated, where not converged) on every test image."""
    import time

    if not converged:
        current = steps[-1].model
    # the metric of the training model and of the chosen one, on every test image
    t0 = time.perf_counter()
    metrics: dict[SimModel, dict[str, Any]] = {}
    for m in dict.fromkeys((start, current)):
        e = evaluator_for(ev, m)
        t = torch.as_tensor(render(fab, fab.physical, m).astype(np.complex64), device=ev.device)
        metrics[m] = e.evaluate(t, max_samples=test_samples, batch_size=batch_size(e.grid))
    out = []
    for st in steps:
        if st.model in metrics:
            st = ConvergenceStep(st.model, float(metrics[st.model][metric]), st.metric_change,
                                 st.energy_change, st.seconds)
        out.append(st)
    return Convergence(tuple(out), current, converged, energy_tolerance,
                       nominal=metrics[current], seconds=time.perf_counter() - t0)

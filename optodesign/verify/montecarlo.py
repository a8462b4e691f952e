"""Monte-Carlo verification: many fabricated realisations, propagated in batches, scored.

Every sample is a physical stack (:func:`~optodesign.variation.perturb.perturb` of the read-back
nominal), turned into transmissions with the process physics (numpy, float64: the same seed
gives the same samples on CPU and GPU), then stacked along a batch dimension and propagated
together by :func:`optodesign.models.functional.forward_stack` — transmissions
``(K, S, 1, ny, nx)`` against input fields ``(1, B, ny, nx)`` give ``S × B`` outputs in one
pass. Samples share one propagation geometry unless the layer spacing varies per sample
(``spacing_sigma``), in which case they run one at a time. For a supervised task (D2NN) the
test images are propagated to the first layer once and reused by every sample (that distance
is rarely perturbed). Scoring is :meth:`optodesign.evaluate.Evaluator.score_realisations`,
the evaluator training scores with.

:func:`verify_fab` is the whole ``optodesign verify``: read back, nominal metric (through
:class:`~optodesign.evaluate.Evaluator`, exactly as training scored the design), combined
errors, tolerance sweep, verdict.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from ..evaluate import Evaluator
from ..models.functional import forward_stack
from ..optics.propagation import SamplingWarning
from ..tasks import task_of
from ..units import format_length
from ..variation.perturb import apply_random, apply_systematic
from ..variation.spec import (
    ERRORS,
    ErrorConfig,
    ErrorModel,
    Scales,
    Tolerance,
    default_errors,
    sweep_magnitudes,
)
from .model import Convergence, SimModel, converge, draw_elements, evaluator_for, render
from .readback import FabStack, Physical, Source, read_fab

__all__ = ["Scorer", "MCResult", "SweepResult", "VerifyResult", "monte_carlo",
           "tolerance_sweep", "verify_fab", "realisations"]

log = logging.getLogger(__name__)

#: bytes of one batch of padded complex64 fields (samples × images) propagated at once: on
#: CPU glibc's 32 MiB mmap threshold (bigger tensors are mapped and zeroed on every step, see
#: DESIGN.md), i.e. 256 fields of 128×128; a GPU takes far more
MAX_BATCH_BYTES = {"cpu": 32 * 2**20, "cuda": 1 * 2**30}
#: bytes of propagated test images kept between samples
INPUT_CACHE_BYTES = 512 * 2**20


class Scorer:
    """Scores batches of realisations of one design: ``(K, S, ny, nx)`` → S metric dicts.

    Args:
        evaluator: built from the read-back Design (task, detectors, target, dataset).
        test_samples: use only the first N test images (D2NN).
        max_fields: fields per forward pass (default: as many padded fields as fit in
            :data:`MAX_BATCH_BYTES` of the device, at least 1).
        image_batch: test images per forward pass (D2NN).
    """

    def __init__(self, evaluator: Evaluator, *, test_samples: int | None = None,
                 max_fields: int | None = None, image_batch: int = 256) -> None:
        self.ev = evaluator
        self.design = evaluator.design
        self.task = evaluator.task
        self.device = evaluator.device
        self.grid = evaluator.grid
        #: the simulation model the evaluator propagates with (draws the transmissions)
        self.sim = getattr(evaluator, "model", None) or SimModel.training(self.design)
        nyp, nxp = self.grid.padded().shape
        budget = MAX_BATCH_BYTES.get(self.device.type, MAX_BATCH_BYTES["cuda"])
        self.max_fields = max_fields or max(1, budget // (nyp * nxp * 8))
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        if self.task.supervised:
            self.images, self.labels = evaluator.test_split(test_samples)
            if len(self.labels) == 0:
                raise UserError("--test-samples: the test set is empty")
            #: the images whose fields are propagated: one unit image per pixel set in any
            #: test image when the inputs are linear (Evaluator.input_basis), else the images
            self.sources = evaluator.input_sources(self.images)
            self.image_batch = max(1, min(image_batch, len(self.sources), self.max_fields))
        else:
            self.image_batch = 1
        self._inputs: dict[tuple[float, float], list[Tensor]] = {}
        self._drawn: list[Tensor] | None = None

    @property
    def n_images(self) -> int:
        return 0 if self.labels is None else len(self.labels)

    def chunk_size(self) -> int:
        """Samples propagated together."""
        return max(1, self.max_fields // self.image_batch)

    def _input_batches(self, d0: float, wavelength: float, keep: bool) -> list[Tensor] | None:
        """The fields of :attr:`sources` (test images or unit images) drawn on the model's grid
        and propagated to the first layer, batch by batch. The drawn fields are kept for every
        call; the propagated ones, with ``keep``, for the latest (distance, wavelength), which
        samples sharing it reuse. ``None`` when they are too large to keep."""
        assert self.images is not None
        key = (float(d0), float(wavelength))
        if key in self._inputs:
            return self._inputs[key]
        ny, nx = self.grid.shape
        n = len(self.sources)
        if 2 * n * ny * nx * 8 > INPUT_CACHE_BYTES:
            return None
        if self._drawn is None:
            self._drawn = [self.ev.images_to_field(self.sources[i:i + self.image_batch])
                           for i in range(0, n, self.image_batch)]
        out = [forward_stack(f, [], [d0], grid=self.grid, wavelength=wavelength)
               for f in self._drawn]
        self._inputs = {key: out} if keep else {}
        return out

    @torch.no_grad()
    def example_images(self, count: int = 4) -> np.ndarray:
        """Indices of the first test image of each of the first ``count`` classes seen."""
        assert self.labels is not None
        _, first = np.unique(self.labels, return_index=True)
        return np.sort(first)[:count]

    def intensities(self, ts: Tensor, *, distances: Sequence[float], wavelength: float,
                    images: np.ndarray | None = None) -> Tensor:
        """Output intensities ``(S, B, ny, nx)`` (D2NN: test images ``images``, default
        :meth:`example_images`) or ``(S, ny, nx)`` (metasurfaces) of transmissions ``ts``
        ``(K, S, ny, nx)``."""
        if self.task.supervised:
            assert self.images is not None
            sel = self.example_images() if images is None else images
            field = self.ev.images_to_field(self.images[sel])[None]
            return self.ev.output_intensity(field, ts[:, :, None], distances=distances,
                                            wavelength=wavelength)
        return self.ev.output_intensity(self.ev.plane_wave(), ts, distances=distances,
                                        wavelength=wavelength)

    @torch.no_grad()
    def score(self, ts: Tensor, *, distances: Sequence[float], wavelength: float,
              reuse_inputs: bool = True) -> list[dict[str, Any]]:
        """Metrics of S realisations sharing one geometry.

        Args:
            ts: complex64 ``(K, S, ny, nx)`` on the scorer's device.
            distances: ``K + 1`` metres. wavelength: metres (propagation).
            reuse_inputs: keep the test images propagated to the first layer for the next
                call (pointless when every call has another first distance; the drawn
                images are kept either way).

        Returns:
            S dicts as :meth:`Evaluator.evaluate` returns them (D2NN: ``accuracy`` and
            ``confusion``; metasurfaces: the task's scalar metrics).
        """
        cached = None
        if self.task.supervised:
            cached = self._input_batches(distances[0], wavelength, keep=reuse_inputs)
        return self.ev.score_realisations(ts, distances=distances, wavelength=wavelength,
                                          images=self.images, labels=self.labels,
                                          image_batch=self.image_batch, inputs=cached)


@dataclass(frozen=True)
class MCResult:
    """Metrics of S realisations.

    Attributes:
        metric: the metric the tolerance refers to.
        values: float64 ``(S,)`` that metric per sample.
        metrics: every scalar metric, ``(S,)`` each.
        confusion: ``(C, C)`` int64 confusion matrix summed over samples (D2NN), else None.
        seconds: wall time.
        computed: samples actually simulated (1 when the model has no random error: every
            sample is the same realisation).
    """

    metric: str
    values: np.ndarray
    metrics: dict[str, np.ndarray]
    confusion: np.ndarray | None
    seconds: float
    computed: int

    def summary(self) -> dict[str, float]:
        v = self.values
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                "min": float(v.min()), "p5": float(np.percentile(v, 5)),
                "median": float(np.median(v)), "max": float(v.max())}


def realisations(fab: FabStack, model: ErrorModel, samples: Sequence[int], *,
                 seed: int) -> list[tuple[Physical, np.ndarray]]:
    """The physical stacks and complex128 transmissions ``(K, ny, nx)`` of some samples
    (a convenience for inspection and tests; :func:`monte_carlo` streams them)."""
    base = apply_systematic(fab.physical, model)
    out = []
    for s in samples:
        phys = apply_random(base, model, seed=seed, sample=s)
        out.append((phys, fab.transmissions(phys)))
    return out


def monte_carlo(fab: FabStack, model: ErrorModel, *, samples: int, scorer: Scorer,
                metric: str, seed: int = 0, progress: bool = False,
                desc: str = "monte carlo", shard: bool = True) -> MCResult:
    """Simulate ``samples`` fabricated realisations of ``fab`` under ``model`` and score them.

    Sample ``i`` is :func:`~optodesign.variation.perturb.perturb` with ``(seed, i)``, whatever
    the chunking, device or other errors: results are reproducible and sweeps use common
    random numbers. A model without random errors is simulated once.
    """
    from tqdm.auto import tqdm

    from .. import distributed

    if samples < 1:
        raise UserError(f"--samples: must be >= 1, got {samples}")
    t0 = time.perf_counter()
    todo = samples if model.is_random else 1
    base = apply_systematic(fab.physical, model)
    sim = scorer.sim
    device = scorer.device
    chunk = 1 if model.varies_distances else min(scorer.chunk_size(), todo)
    # Chunks are fixed by the global sample index, and under torchrun each rank takes every
    # world-size-th chunk: a chunk is computed identically whichever rank runs it, so the
    # merged results do not depend on the world size.
    starts = list(range(0, todo, chunk))
    if shard:  # False when the caller already split the work over ranks (the sweep)
        starts = distributed.shard(starts)
    cache: tuple[tuple, Physical, np.ndarray] | None = None
    mine: dict[int, list[dict[str, Any]]] = {}
    bar = tqdm(total=todo, desc=desc, leave=False, mininterval=0.5,
               disable=not progress or (shard and not distributed.is_main()))
    try:
        for start in starts:
            ts = []
            phys = base
            for s in range(start, min(start + chunk, todo)):
                phys = apply_random(base, model, seed=seed, sample=s)
                key = phys.element_key()
                if cache is None or cache[0] != key:
                    cache = (key, phys, draw_elements(fab, phys, sim))
                ts.append(render(fab, phys, sim, cache[2]))
            t = torch.as_tensor(np.stack(ts, axis=1).astype(np.complex64), device=device)
            mine[start] = scorer.score(t, distances=phys.distances, wavelength=phys.wavelength,
                                       reuse_inputs=not model.varies_distances)
            bar.update(len(ts) * (distributed.world_size() if shard else 1))
    finally:
        bar.close()
    merged = distributed.gather_ordered(mine) if shard else mine
    results = [r for chunk_results in merged.values() for r in chunk_results]
    if todo < samples:
        results = results * samples
    names = [k for k, v in results[0].items() if isinstance(v, (int, float))]
    metrics = {k: np.array([r[k] for r in results], dtype=np.float64) for k in names}
    confusion = None
    if "confusion" in results[0]:
        confusion = np.sum([np.asarray(r["confusion"], dtype=np.int64) for r in results], axis=0)
    return MCResult(metric, metrics[metric], metrics, confusion, time.perf_counter() - t0, todo)


@dataclass(frozen=True)
class SweepResult:
    """The metric vs the magnitude of one error (all others off).

    Attributes:
        name: the error. unit: its unit. random: drawn per sample.
        magnitudes: swept magnitudes (SI; rotation in degrees), starting at 0.
        values: per magnitude, the metric of every sample.
        statistic: per magnitude, the tolerance statistic of the samples.
        passed: per magnitude, whether the drop from nominal is within the tolerance.
        max_ok: largest swept magnitude up to which every point passes.
        estimate: magnitude where the drop crosses the tolerance, interpolated linearly
            between the last passing and the first failing point (None: none fails).
    """

    name: str
    unit: str
    random: bool
    magnitudes: tuple[float, ...]
    values: tuple[np.ndarray, ...]
    statistic: tuple[float, ...]
    passed: tuple[bool, ...]
    max_ok: float
    estimate: float | None


def _within(nominal: float, value: float, max_drop: float) -> bool:
    return bool(nominal - value <= max_drop * (1 + 1e-9) + 1e-12)


def tolerance_sweep(fab: FabStack, model: ErrorModel, *, names: Sequence[str],
                    factors: Sequence[float], scales: Scales, scorer: Scorer, metric: str,
                    tolerance: Tolerance, max_drop: float, nominal: float, samples: int,
                    seed: int = 0, progress: bool = False) -> list[SweepResult]:
    """Metric vs each error's magnitude, one error at a time (see :class:`SweepResult`).

    Under torchrun the sweep points are split over ranks (each point's samples stay on one
    rank) and merged in order: the same result for any world size."""
    from .. import distributed

    mags_of = {name: sweep_magnitudes(name, model, tuple(factors), scales) for name in names}
    points = [(name, m) for name in names for m in mags_of[name] if m != 0]
    mine: dict[int, np.ndarray] = {}
    for i in distributed.shard(range(len(points))):
        name, m = points[i]
        r = monte_carlo(fab, ErrorModel().only(name, m),
                        samples=samples if ERRORS[name].random else 1, scorer=scorer,
                        metric=metric, seed=seed, progress=progress,
                        desc=f"sweep {name} {_magnitude(name, m)}", shard=False)
        mine[i] = r.values
    done = distributed.gather_ordered(mine)
    values = {points[i]: v for i, v in done.items()}
    out = []
    for name in names:
        spec = ERRORS[name]
        mags = mags_of[name]
        vals: list[np.ndarray] = []
        stats: list[float] = []
        for m in mags:
            v = np.full(samples if spec.random else 1, nominal) if m == 0 else values[(name, m)]
            vals.append(v)
            stats.append(tolerance.statistic_of(v))
        passed = [_within(nominal, s, max_drop) for s in stats]
        first_fail = next((i for i, p in enumerate(passed) if not p), None)
        if first_fail is None:
            max_ok, estimate = mags[-1], None
        else:
            max_ok = mags[first_fail - 1] if first_fail > 0 else 0.0
            a, b = mags[first_fail - 1], mags[first_fail]
            da, db = nominal - stats[first_fail - 1], nominal - stats[first_fail]
            estimate = a + (b - a) * (max_drop - da) / (db - da) if db != da else b
        out.append(SweepResult(name, spec.unit, spec.random, tuple(mags), tuple(vals),
                               tuple(stats), tuple(passed), float(max_ok),
                               None if estimate is None else float(estimate)))
    return out


def _magnitude(name: str, value: float) -> str:
    """A swept magnitude with its unit, for progress bars (``40 um``, ``0.2 deg``)."""
    unit = ERRORS[name].unit
    if unit == "m":
        return format_length(value, digits=3)
    return f"{value:.3g} {unit}".rstrip()


@dataclass(frozen=True, eq=False)
class VerifyResult:
    """Everything ``optodesign verify`` found (the report is written from this).

    Attributes:
        fab: the read-back fab directory.
        config: the error configuration used.
        metric, max_drop: the tolerance, resolved for the task.
        readback: metrics of the files read back under the **training model** (exactly as
            training scored the design: :meth:`Evaluator.evaluate`); compared with
            ``trained``.
        nominal: metrics of the files read back under the simulation model ``model`` (the
            reference of the combined errors and the sweep).
        trained: the design's trained hard-quantized metric (``design.json``), if recorded.
        model: the simulation model (:class:`~optodesign.verify.model.SimModel`).
        convergence: how ``model`` was chosen (``None``: ``--fast``, the training model).
        errors_model: the model the combined errors and the sweep ran under (``model``, or
            the training model with ``errors_under_training_model``).
        combined: all configured errors together.
        sweep: one :class:`SweepResult` per swept error.
        passed: whether the combined errors keep the metric within the tolerance.
        samples, seed, device, test_samples: how it ran.
        examples: arrays for the figures (``nominal_t``/``sample_t`` transmissions,
            ``nominal_out``/``sample_out`` output intensities, ``labels``).
        seconds: wall time of each stage.
    """

    fab: FabStack
    config: ErrorConfig
    metric: str
    max_drop: float
    readback: dict[str, Any]
    nominal: dict[str, Any]
    trained: float | None
    model: SimModel
    convergence: Convergence | None
    combined: MCResult
    errors_model: SimModel
    sweep: list[SweepResult]
    passed: bool
    samples: int
    seed: int
    device: str
    test_samples: int
    examples: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def nominal_value(self) -> float:
        """The files' metric under the simulation model."""
        return float(self.nominal[self.metric])

    @property
    def readback_value(self) -> float:
        """The files' metric under the training model."""
        return float(self.readback[self.metric])

    @property
    def model_gap(self) -> float:
        """Metric under the simulation model minus under the training model."""
        return self.nominal_value - self.readback_value

    @property
    def reference_value(self) -> float:
        """The files' metric under the model the errors ran under."""
        same = self.errors_model == self.model
        return self.nominal_value if same else self.readback_value

    @property
    def drop(self) -> float:
        """Drop of the tolerance statistic under the combined errors."""
        return self.reference_value - self.config.tolerance.statistic_of(self.combined.values)

    @property
    def round_trip_exact(self) -> bool | None:
        if self.trained is None:
            return None
        return self.readback_value == self.trained


def _check_test_split(fab: FabStack, ev: Evaluator) -> None:
    """Refuse a dataset whose test split differs from the one export recorded."""
    from ..data.datasets import split_digest

    recorded = fab.manifest.conventions.get("test_split")
    if not recorded or not ev.task.supervised:
        return
    images, labels = ev.test_split()
    if split_digest(images, labels) != recorded.get("sha256"):
        raise UserError(
            f"data: the test split read here ({len(labels)} images) is not the one "
            f"manifest.json records ({recorded.get('count')} images, sha256 "
            f"{str(recorded.get('sha256'))[:12]}...): verify would score other images; "
            "point --data at the dataset the design was exported with")


def verify_fab(fab_dir: str | Path, *, errors: ErrorConfig | None = None, samples: int = 100,
               seed: int = 0, device: str = "cpu", source: Source = "auto",
               data: str | Path | None = None, test_samples: int | None = None,
               sweep: bool = True, sweep_samples: int | None = None,
               max_fields: int | None = None, progress: bool = False,
               fast: bool = False, model: SimModel | None = None,
               errors_under_training_model: bool = False,
               allow_edited: bool = False) -> VerifyResult:
    """Read a fab directory back and simulate it under fabrication errors.

    Args:
        fab_dir: written by ``optodesign export``.
        errors: error model, tolerance and sweep (``None``: :func:`default_errors`).
        samples: Monte-Carlo samples of the combined errors.
        seed: seed of every random draw.
        device: ``cpu`` or ``cuda``.
        source: ``auto``, ``gds`` or ``stl`` (see :mod:`optodesign.verify.readback`).
        data: dataset path (D2NN on MNIST/Fashion IDX files), overriding the design's.
        test_samples: use only the first N test images (D2NN).
        sweep: run the tolerance sweep.
        sweep_samples: samples per sweep point (default: the errors file's, else
            min(samples, 8)).
        max_fields: fields per forward pass (memory / speed trade-off).
        progress: show tqdm progress bars.
        fast: simulate under the training model (no convergence ladder).
        model: simulate under this model (no convergence ladder); default: the converged
            model of :func:`~optodesign.verify.model.converge`.
        errors_under_training_model: run the Monte Carlo and the sweep under the training
            model (compared with the read-back metric under it), the nominal model gap under
            the converged one: the quickstart's budget on 2 CPU cores.
        allow_edited: accept layer files edited after export and simulate what they make
            (:func:`~optodesign.verify.readback.read_fab`).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    oversample = errors.sweep.oversample if errors is not None else 8
    fab = read_fab(fab_dir, source=source, oversample=oversample, allow_edited=allow_edited)
    timings["read"] = time.perf_counter() - t0
    scales = fab.scales()
    cfg = errors or default_errors(scales)
    metric, max_drop = cfg.tolerance.resolve(fab.design.task)
    errs = cfg.errors
    if samples < 1:
        raise UserError(f"--samples: must be >= 1, got {samples}")
    if test_samples is not None and test_samples < 1:
        raise UserError(f"--test-samples: must be >= 1, got {test_samples}")

    dataset = None
    if data is not None:  # a supervised task's dataset from another directory
        dataset = task_of(fab.design).load_dataset(path=str(data))
    ev = Evaluator.from_design(fab.design, device=device, dataset=dataset)
    _check_test_split(fab, ev)

    t1 = time.perf_counter()
    readback = ev.evaluate(fab.transmissions(), max_samples=test_samples)
    timings["nominal"] = time.perf_counter() - t1
    trained = fab.design.metrics.get(metric)
    trained = float(trained) if isinstance(trained, (int, float)) else None
    if test_samples:  # a subset is not what training scored
        trained = None

    convergence = None
    with warnings.catch_warnings():
        # the training model has warned about its sampling once; the finer models of the
        # ladder and perturbed distances would repeat it for every step and sample
        warnings.simplefilter("ignore", SamplingWarning)
        t1 = time.perf_counter()
        if model is None and not fast:
            convergence = converge(fab, ev, metric=metric, test_samples=test_samples)
            model = convergence.chosen
        sim = model or SimModel.training(fab.design)
        ev_sim = evaluator_for(ev, sim)
        if convergence is not None:
            nominal = convergence.nominal
        elif sim.is_training(fab.design):
            nominal = readback
        else:
            t = torch.as_tensor(render(fab, fab.physical, sim).astype(np.complex64),
                                device=ev.device)
            nominal = ev_sim.evaluate(t, max_samples=test_samples)
        timings["model"] = time.perf_counter() - t1

        errors_model = sim
        if errors_under_training_model and not sim.is_training(fab.design):
            errors_model, ev_sim = SimModel.training(fab.design), ev
        reference = nominal if errors_model == sim else readback
        scorer = Scorer(ev_sim, test_samples=test_samples, max_fields=max_fields)
        t2 = time.perf_counter()
        combined = monte_carlo(fab, errs, samples=samples, scorer=scorer, metric=metric,
                               seed=seed, progress=progress, desc="combined errors")
        timings["combined"] = time.perf_counter() - t2
        results: list[SweepResult] = []
        if sweep:
            t3 = time.perf_counter()
            names = cfg.sweep.errors or tuple(ERRORS)
            n_sweep = sweep_samples or cfg.sweep.samples or min(samples, 8)
            results = tolerance_sweep(
                fab, errs, names=names, factors=cfg.sweep.factors, scales=scales,
                scorer=scorer, metric=metric, tolerance=cfg.tolerance, max_drop=max_drop,
                nominal=float(reference[metric]), samples=n_sweep, seed=seed,
                progress=progress)
            timings["sweep"] = time.perf_counter() - t3
        examples = _examples(fab, errs, scorer, seed)
    stat = cfg.tolerance.statistic_of(combined.values)
    passed = _within(float(reference[metric]), stat, max_drop)
    n_test = scorer.n_images
    return VerifyResult(fab=fab, config=cfg, metric=metric, max_drop=max_drop,
                        readback=readback, nominal=nominal, trained=trained, model=sim,
                        errors_model=errors_model,
                        convergence=convergence, combined=combined, sweep=results,
                        passed=passed, samples=samples, seed=seed, device=str(device),
                        test_samples=n_test, examples=examples, seconds=timings)


def _examples(fab: FabStack, model: ErrorModel, scorer: Scorer,
              seed: int) -> dict[str, np.ndarray]:
    """Nominal and sample-0 transmissions and outputs under the scorer's simulation model,
    for the report's figures (transmissions on the design's pixels: one sample per pixel)."""
    sim = scorer.sim
    (phys, _), = realisations(fab, model, [0], seed=seed)
    nominal_t = render(fab, fab.physical, sim)
    sample_t = render(fab, phys, sim)
    t = torch.as_tensor(np.stack([nominal_t, sample_t], axis=1).astype(np.complex64),
                        device=scorer.device)
    nom = scorer.intensities(t[:, :1], distances=fab.physical.distances,
                             wavelength=fab.physical.wavelength)[0]
    smp = scorer.intensities(t[:, 1:], distances=phys.distances, wavelength=phys.wavelength)[0]
    s = sim.oversample
    out = {"nominal_t": nominal_t[:, s // 2::s, s // 2::s],
           "sample_t": sample_t[:, s // 2::s, s // 2::s],
           "nominal_out": nom.cpu().numpy(), "sample_out": smp.cpu().numpy()}
    if scorer.labels is not None:
        out["labels"] = scorer.labels[scorer.example_images()]
    if fab.design.target is not None:
        out["target"] = np.asarray(fab.design.target)
    return out

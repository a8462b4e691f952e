"""The training loop: config -> quantized Design, with checkpoints, metrics CSV and plots.

A run directory holds ``config.toml`` (as given), ``run.json`` (the normalised config, its
hash and the epochs of every session), ``checkpoint.pt`` (after every epoch, atomic),
``metrics.csv``, ``design.npz`` + ``design.json`` (the hard-quantized result) and
``plots/*.png``. ``resume=True`` continues from the checkpoint and reaches the same result as
an uninterrupted run with the same seed: data order, initialisation and quantizer schedules
are functions of (seed, epoch), and the torch RNG state (Gumbel noise) is checkpointed. A
resume refuses a config that differs from the run's in anything but ``train.epochs``.

Checkpoints hold only tensors and plain data (numbers, strings, lists, dicts) and are read
with ``torch.load(..., weights_only=True)`` (:func:`load_checkpoint`): loading one never runs
code, whatever the file contains.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import distributed
from ..design import Design
from ..errors import ConfigError, UserError
from ..evaluate import Evaluator, reads_cells
from ..fileio import atomic_path, atomic_write_json, atomic_write_text
from ..models.functional import check_stack_sampling
from ..models.stack import DiffractiveStack
from ..quantize.base import Quantizer
from ..tasks import Task, get_task
from .build import build_quantizers, check_optics, process_table
from .config import Config
from .rundir import RUN_FORMAT, config_sha256, normalized_config, plain, read_resume_state

log = logging.getLogger(__name__)

__all__ = ["Fit", "Trainer", "TrainResult"]

@dataclass(frozen=True)
class TrainResult:
    design: Design
    out_dir: Path
    history: list[dict[str, Any]]


class _Step(torch.nn.Module):
    """One training step's forward pass as a module, so that
    :class:`~torch.nn.parallel.DistributedDataParallel` can wrap it: it returns the loss of
    this rank's share of the batch (and the intensities, for the running accuracy)."""

    def __init__(self, stack: DiffractiveStack, loss: Any) -> None:
        super().__init__()
        self.stack = stack
        self._loss = loss

    def forward(self, *args: Any) -> tuple[Tensor, Tensor]:
        return self._loss(*args)


@dataclass(frozen=True)
class Fit:
    """What :meth:`Trainer.fit` trained.

    Attributes:
        stack: the trained stack (in eval mode).
        history: one row per epoch (``epoch``, ``train_loss``, ``train_accuracy`` for a
            supervised task, ``test_<metric>_soft`` / ``_hard``).
        evaluator: the evaluator it scored with.
        kept_epoch: the 1-based epoch whose parameters ``stack`` holds: the best on the
            validation split (``train.keep = "best"``) or the last.
    """

    stack: DiffractiveStack
    history: list[dict[str, Any]]
    evaluator: Evaluator
    kept_epoch: int = 0


class Trainer:
    """Owns the loop; the model (:class:`DiffractiveStack`) owns only parameters."""

    def __init__(self, cfg: Config, out_dir: str | Path, *, device: str = "cpu",
                 progress: bool = True, config_text: str | None = None,
                 tensorboard: bool = False) -> None:
        self.cfg = cfg
        self.tensorboard = tensorboard
        if tensorboard:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise UserError("--tensorboard: needs the tensorboard package "
                                "(pip install tensorboard)")
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.config_text = config_text
        check_optics(cfg)
        if self.device.type == "cuda":  # the config check knew only the host's memory
            from .memory import check_memory

            free, _ = torch.cuda.mem_get_info(self.device)
            check_memory(cfg, available=free, where=f"{self.device} (free)")
        o = cfg.optics
        #: the one sampling of every layer, field and the Design (shape, pitch, zero padding)
        self.grid = o.grid
        self.shape = self.grid.shape
        self.process_table = process_table(cfg)
        self.task_type = get_task(cfg.task)
        prepared = self.task_type.setup_from_config(cfg)
        self.dataset = prepared.dataset
        task = self.task_type(prepared.setup, shape=self.shape, target=prepared.target)
        self.task = task
        structural = cfg.quantization.method == "binary" and \
            cfg.quantization.options.get("structural", True) is not False
        self.fixed_masks = self._structural_masks(task) if structural else None
        self.template = dict(
            setup=prepared.setup, wavelength=o.wavelength, pitch=self.grid.pitch,
            distances=o.distances, layer_kind="complex" if cfg.is_complex else "phase",
            pad=self.grid.pad, pixels=o.pixels, oversample=o.oversample,
            propagation=o.propagation,
            target=prepared.target,
            # a binary layer's free pixels stay in {0, 1}: an opaque third level is physics'
            free_levels=(0, 1) if cfg.quantization.method == "binary" else (),
        )
        self._step: torch.nn.Module | None = None
        self._errors = self._error_sampler()
        self._epoch_now, self._n_epochs_now, self._robust_step = 0, 1, 0

    # ------------------------------------------------------------------ setup helpers
    def _error_sampler(self) -> Any:
        robust = self.cfg.fabrication.robust
        if robust is None:
            return None
        from ..process import load_process
        from ..variation.spec import load_errors
        from .robust import ErrorSampler

        name = self.cfg.fabrication.process or self.cfg.quantization.process
        assert name is not None
        errors = load_errors(robust.errors)
        o = self.cfg.optics
        return ErrorSampler(errors.errors, process=load_process(name), grid=self.grid,
                            wavelength=o.wavelength, distances=o.distances,
                            seed=self.cfg.seed, oversample=errors.sweep.oversample,
                            periodic=self.task_type.periodic,
                            cells=reads_cells(self.task_type, o.pixels))

    def _structural_masks(self, task: Task) -> np.ndarray:
        from ..quantize.structural import structural_mask

        o = self.cfg.optics
        return structural_mask(shape=self.shape, pitch=self.grid.pitch, wavelength=o.wavelength,
                               distances=o.distances, detectors=task.structural_boxes(),
                               input_box=task.input_box())

    def design_from(self, stack: DiffractiveStack, metrics: dict[str, Any]) -> Design:
        tables = stack.level_tables() if self.process_table is None else np.broadcast_to(
            self.process_table, (len(stack), len(self.process_table))).copy()
        return Design(levels=stack.levels(), level_tables=tables, metrics=metrics,
                      quantizer={"method": self.cfg.quantization.method,
                                 "n_levels": int(tables.shape[1]),
                                 "process": self.cfg.quantization.process,
                                 "layers": [q.describe() for q in stack.quantizers]},
                      fixed_mask=self.fixed_masks, **self.template)

    def initial_raw(self, quantizers: Sequence[Quantizer]) -> list[Tensor] | None:
        """Raw parameters of the task's starting phase (:meth:`Task.initial_phase`: the
        ideal lens), or None for the quantizers' random start."""
        phase = self.task.initial_phase(self.grid, self.cfg.optics.wavelength)
        if phase is None:
            return None
        p = torch.as_tensor(np.asarray(phase), dtype=torch.float32)
        out = []
        for q in quantizers:
            if q.raw_kind == "complex":  # amplitude 0.9, as the quantizers' own start
                out.append(0.9 * torch.stack((torch.cos(p), torch.sin(p)), dim=-1))
            else:
                out.append(p.clone())
        return out

    def hard_transmissions(self, stack: DiffractiveStack) -> list[Tensor]:
        if self.process_table is None:
            return stack.transmissions("hard")
        table = torch.as_tensor(self.process_table.astype(np.complex64), device=self.device)
        return [table[q.indices(r)] for q, r in zip(stack.quantizers, stack.raw)]

    # ------------------------------------------------------------------ loop
    def run(self, *, resume: bool = False) -> TrainResult:
        """Train the config's quantizers in the run directory (checkpoints, metrics.csv,
        design, plots); ``resume`` continues from ``checkpoint.pt``."""
        quantizers = build_quantizers(self.cfg, self.process_table, self.fixed_masks)
        fit = self.fit(quantizers, resume=resume, checkpoint=True,
                       init_raw=self.initial_raw(quantizers))
        stack, evaluator = fit.stack, fit.evaluator
        with torch.no_grad():
            final = evaluator.evaluate(self.hard_transmissions(stack))
            fp = evaluator.evaluate(self._full_precision(stack))
        metrics = {k: v for k, v in final.items()}
        key = self.task_type.primary_metric
        # the latent phases QAT kept: trained to work *after* quantization, so this is a
        # diagnostic of the quantization gap, not a full-precision baseline (that is fp32)
        metrics[f"{key}_latent"] = fp[key]
        metrics["kept_epoch"] = fit.kept_epoch
        if self.fixed_masks is not None:
            from ..quantize.binary import stored_bits_per_pixel

            metrics["stored_bits_per_pixel"] = float(np.mean(
                [stored_bits_per_pixel(m) for m in self.fixed_masks]))
        design = self.design_from(stack, metrics)
        if distributed.is_main():
            design.save(self.out_dir)
            from .plots import plot_run

            plot_run(self.out_dir, design, fit.history, evaluator,
                     self.hard_transmissions(stack))
        distributed.barrier()
        return TrainResult(design, self.out_dir, fit.history)

    def fit(self, quantizers: Sequence[Quantizer], *, epochs: int | None = None,
            qat_start: int | None = None, init_raw: Sequence[Tensor] | None = None,
            resume: bool = False, checkpoint: bool = False,
            design: Callable[[DiffractiveStack, dict[str, Any]], Design] | None = None) -> Fit:
        """The one training loop: a stack of ``quantizers`` trained on the config's task.

        Full precision before ``qat_start``, then ``prepare`` and quantization-aware training
        with the quantizers' schedules over the remaining epochs; every epoch is scored on
        the training path and with hard levels. The data order, initialisation and schedules
        are functions of (seed, epoch). Under torchrun each rank trains on its share of every
        batch (:class:`~torch.nn.parallel.DistributedDataParallel`).

        Args:
            quantizers: one per layer (``len == cfg.optics.layers``).
            epochs: default ``cfg.train.epochs``; 0 trains nothing (the result is the
                post-training quantization of the initial parameters).
            qat_start: first quantization-aware epoch; default ``cfg.train.qat_start``.
            init_raw: per-layer raw parameters to start from (default: the quantizers'
                ``init_raw`` with the config seed).
            resume: continue from the run directory's checkpoint (with ``checkpoint``).
            checkpoint: write ``config.toml``, ``run.json``, ``checkpoint.pt`` and
                ``metrics.csv`` into the run directory (rank 0).
            design: ``(stack, metrics) -> Design`` for the evaluator (default
                :meth:`design_from`; a mixed-precision stack passes its own).
        """
        cfg, tr = self.cfg, self.cfg.train
        n_epochs = tr.epochs if epochs is None else int(epochs)
        start_qat = tr.qat_start if qat_start is None else int(qat_start)
        if resume and not checkpoint:
            raise ValueError("resume: needs checkpoint=True (the run directory's checkpoint)")
        ckpt_path = self.out_dir / "checkpoint.pt"
        state = read_resume_state(self.out_dir, cfg) if resume else None
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        stack = DiffractiveStack(list(quantizers), self.shape, generator=gen).to(self.device)
        if init_raw is not None:
            _copy_raw(stack, init_raw)
        opt = torch.optim.Adam(stack.parameters(), lr=tr.lr)
        history: list[dict[str, Any]] = []
        start = 0
        best: dict[str, Any] | None = None  # {"epoch", "score", "stack"}: the kept parameters
        sessions: list[dict[str, Any]] = []
        if state is not None:
            try:
                stack.load_state_dict(state["stack"])
                opt.load_state_dict(state["optimizer"])
                torch.set_rng_state(state["rng"])
                if self.device.type == "cuda" and isinstance(state.get("cuda_rng"), Tensor):
                    torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            except (RuntimeError, KeyError, ValueError, TypeError) as e:
                first = (str(e).strip().splitlines() or [""])[0][:120]
                raise UserError(f"{ckpt_path}: does not fit this config's model "
                                f"({type(e).__name__}: {first})") from None
            history = state["history"]
            start = state["epoch"] + 1
            best = state.get("best")
            run = state.get("run")
            if isinstance(run, dict) and isinstance(run.get("sessions"), list):
                sessions = list(run["sessions"])
            log.info("resuming at epoch %d", start + 1)
        main = distributed.is_main()
        run_info: dict[str, Any] = {}
        if checkpoint:
            norm = normalized_config(cfg)
            world = distributed.world_size()
            sessions.append({"resume": bool(resume), "start_epoch": start, "epochs": n_epochs,
                             "world_size": world})
            run_info = {"format": RUN_FORMAT, "config_sha256": config_sha256(norm),
                        "config": norm, "epochs": n_epochs, "sessions": sessions,
                        "world_size": world}
            if main:  # rank 0 writes; under torchrun the other ranks only compute
                self.out_dir.mkdir(parents=True, exist_ok=True)
                if self.config_text is not None:
                    atomic_write_text(self.out_dir / "config.toml", self.config_text)
                atomic_write_json(self.out_dir / "run.json", run_info)
        self._step = self._make_step(stack)
        writer = None
        if self.tensorboard and checkpoint and main:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run drops the events of epochs it trains again
            writer = SummaryWriter(str(self.out_dir / "tensorboard"),
                                   purge_step=start + 1 if state is not None else None)
        evaluator = Evaluator.from_design((design or self.design_from)(stack, {}),
                                          device=self.device, dataset=self.dataset)
        key = self.task_type.primary_metric
        if n_epochs == 0:  # post-training quantization of the clipped (wrapped) raw values
            stack.prepare()
        for epoch in range(start, n_epochs):
            for group in opt.param_groups:
                group["lr"] = tr.lr_at(epoch, n_epochs)
            qat = epoch >= start_qat
            if epoch == start_qat:
                stack.prepare()
            if qat:
                stack.set_progress(epoch - start_qat, n_epochs - start_qat)
            stack.train()
            train_loss, train_acc = self._epoch(stack, opt, evaluator, epoch, qat,
                                                n_epochs=n_epochs)
            stack.eval()
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss}
            if train_acc is not None:
                row["train_accuracy"] = train_acc
            with torch.no_grad():
                soft = evaluator.evaluate(stack.transmissions("train") if qat else
                                          self._full_precision(stack))
                hard = evaluator.evaluate(self.hard_transmissions(stack))
            row[f"test_{key}_soft"] = soft[key]
            row[f"test_{key}_hard"] = hard[key]
            score = self._validation_score(evaluator, stack, hard[key])
            if score is not None:
                row[f"val_{key}_hard" + ("" if self._errors is None else "_errors")] = score
                if cfg.train.keep == "best" and (best is None or score > best["score"]):
                    best = {"epoch": epoch, "score": score,
                            "stack": {k: v.detach().clone()
                                      for k, v in stack.state_dict().items()}}
            history.append(row)
            if checkpoint and main:
                self._write_metrics(history)
                buf = io.BytesIO()
                # tensors and plain data only: load_checkpoint reads it with weights_only=True
                torch.save({"epoch": epoch, "stack": stack.state_dict(),
                            "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                            # Gumbel noise on a GPU comes from its own generator
                            **({"cuda_rng": torch.cuda.get_rng_state(self.device)}
                               if self.device.type == "cuda" else {}),
                            "history": plain(history), "run": run_info,
                            **({"best": best} if best is not None else {})}, buf)
                with atomic_path(ckpt_path) as tmp:
                    tmp.write_bytes(buf.getvalue())
                self._plot_epoch(stack, evaluator, history, design)
                if writer is not None:
                    for name, value in row.items():
                        if name != "epoch" and isinstance(value, (int, float)):
                            writer.add_scalar(name, value, epoch + 1)
                    writer.flush()
            log.info("epoch %d: %s", epoch + 1, row)
        if writer is not None:
            writer.close()
        kept = n_epochs
        if best is not None and best["epoch"] != n_epochs - 1:
            stack.load_state_dict(best["stack"])
            kept = best["epoch"] + 1
            log.info("keeping epoch %d (best validation %s %.4g)", kept, key, best["score"])
        stack.eval()
        return Fit(stack, history, evaluator, kept_epoch=kept)

    def train_split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(images, labels, val_images, val_labels)``: the training samples the config
        uses, less the last ``data.validation_samples`` (default a tenth), which are held
        out to choose the kept epoch and never trained on."""
        assert self.dataset is not None
        d = self.cfg.data
        images, labels = self.dataset.train_images, self.dataset.train_labels
        if d.train_samples:
            images, labels = images[: d.train_samples], labels[: d.train_samples]
        n_val = len(labels) // 10 if d.validation_samples is None else d.validation_samples
        if n_val >= len(labels):
            raise UserError(f"data.validation_samples: {n_val} leaves none of the "
                            f"{len(labels)} training samples to train on")
        cut = len(labels) - n_val
        return images[:cut], labels[:cut], images[cut:], labels[cut:]

    def _validation_score(self, evaluator: Evaluator, stack: DiffractiveStack,
                          hard_metric: float) -> float | None:
        """The primary metric of the hard design on the validation split (supervised), or
        the hard metric itself for a single-target task (its metric is its objective; there
        is no test set to keep apart). ``None`` when nothing is held out.

        Under error-aware training it is the configured statistic of that metric over
        :data:`VALIDATION_REALISATIONS` fixed realisations of the errors file at its own
        magnitudes (what verify applies), the same ones every epoch: the kept epoch is the
        most robust one, not the best error-free one (which is an early, fragile one):
        :func:`~optodesign.train.robust.validation_score`."""
        supervised = self.task_type.supervised
        images = labels = None
        if supervised:
            _, _, images, labels = self.train_split()
            if len(labels) == 0:
                return None
        if self._errors is None:
            if not supervised:
                return float(hard_metric)
            with torch.no_grad():
                pred = evaluator.classify(self.hard_transmissions(stack), images)
            return float((pred == labels).mean())
        from .robust import validation_score

        robust = self.cfg.fabrication.robust
        assert robust is not None
        return validation_score(self._errors, self._made(stack),
                                list(self.hard_transmissions(stack)), evaluator,
                                statistic=robust.statistic, images=images, labels=labels)

    def _plot_epoch(self, stack: DiffractiveStack, evaluator: Evaluator,
                    history: list[dict[str, Any]], design: Any) -> None:
        """The run's plots after every epoch, so a long run can be watched (rank 0)."""
        from .plots import plot_run

        with torch.no_grad():
            d = (design or self.design_from)(stack, {})
            plot_run(self.out_dir, d, history, evaluator, self.hard_transmissions(stack))

    def _make_step(self, stack: DiffractiveStack) -> torch.nn.Module:
        """The step module; under torchrun wrapped in DistributedDataParallel (gradients
        averaged over ranks; each rank's loss is scaled so the average is the loss of the
        whole global batch, as in one process)."""
        step = _Step(stack, self._step_loss)
        if distributed.world_size() == 1:
            return step
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # quantizer parameters (e.g. PSQ-LT's temperature) take no gradient before QAT starts
        return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)

    def _step_loss(self, field: Tensor, y: Tensor | None, weight: float,
                   qat: bool) -> tuple[Tensor, Tensor]:
        stack, ev = self._stack_of_step(), self._evaluator
        ts = stack.transmissions("train") if qat else self._full_precision(stack)
        inten = ev.output_intensity(field, ts)
        # a plane-wave task: one field, the same on every rank, weight 1
        loss = weight * ev.task.loss(inten, y)
        if self._errors is not None and qat:
            loss = weight * self._robust_loss(field, ts, y, loss / max(weight, 1e-30))
        total = loss + stack.regularization()
        penalty = [q.rule_penalty() for q in stack.quantizers if hasattr(q, "rule_penalty")]
        if any(p is not None for p in penalty):  # the rule count, relative to the loss's size
            total = total + self.cfg.fabrication.penalty * loss.detach().abs() * sum(
                p for p in penalty if p is not None)
        return total, inten

    def _robust_loss(self, field: Tensor, ts: list[Tensor], y: Tensor | None,
                     nominal: Tensor) -> Tensor:
        """The configured statistic of the task loss over sampled fabrication errors
        (:mod:`optodesign.train.robust`); the nominal design counts as one sample."""
        from .robust import aggregate

        robust, sampler = self.cfg.fabrication.robust, self._errors
        assert robust is not None and sampler is not None
        scale = robust.scale(self._epoch_now, self._n_epochs_now)
        self._robust_step += 1
        stack, ev = self._stack_of_step(), self._evaluator
        made = self._made(stack)
        losses = [nominal]
        for k in range(robust.samples):
            index = (self._epoch_now * 2**32 + self._robust_step - 1) * robust.samples + k
            r = sampler.sample(ts, made, scale=scale, index=index)
            losses.append(ev.task.loss(ev.output_intensity(
                field, r.transmissions, wavelength=r.wavelength, distances=r.distances), y))
        return aggregate(torch.stack(losses), robust.statistic)

    def _made(self, stack: DiffractiveStack) -> Any:
        """The stack's hard design as fabricated without errors (the error sampler's
        nominal), with the process's level table."""
        assert self._errors is not None
        tables = stack.level_tables() if self.process_table is None else np.broadcast_to(
            self.process_table, (len(stack), len(self.process_table)))
        return self._errors.nominal(stack.levels(), tables)

    def _stack_of_step(self) -> DiffractiveStack:
        assert self._step is not None
        step = self._step.module if hasattr(self._step, "module") else self._step
        return step.stack  # type: ignore[return-value]

    def _full_precision(self, stack: DiffractiveStack) -> list[Tensor]:
        if self.cfg.is_complex:
            from ..quantize.complex import clip_to_unit_disk, raw_to_complex

            return [clip_to_unit_disk(raw_to_complex(q.pre(r)))
                    for q, r in zip(stack.quantizers, stack.raw, strict=True)]
        return [torch.polar(torch.ones_like(p), p) for p in
                (q.pre(r) for q, r in zip(stack.quantizers, stack.raw, strict=True))]

    def _epoch(self, stack: DiffractiveStack, opt: torch.optim.Optimizer, ev: Evaluator,
               epoch: int, qat: bool, *, n_epochs: int | None = None) -> tuple[float, float | None]:
        """One epoch of :meth:`fit` (the GPU benchmark times it alone)."""
        cfg, tr = self.cfg, self.cfg.train
        from tqdm.auto import tqdm

        n_epochs = tr.epochs if n_epochs is None else n_epochs
        self._evaluator = ev
        # the error-aware sample numbers are functions of (epoch, step): a resume redraws them
        self._epoch_now, self._n_epochs_now, self._robust_step = epoch, n_epochs, 0
        if self._step is None or self._stack_of_step() is not stack:
            self._step = self._make_step(stack)
        world, rank = distributed.world_size(), distributed.rank()
        losses: list[float] = []
        correct = seen = 0
        if self.task_type.supervised:
            assert self.dataset is not None
            images, labels, _, _ = self.train_split()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(labels))
            n_batches = math.ceil(len(order) / tr.batch_size)
            bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{n_epochs}",
                       disable=not self.progress or not distributed.is_main(), leave=False,
                       mininterval=0.5)
            for b in bar:
                batch = order[b * tr.batch_size:(b + 1) * tr.batch_size]
                # this rank's contiguous share of the global batch; the loss is a batch mean,
                # so weighting it by world * share / batch makes DDP's gradient average the
                # gradient of the whole batch's mean (a rank with no share still steps)
                idx = np.array_split(batch, world)[rank]
                weight = world * len(idx) / len(batch)
                if len(idx) == 0:
                    idx, weight = batch[:1], 0.0
                field = ev.images_to_field(images[idx])
                if epoch == 0 and b == 0:  # sampling of the fields at every plane (issue #12)
                    check_stack_sampling(field, ev.layers(stack.transmissions("hard")),
                                         ev.design.distances, grid=ev.grid,
                                         wavelength=ev.design.wavelength)
                y = torch.as_tensor(labels[idx], device=self.device)
                loss, inten = self._step(field, y, weight, qat)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    hits = (ev.task.predict(inten) == y).sum()
                    # the mean over ranks of their losses is the whole batch's loss
                    stats = torch.tensor([loss.item() / world,
                                          float(hits) if weight else 0.0,
                                          float(len(idx)) if weight else 0.0],
                                         dtype=torch.float64)
                    if world > 1:
                        stats = distributed.all_reduce_sum(stats)
                losses.append(float(stats[0]))
                correct += int(stats[1])
                seen += int(stats[2])
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", acc=f"{correct / seen:.3f}")
            return float(np.mean(losses)), correct / max(seen, 1)
        bar = tqdm(range(tr.steps_per_epoch), desc=f"epoch {epoch + 1}/{n_epochs}",
                   disable=not self.progress or not distributed.is_main(), leave=False,
                   mininterval=0.5)
        field = ev.plane_wave()
        for _ in bar:
            loss, _ = self._step(field, None, 1.0, qat)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
        return float(np.mean(losses)), None

    def _write_metrics(self, history: list[dict[str, Any]]) -> None:
        keys = list(dict.fromkeys(k for row in history for k in row))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for row in history:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.out_dir / "metrics.csv", buf.getvalue())


def _copy_raw(stack: DiffractiveStack, init_raw: Sequence[Tensor]) -> None:
    """Start ``stack`` from given raw parameters (shapes checked, one-line ConfigError)."""
    if len(init_raw) != len(stack.raw):
        raise ConfigError(f"init_raw: {len(init_raw)} layers for {len(stack.raw)} quantizers")
    with torch.no_grad():
        for p, r in zip(stack.raw, init_raw, strict=True):
            if tuple(p.shape) != tuple(r.shape):
                kind = stack.quantizers[0].raw_kind
                raise ConfigError(f"init_raw: shape {tuple(r.shape)} != layer shape "
                                  f"{tuple(p.shape)} (raw kind {kind!r})")
            p.copy_(r.to(p.device, p.dtype))

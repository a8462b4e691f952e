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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import distributed, tasks
from ..data.datasets import load_dataset
from ..data.targets import image_target, spot_array, spot_boxes, text_target
from ..design import Design
from ..errors import ConfigError, UserError
from ..evaluate import PRIMARY_METRIC, Evaluator
from ..fileio import atomic_path, atomic_write_json, atomic_write_text
from ..models.functional import auto_detectors, forward_stack
from ..models.stack import DiffractiveStack
from ..optics.propagation import check_sampling
from ..quantize.base import Quantizer
from .config import COMPLEX_METHODS, Config
from .rundir import RUN_FORMAT, config_sha256, normalized_config, plain, read_resume_state

log = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainResult", "build_quantizers", "check_optics"]

@dataclass(frozen=True)
class TrainResult:
    design: Design
    out_dir: Path
    history: list[dict[str, Any]]


def check_optics(cfg: Config) -> None:
    """Refuse geometries the sampling checks call meaningless (an aliased grid)."""
    o = cfg.optics
    for i, d in enumerate(o.distances):
        if d == 0:
            continue
        rep = check_sampling((o.size, o.size), d, pitch=o.pitch, wavelength=o.wavelength,
                             pad=o.pad)
        if rep.fatal:
            raise ConfigError(f"optics.distances[{i}]: {rep.problems[0]}")


def _process_table(cfg: Config) -> np.ndarray | None:
    q = cfg.quantization
    if q.process is None:
        return None
    from ..process import load_process

    process = load_process(q.process)
    if q.method in COMPLEX_METHODS and "levels" not in cfg.source.get("quantization", {}):
        return np.asarray(process.level_table(None), dtype=np.complex128)  # every meta-atom
    if q.phases is not None:
        return np.asarray(process.level_table(np.asarray(q.phases)), dtype=np.complex128)
    return np.asarray(process.level_table(q.levels), dtype=np.complex128)


def _codebook(cfg: Config, process_table: np.ndarray | None) -> np.ndarray:
    from ..quantize import codebooks

    spec = cfg.quantization.codebook or ("process" if process_table is not None else
                                         f"phase:{cfg.quantization.levels}")
    kind, _, args = spec.partition(":")
    try:
        nums = [int(a) for a in args.split(",")] if args else []
        if kind == "process":
            if process_table is None:
                raise ConfigError("quantization.codebook: 'process' needs quantization.process")
            return codebooks.table_codebook(process_table)
        if kind == "polar":
            return codebooks.polar_codebook(nums[0], nums[1])
        if kind == "square":
            return codebooks.square_codebook(nums[0])
        if kind == "phase":
            return codebooks.phase_codebook(nums[0])
    except (IndexError, ValueError):
        pass
    raise ConfigError(f"quantization.codebook: cannot read {spec!r} (allowed: process, "
                      f"polar:A,P, square:N, phase:L)")


def build_quantizers(cfg: Config, process_table: np.ndarray | None,
                     fixed_masks: np.ndarray | None = None) -> list[Quantizer]:
    """One quantizer per layer, from the config (and the process's level table)."""
    q = cfg.quantization
    out: list[Quantizer] = []
    for layer in range(cfg.optics.layers):
        if q.method in COMPLEX_METHODS:
            from ..quantize.complex import make_complex_quantizer

            cb = _codebook(cfg, process_table) if q.method.startswith("joint") else None
            options = dict(q.options)
            if q.method == "reim":
                # a Re/Im lattice on [-1, 1]² has corners with |t| = √2, which no passive
                # element makes; 1/√2 keeps the whole lattice inside the unit disk
                options.setdefault("extent", 1 / math.sqrt(2))
            out.append(make_complex_quantizer(q.method, cb, **options))
        elif q.method == "binary":
            from ..quantize.binary import BinaryQuantizer

            mask = None if fixed_masks is None else fixed_masks[layer]
            options = {k: v for k, v in q.options.items() if k != "structural"}
            try:
                out.append(BinaryQuantizer(fixed_mask=mask, **options))
            except TypeError as e:
                raise ConfigError(f"quantization.options: {e}") from None
        else:
            from ..quantize.phase import make_phase_quantizer

            if process_table is not None:
                phases: Any = np.mod(np.angle(process_table), 2 * np.pi)
                phases[phases > 2 * np.pi - 1e-9] = 0.0
            elif q.phases is not None:
                phases = np.asarray(q.phases)
            else:
                phases = q.levels
            out.append(make_phase_quantizer(q.method, phases, **q.options))
    return out


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


class Trainer:
    """Owns the loop; the model (:class:`DiffractiveStack`) owns only parameters."""

    def __init__(self, cfg: Config, out_dir: str | Path, *, device: str = "cpu",
                 progress: bool = True, config_text: str | None = None) -> None:
        self.cfg = cfg
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
        self.shape = (o.size, o.size)
        self.process_table = _process_table(cfg)
        self.dataset = None
        extra: dict[str, Any] = {}
        target = None
        detectors: list[list[int]] = []
        if cfg.task == "d2nn":
            self.dataset = load_dataset(cfg.data.dataset, cfg.data.path)
            detectors = ([list(b) for b in cfg.detectors.boxes] if cfg.detectors.boxes else
                         auto_detectors(self.dataset.n_classes, self.shape, cfg.detectors.size))
            if len(detectors) != self.dataset.n_classes:
                raise ConfigError(f"detectors.boxes: {len(detectors)} boxes for "
                                  f"{self.dataset.n_classes} classes")
        elif cfg.task == "hologram":
            t = cfg.target
            target = (image_target(t.image, self.shape) if t.kind == "image" and t.image else
                      spot_array(self.shape, t.spots, t.spacing, t.spot_size)
                      if t.kind == "spots" else text_target(t.text, self.shape))
        elif cfg.task == "splitter":
            t = cfg.target
            extra["spot_boxes"] = spot_boxes(self.shape, t.spots, t.spacing, t.spot_size)
            target = spot_array(self.shape, t.spots, t.spacing, t.spot_size)
        elif cfg.task == "lens":
            f = o.distances[-1]
            extra["focal_length"] = f
            extra["focus_radius"] = tasks.focus_radius(
                wavelength=o.wavelength, focal_length=f, aperture=o.size * o.pitch, pitch=o.pitch)
            extra["ideal_peak"] = self._ideal_lens_peak(f)
        structural = cfg.quantization.method == "binary" and \
            cfg.quantization.options.get("structural", True) is not False
        self.fixed_masks = self._structural_masks(detectors) if structural else None
        self.template = dict(
            task=cfg.task, wavelength=o.wavelength, pitch=o.pitch, distances=o.distances,
            layer_kind="complex" if cfg.quantization.method in COMPLEX_METHODS else "phase",
            pad=o.pad, detectors=tuple(tuple(b) for b in detectors), target=target,
            input=({"encoding": cfg.data.encoding, "image_size": cfg.data.image_size}
                   if cfg.task == "d2nn" else {"illumination": "plane wave, unit amplitude"}),
            dataset=self._dataset_ref(), extra=extra,
        )

    # ------------------------------------------------------------------ setup helpers
    def _dataset_ref(self) -> dict[str, Any]:
        if self.cfg.task != "d2nn":
            return {}
        d = self.cfg.data
        path = str(Path(d.path).resolve()) if d.path else None
        return {"name": d.dataset, "path": path, "test_samples": d.test_samples}

    def _structural_masks(self, detectors: list[list[int]]) -> np.ndarray:
        from ..quantize.structural import structural_mask

        o = self.cfg.optics
        s = self.cfg.data.image_size
        y0 = (o.size - s) // 2
        inp = [y0, y0, s, s] if self.cfg.task == "d2nn" else None
        dets = detectors or [[0, 0, o.size, o.size]]  # metasurfaces: the whole output plane
        return structural_mask(shape=self.shape, pitch=o.pitch, wavelength=o.wavelength,
                               distances=o.distances, detectors=dets, input_box=inp)

    def _ideal_lens_peak(self, focal_length: float) -> float:
        o = self.cfg.optics
        phase = tasks.ideal_lens_phase(self.shape, pitch=o.pitch, wavelength=o.wavelength,
                                       focal_length=focal_length)
        t = torch.polar(torch.ones(self.shape), torch.as_tensor(phase, dtype=torch.float32))
        u = forward_stack(torch.ones((1, *self.shape), dtype=torch.complex64), [t],
                          o.distances, pitch=o.pitch, wavelength=o.wavelength, pad=o.pad)
        return float((u.abs() ** 2)[0, o.size // 2, o.size // 2])

    def design_from(self, stack: DiffractiveStack, metrics: dict[str, Any]) -> Design:
        tables = stack.level_tables() if self.process_table is None else np.broadcast_to(
            self.process_table, (len(stack), len(self.process_table))).copy()
        return Design(levels=stack.levels(), level_tables=tables, metrics=metrics,
                      quantizer={"method": self.cfg.quantization.method,
                                 "n_levels": int(tables.shape[1]),
                                 "process": self.cfg.quantization.process,
                                 "layers": [q.describe() for q in stack.quantizers]},
                      fixed_mask=self.fixed_masks, **self.template)

    def hard_transmissions(self, stack: DiffractiveStack) -> list[Tensor]:
        if self.process_table is None:
            return stack.transmissions("hard")
        table = torch.as_tensor(self.process_table.astype(np.complex64), device=self.device)
        return [table[q.indices(r)] for q, r in zip(stack.quantizers, stack.raw)]

    # ------------------------------------------------------------------ loop
    def run(self, *, resume: bool = False) -> TrainResult:
        cfg, tr = self.cfg, self.cfg.train
        ckpt_path = self.out_dir / "checkpoint.pt"
        norm = normalized_config(cfg)
        state = read_resume_state(self.out_dir, cfg) if resume else None
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        stack = DiffractiveStack(build_quantizers(cfg, self.process_table, self.fixed_masks),
                                 self.shape, generator=gen).to(self.device)
        opt = torch.optim.Adam(stack.parameters(), lr=tr.lr)
        history: list[dict[str, Any]] = []
        start = 0
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
            run = state.get("run")
            if isinstance(run, dict) and isinstance(run.get("sessions"), list):
                sessions = list(run["sessions"])
            log.info("resuming at epoch %d", start + 1)
        world = distributed.world_size()
        main = distributed.is_main()
        sessions.append({"resume": bool(resume), "start_epoch": start, "epochs": tr.epochs,
                         "world_size": world})
        run_info = {"format": RUN_FORMAT, "config_sha256": config_sha256(norm), "config": norm,
                    "epochs": tr.epochs, "sessions": sessions, "world_size": world}
        if main:  # rank 0 writes; under torchrun the other ranks only compute
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.config_text is not None:
                atomic_write_text(self.out_dir / "config.toml", self.config_text)
            atomic_write_json(self.out_dir / "run.json", run_info)
        self._step = self._make_step(stack)
        evaluator = Evaluator.from_design(self.design_from(stack, {}), device=self.device,
                                          dataset=self.dataset)
        for epoch in range(start, tr.epochs):
            qat = epoch >= tr.qat_start
            if epoch == tr.qat_start:
                stack.prepare()
            if qat:
                stack.set_progress(epoch - tr.qat_start, tr.epochs - tr.qat_start)
            stack.train()
            train_loss, train_acc = self._epoch(stack, opt, evaluator, epoch, qat)
            stack.eval()
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss}
            if train_acc is not None:
                row["train_accuracy"] = train_acc
            with torch.no_grad():
                soft = evaluator.evaluate(stack.transmissions("train") if qat else
                                          self._full_precision(stack))
                hard = evaluator.evaluate(self.hard_transmissions(stack))
            key = PRIMARY_METRIC[cfg.task]
            row[f"test_{key}_soft"] = soft[key]
            row[f"test_{key}_hard"] = hard[key]
            history.append(row)
            if main:
                self._write_metrics(history)
                buf = io.BytesIO()
                # tensors and plain data only: load_checkpoint reads it with weights_only=True
                torch.save({"epoch": epoch, "stack": stack.state_dict(),
                            "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                            # Gumbel noise on a GPU comes from its own generator
                            **({"cuda_rng": torch.cuda.get_rng_state(self.device)}
                               if self.device.type == "cuda" else {}),
                            "history": plain(history), "run": run_info}, buf)
                with atomic_path(ckpt_path) as tmp:
                    tmp.write_bytes(buf.getvalue())
            log.info("epoch %d: %s", epoch + 1, row)
        with torch.no_grad():
            final = evaluator.evaluate(self.hard_transmissions(stack))
            fp = evaluator.evaluate(self._full_precision(stack))
        metrics = {k: v for k, v in final.items()}
        key = PRIMARY_METRIC[cfg.task]
        metrics[f"{key}_full_precision"] = fp[key]
        if self.fixed_masks is not None:
            from ..quantize.binary import stored_bits_per_pixel

            metrics["stored_bits_per_pixel"] = float(np.mean(
                [stored_bits_per_pixel(m) for m in self.fixed_masks]))
        design = self.design_from(stack, metrics)
        if main:
            design.save(self.out_dir)
            from .plots import plot_run

            plot_run(self.out_dir, design, history, evaluator, self.hard_transmissions(stack))
        distributed.barrier()
        return TrainResult(design, self.out_dir, history)

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
        stack, ev, tr = self._stack_of_step(), self._evaluator, self.cfg.train
        ts = stack.transmissions("train") if qat else self._full_precision(stack)
        inten = ev.output_intensity(field, ts)
        if y is None:  # a metasurface: one plane wave, the same on every rank
            loss = self._metasurface_loss(inten[0], ev)
        else:
            loss = weight * tasks.classification_loss(inten, y, ev.boxes, loss=tr.loss,
                                                      temperature=tr.temperature)
        return loss + stack.regularization(), inten

    def _stack_of_step(self) -> DiffractiveStack:
        step = self._step.module if hasattr(self._step, "module") else self._step
        return step.stack

    def _full_precision(self, stack: DiffractiveStack) -> list[Tensor]:
        if self.cfg.quantization.method in COMPLEX_METHODS:
            from ..quantize.complex import clip_to_unit_disk, raw_to_complex

            return [clip_to_unit_disk(raw_to_complex(r)) for r in stack.raw]
        return [torch.polar(torch.ones_like(r), r) for r in stack.raw]

    def _epoch(self, stack: DiffractiveStack, opt: torch.optim.Optimizer,
               ev: Evaluator, epoch: int, qat: bool) -> tuple[float, float | None]:
        cfg, tr = self.cfg, self.cfg.train
        from tqdm.auto import tqdm

        self._evaluator = ev
        if getattr(self, "_step", None) is None or self._stack_of_step() is not stack:
            self._step = self._make_step(stack)  # adaptive precision passes its own stack
        world, rank = distributed.world_size(), distributed.rank()
        losses: list[float] = []
        correct = seen = 0
        if cfg.task == "d2nn":
            assert self.dataset is not None
            images, labels = self.dataset.train_images, self.dataset.train_labels
            if cfg.data.train_samples:
                images, labels = images[: cfg.data.train_samples], labels[: cfg.data.train_samples]
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(labels))
            n_batches = math.ceil(len(order) / tr.batch_size)
            bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{tr.epochs}",
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
                y = torch.as_tensor(labels[idx], device=self.device)
                loss, inten = self._step(field, y, weight, qat)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    hits = (tasks.classification_predictions(inten, ev.boxes) == y).sum()
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
        bar = tqdm(range(tr.steps_per_epoch), desc=f"epoch {epoch + 1}/{tr.epochs}",
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

    def _metasurface_loss(self, inten: Tensor, ev: Evaluator) -> Tensor:
        task = self.cfg.task
        if task == "hologram":
            return tasks.hologram_loss(inten, ev.target())
        if task == "lens":
            return tasks.focus_loss(inten, int(ev.design.extra["focus_radius"]), ev.incident)
        return tasks.splitter_loss(inten, ev.boxes, ev.incident)

    def _write_metrics(self, history: list[dict[str, Any]]) -> None:
        keys = list(dict.fromkeys(k for row in history for k in row))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for row in history:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.out_dir / "metrics.csv", buf.getvalue())

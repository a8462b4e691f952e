"""Score complex transmissions for a Design's task: the one scoring slot.

:class:`Evaluator` is built from a :class:`~optodesign.design.Design` alone (its task setup,
optics, target, dataset reference), so training (per-epoch and final metrics), verification
(files read back, perturbed: :meth:`Evaluator.score_realisations`), refinement (the loss of
observed pixels, through :attr:`Evaluator.task`) and adaptive precision
(:meth:`Evaluator.classify` on a validation split) score a design the same way. Which
metrics, and how a batch is read, is the task's business (:mod:`optodesign.tasks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data.datasets import Dataset
from .design import Design
from .grid import Grid
from .models.functional import forward_stack, output_intensity
from .optics.cells import cell_band_limit, fine_axis, fine_grid, pixel_mean, upsample
from .tasks import Task, task_of

__all__ = ["Evaluator", "reads_cells"]


def reads_cells(task: Task | type[Task], pixels: str, oversample: int = 1) -> bool:
    """Whether the layers of a design of ``task`` (its class or an instance) with ``pixels``,
    simulated with ``oversample`` samples per pixel, are drawings of flat-topped cells read
    band-limited to the grid (:attr:`Evaluator.cells`): a near-field task whose design has
    ``pixels = "cells"``, or is drawn with ``oversample > 1``. Such a layer moves by exact
    transforms of its band-limited drawing (:func:`~optodesign.optics.placement.place_drawn`);
    point samples by interpolation (:func:`~optodesign.optics.placement.place`)."""
    return task.output_plane == "near" and (oversample > 1 or pixels == "cells")


@dataclass
class Evaluator:
    """Everything needed to turn transmissions into metrics (no learnable state)."""

    design: Design
    device: torch.device
    dataset: Dataset | None = None
    task: Task = field(init=False)
    #: the design's sampling, shared by every field scored (:attr:`Design.grid`)
    grid: Grid = field(init=False)

    def __post_init__(self) -> None:
        self.task = task_of(self.design, device=self.device)
        self.grid = self._sampling()
        if self.cells:  # references (a lens's ideal peak) under this evaluator's model
            self.task = self.task.under(self)

    def _sampling(self) -> Grid:
        return fine_grid(self.design.grid, self.oversample)

    @classmethod
    def from_design(cls, design: Design, *, device: str | torch.device = "cpu",
                    dataset: Dataset | None = None) -> Evaluator:
        """``dataset``: a supervised task's data (default: loaded from the design's setup)."""
        ev = cls(design, torch.device(device), dataset)
        if dataset is None:
            ev.dataset = ev.task.load_dataset()
        return ev

    # ------------------------------------------------------------------ inputs and geometry
    @property
    def primary_metric(self) -> str:
        return self.task.primary_metric

    @property
    def boxes(self) -> list[list[int]]:
        return self.task.boxes()

    @property
    def incident(self) -> float:
        """Incident energy of the unit plane wave on the layer (metasurfaces)."""
        return self.task.incident

    def plane_wave(self) -> Tensor:
        return self._drawn(self.task.plane_wave())

    def images_to_field(self, images: np.ndarray | Tensor) -> Tensor:
        return self._drawn(self.task.input_field(images))

    @property
    def cells(self) -> bool:
        """Whether samples are flat-topped cells band-limited to the grid
        (:func:`~optodesign.optics.cells.cell_band_limit`, applied to the input and to every
        layer): a near-field task of a design with ``pixels = "cells"``, and every drawn model
        of verify (``oversample > 1``). A far-field task's output step integrates each cell's
        far field exactly itself (:func:`~optodesign.optics.farfield.far_field_intensity`)."""
        return reads_cells(self.task, self.design.pixels, self.oversample)

    def layers(self, transmissions: Sequence[Tensor] | Tensor) -> Sequence[Tensor] | Tensor:
        """The layers as this evaluator propagates them: a layer given on the design's pixels
        held over ``s × s`` samples (:attr:`oversample`), then band-limited as cells when
        :attr:`cells`; else unchanged."""
        s = self.oversample
        if s > 1:
            transmissions = [upsample(t, s) if tuple(t.shape[-2:]) == self.design.shape else t
                             for t in transmissions]
        return [cell_band_limit(t) for t in transmissions] if self.cells else transmissions

    def _drawn(self, x: Tensor) -> Tensor:
        """Per-pixel values ``(..., ny, nx)`` held over the model's samples, as cells."""
        x = upsample(x, self.oversample)
        return cell_band_limit(x) if self.cells else x

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(y, x)`` of the samples this evaluator propagates on, metres from the optical
        axis (the centre of design pixel ``(ny // 2, nx // 2)``)."""
        ay, ax = fine_axis(self.design.shape, self.oversample)
        ny, nx = self.grid.shape
        return ((np.arange(ny) - ay) * self.grid.pitch, (np.arange(nx) - ax) * self.grid.pitch)

    def test_split(self, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        assert self.dataset is not None
        n = self.task.test_samples or len(self.dataset.test_labels)
        if max_samples:
            n = min(n, max_samples)
        return self.dataset.test_images[:n], self.dataset.test_labels[:n]

    def target(self) -> Tensor:
        return self.task.target()

    # ------------------------------------------------------------------ forward
    def output_intensity(self, field: Tensor, transmissions: Sequence[Tensor] | Tensor, *,
                         wavelength: float | None = None,
                         distances: Sequence[float] | None = None) -> Tensor:
        """Intensity on the task's output plane (:attr:`~optodesign.tasks.Task.output_plane`:
        the near field after the last distance, or the far field / the grating orders)."""
        d = self.design
        inten = output_intensity(field, self.layers(transmissions), distances or d.distances,
                                 grid=self.grid,
                                 wavelength=wavelength or d.wavelength,
                                 plane=self.task.output_plane, oversample=self.oversample)
        if self.task.output_plane != "near":  # already the design's far-field cells
            return inten
        return pixel_mean(inten, self.oversample)

    @property
    def oversample(self) -> int:
        """Samples per design pixel of the fields scored (the design's training model, or
        verify's drawn models); the output intensity is averaged back onto the design's
        pixels."""
        return self.design.oversample

    def input_basis(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Unit images and coefficients with ``images = coeffs @ units`` exactly, or None.

        The optics is linear in the input field, and an amplitude-encoded image whose values
        lie in [0, 1] draws a field linear in its pixels (bilinear resizing, placement,
        cells: all linear; the clamp to [0, 1] changes nothing). So the output fields of one
        unit image per pixel that is set in any image (``nb`` of them) combine, with the
        pixel values as weights, into the output field of every image, exactly (to float
        rounding): a test set of N images costs ``nb`` propagations instead of N (the 449
        embedded digits: 59 pixels, 7.6x fewer; the 10 000 MNIST test digits: 668, 15x fewer).

        Returns:
            ``(units (nb, h, w), coeffs (N, nb))``, both ``images.dtype``; None for a task
            without such inputs (phase encoding, values outside [0, 1], not a classifier read
            on the near field) or when ``nb >= N`` (nothing to gain).
        """
        task = self.task
        if (not task.supervised or task.output_plane != "near"
                or getattr(task.setup, "encoding", None) != "amplitude"):
            return None
        imgs = np.asarray(images)
        flat = imgs.reshape(len(imgs), -1)
        if flat.size == 0 or flat.min() < 0 or flat.max() > 1:
            return None
        active = np.flatnonzero((flat != 0).any(axis=0))
        if active.size >= len(imgs):
            return None
        units = np.zeros((active.size, flat.shape[1]), dtype=imgs.dtype)
        units[np.arange(active.size), active] = 1
        return units.reshape(-1, *imgs.shape[1:]), np.ascontiguousarray(flat[:, active])

    def _detector_samples(self) -> tuple[Tensor, Tensor]:
        """The samples of the simulated output plane inside the detector boxes (flat indices
        ``(P,)``) and their membership ``(P, C)``, each sample weighted ``1 / s²``: the
        readings of :meth:`~optodesign.tasks.Task.read` (box sums of the pixel-averaged
        intensity) as ``|u[idx]|² @ member``."""
        s = self.oversample
        ny, nx = self.grid.shape
        rows, cols, box = [], [], []
        for c, (y0, x0, h, w) in enumerate(self.boxes):
            yy, xx = np.mgrid[y0 * s:(y0 + h) * s, x0 * s:(x0 + w) * s]
            rows.append(yy.ravel())
            cols.append(xx.ravel())
            box.append(np.full(yy.size, c))
        flat = np.concatenate(rows) * nx + np.concatenate(cols)
        box_of = np.concatenate(box)
        idx, inv = np.unique(flat, return_inverse=True)
        member = np.zeros((idx.size, len(self.boxes)), dtype=np.float32)
        np.add.at(member, (inv, box_of), 1.0 / s**2)
        return (torch.as_tensor(idx, device=self.device),
                torch.as_tensor(member, device=self.device))

    @torch.no_grad()
    def readings(self, transmissions: Sequence[Tensor] | Tensor, images: np.ndarray, *,
                 wavelength: float | None = None, distances: Sequence[float] | None = None,
                 batch_size: int = 256, realisations: bool = False,
                 inputs: Sequence[Tensor] | None = None) -> Tensor:
        """Detector readings of every image (supervised tasks): :meth:`~optodesign.tasks.Task.read`
        of the output intensity, computed through :meth:`input_basis` when it applies.

        Args:
            transmissions: K complex ``(ny, nx)`` maps; with ``realisations`` a complex
                ``(K, S, ny, nx)`` tensor of S realisations propagated together.
            images: ``(N, h, w)`` in [0, 1].
            batch_size: input fields per forward pass.
            inputs: the fields of the inputs already propagated over the first distance,
                one tensor per batch of ``batch_size`` (then ``distances[0]`` is not
                applied): of the images, or of the units of :meth:`input_basis` when it
                applies (what :meth:`input_sources` gives).

        Returns:
            float32 ``(N, C)``, or ``(S, N, C)`` with ``realisations``.
        """
        d = self.design
        dist = list(distances or d.distances)
        if inputs is not None:
            dist[0] = 0.0
        wl = wavelength or d.wavelength
        ts = transmissions[:, :, None] if realisations else transmissions  # type: ignore
        basis = self.input_basis(images)
        sources = images if basis is None else basis[0]
        if basis is not None:
            idx, member = self._detector_samples()
            layers = self.layers(ts)
        parts = []
        for b, i in enumerate(range(0, len(sources), batch_size)):
            f = inputs[b] if inputs is not None else self.images_to_field(
                sources[i:i + batch_size])
            f = f[None] if realisations else f
            if basis is None:
                inten = self.output_intensity(f, ts, wavelength=wl, distances=dist)
                parts.append(self.task.read(inten))
            else:
                u = forward_stack(f, layers, dist, grid=self.grid, wavelength=wl)
                parts.append(u.flatten(-2)[..., idx])
        if basis is None:
            return torch.cat(parts, dim=-2)
        fields = torch.cat(parts, dim=-2)  # (S?, nb, P) at the detectors, one per unit
        coeffs = torch.as_tensor(basis[1], dtype=torch.complex64, device=fields.device)
        out = []
        for j in range(0, len(coeffs), 256):  # the images' detector fields, 256 at a time
            u = coeffs[j:j + 256] @ fields
            out.append((u.real**2 + u.imag**2) @ member)
        return torch.cat(out, dim=-2)

    def input_sources(self, images: np.ndarray) -> np.ndarray:
        """The images whose fields :meth:`readings` propagates for ``images``: the units of
        :meth:`input_basis` when it applies, else the images themselves."""
        basis = self.input_basis(images)
        return images if basis is None else basis[0]

    @torch.no_grad()
    def classify(self, transmissions: Sequence[Tensor] | Tensor, images: np.ndarray, *,
                 wavelength: float | None = None, distances: Sequence[float] | None = None,
                 batch_size: int = 256, realisations: bool = False,
                 inputs: Sequence[Tensor] | None = None) -> np.ndarray:
        """Predicted class of every image (supervised tasks): the brightest detector of
        :meth:`readings` (same arguments).

        Returns:
            int ``(N,)``, or ``(S, N)`` with ``realisations``.
        """
        r = self.readings(transmissions, images, wavelength=wavelength, distances=distances,
                          batch_size=batch_size, realisations=realisations, inputs=inputs)
        return r.argmax(dim=-1).cpu().numpy()

    @torch.no_grad()
    def evaluate(self, transmissions: Sequence[Tensor] | Tensor | np.ndarray, *,
                 wavelength: float | None = None, distances: Sequence[float] | None = None,
                 batch_size: int = 256, max_samples: int | None = None) -> dict[str, Any]:
        """Metrics of one design realisation.

        Args:
            transmissions: ``(K, ny, nx)`` complex (numpy or torch) or a list of K maps.
            wavelength, distances: overrides (detuning, spacing errors); metres.
        """
        if isinstance(transmissions, np.ndarray):
            transmissions = torch.as_tensor(transmissions.astype(np.complex64),
                                            device=self.device)
        ts = [t.to(self.device, torch.complex64) for t in transmissions]
        kw = dict(wavelength=wavelength, distances=distances)
        if self.task.supervised:
            images, labels = self.test_split(max_samples)
            preds = self.classify(ts, images, batch_size=batch_size, **kw)
            return self.task.metrics_of_predictions(preds, labels)
        return self.task.metrics(self.output_intensity(self.plane_wave(), ts, **kw)[0])

    @torch.no_grad()
    def score_realisations(self, transmissions: Tensor, *, distances: Sequence[float],
                           wavelength: float, images: np.ndarray | None = None,
                           labels: np.ndarray | None = None, image_batch: int = 256,
                           inputs: Sequence[Tensor] | None = None) -> list[dict[str, Any]]:
        """Metrics of S realisations sharing one geometry (verify's Monte-Carlo batches).

        Args:
            transmissions: complex64 ``(K, S, ny, nx)`` on the evaluator's device.
            distances: ``K + 1`` metres. wavelength: metres.
            images, labels: supervised tasks: the test images scored and their labels.
            image_batch: images per forward pass; inputs: see :meth:`classify`.

        Returns:
            S dicts as :meth:`evaluate` returns them.
        """
        S = transmissions.shape[1]
        if self.task.supervised:
            assert images is not None and labels is not None
            p = self.classify(transmissions, images, distances=distances,
                              wavelength=wavelength, batch_size=image_batch,
                              realisations=True, inputs=inputs)
            return [self.task.metrics_of_predictions(p[s], labels) for s in range(S)]
        inten = self.output_intensity(self.plane_wave(), transmissions, distances=distances,
                                      wavelength=wavelength)
        return [self.task.metrics(inten[s]) for s in range(S)]

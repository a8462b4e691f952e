"""Score a set of complex transmissions for a Design's task: the one scoring path.

:class:`Evaluator` is built from a :class:`~optodesign.design.Design` alone (task, optics,
detectors, target, dataset reference), so training (final metrics) and verification (files
read back, perturbed) score a design the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import tasks
from .data.datasets import Dataset, load_dataset
from .design import Design
from .models.functional import forward_stack, place_images

__all__ = ["Evaluator", "PRIMARY_METRIC"]

#: the metric a tolerance refers to, per task (higher is better for all)
PRIMARY_METRIC = {"d2nn": "accuracy", "hologram": "psnr", "lens": "strehl",
                  "splitter": "uniformity"}


@dataclass
class Evaluator:
    """Everything needed to turn transmissions into metrics (no learnable state)."""

    design: Design
    device: torch.device
    dataset: Dataset | None = None

    @classmethod
    def from_design(cls, design: Design, *, device: str | torch.device = "cpu",
                    dataset: Dataset | None = None) -> Evaluator:
        if design.task == "d2nn" and dataset is None:
            ds = design.dataset
            dataset = load_dataset(ds.get("name", "digits"), ds.get("path"))
        return cls(design, torch.device(device), dataset)

    # ------------------------------------------------------------------ inputs and geometry
    @property
    def boxes(self) -> list[list[int]]:
        if self.design.task == "splitter":
            return [list(b) for b in self.design.extra["spot_boxes"]]
        return [list(b) for b in self.design.detectors]

    @property
    def incident(self) -> float:
        """Incident energy of the unit plane wave on the layer (metasurfaces)."""
        ny, nx = self.design.shape
        return float(ny * nx)

    def plane_wave(self) -> Tensor:
        return torch.ones((1, *self.design.shape), dtype=torch.complex64, device=self.device)

    def images_to_field(self, images: np.ndarray | Tensor) -> Tensor:
        inp = self.design.input
        imgs = torch.as_tensor(np.asarray(images), dtype=torch.float32, device=self.device)
        return place_images(imgs, self.design.shape, int(inp["image_size"]),
                            inp.get("encoding", "amplitude"))

    def test_split(self, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        assert self.dataset is not None
        n = self.design.dataset.get("test_samples") or len(self.dataset.test_labels)
        if max_samples:
            n = min(n, max_samples)
        return self.dataset.test_images[:n], self.dataset.test_labels[:n]

    def target(self) -> Tensor:
        assert self.design.target is not None
        return torch.as_tensor(self.design.target, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ forward
    def output_intensity(self, field: Tensor, transmissions: Sequence[Tensor] | Tensor, *,
                         wavelength: float | None = None,
                         distances: Sequence[float] | None = None) -> Tensor:
        d = self.design
        u = forward_stack(field, transmissions, distances or d.distances, pitch=d.pitch,
                          wavelength=wavelength or d.wavelength, pad=d.pad)
        return u.real**2 + u.imag**2

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
        d = self.design
        if d.task == "d2nn":
            images, labels = self.test_split(max_samples)
            preds = []
            for i in range(0, len(labels), batch_size):
                inten = self.output_intensity(self.images_to_field(images[i:i + batch_size]), ts,
                                              **kw)
                preds.append(tasks.classification_predictions(inten, self.boxes).cpu().numpy())
            n_classes = len(self.boxes)
            return tasks.classification_metrics(np.concatenate(preds), labels, n_classes)
        inten = self.output_intensity(self.plane_wave(), ts, **kw)[0]
        if d.task == "hologram":
            return tasks.hologram_metrics(inten, self.target(), self.incident)
        if d.task == "lens":
            return tasks.focus_metrics(inten, int(d.extra["focus_radius"]), self.incident,
                                       float(d.extra["ideal_peak"]))
        return tasks.splitter_metrics(inten, self.boxes, self.incident)

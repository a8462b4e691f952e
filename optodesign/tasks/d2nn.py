"""D2NN classification: images enter, the detector with the most energy names the class.

Lin et al., "All-optical machine learning using diffractive deep neural networks", Science
361, 1004 (2018), doi:10.1126/science.aat8084. The loss is a softmax cross-entropy on the
tempered, normalised detector energies (or their squared distance to the one-hot label).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import (
    Box,
    Prepared,
    SetupError,
    Task,
    TaskSetup,
    box_membership,
    read_boxes,
    read_choice,
    read_int,
    read_number,
    read_optional_str,
)

if TYPE_CHECKING:
    from torch import Tensor

    from ..data.datasets import Dataset
    from ..train.config import Config

__all__ = ["D2NN", "D2NNSetup"]

ENCODINGS = ("amplitude", "phase")
LOSSES = ("ce", "mse")


@dataclass(frozen=True)
class D2NNSetup(TaskSetup):
    """How images enter and how the output is read and trained.

    Attributes:
        detectors: one box ``(y0, x0, h, w)`` per class on the output plane (pixels).
        image_size: side in pixels the images are upsampled to, centred on the input plane.
        encoding: ``"amplitude"`` (field = image) or ``"phase"`` (field = exp(iπ·image)).
        dataset: ``digits``, ``mnist`` or ``fashion``. data_path: directory of IDX files.
        test_samples: the first N test images are scored (0: all).
        loss: ``"ce"`` or ``"mse"``. temperature: of the logits (as trained).
    """

    name: ClassVar[str] = "d2nn"

    detectors: tuple[Box, ...]
    image_size: int
    encoding: str = "amplitude"
    dataset: str = "digits"
    data_path: str | None = None
    test_samples: int = 0
    loss: str = "ce"
    temperature: float = 10.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> D2NNSetup:
        defaults = {"detectors": [], "image_size": None, "encoding": "amplitude",
                    "dataset": "digits", "data_path": None, "test_samples": 0, "loss": "ce",
                    "temperature": 10.0}
        return cls._parse({k: (f"setup.{k}", data.get(k, v)) for k, v in defaults.items()},
                          shape=shape)

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> D2NNSetup:
        """Format 1: ``detectors``, ``input.{image_size, encoding}``,
        ``dataset.{name, path, test_samples}``; the loss was only in the run's config.toml
        (the defaults ``ce`` / 10 are assumed)."""
        inp = meta.get("input", {}) if isinstance(meta.get("input"), dict) else {}
        ds = meta.get("dataset", {}) if isinstance(meta.get("dataset"), dict) else {}
        n = ds.get("test_samples")
        return cls._parse({
            "detectors": ("detectors", meta.get("detectors", [])),
            "image_size": ("input.image_size", inp.get("image_size")),
            "encoding": ("input.encoding", inp.get("encoding", "amplitude")),
            "dataset": ("dataset.name", ds.get("name") or "digits"),
            "data_path": ("dataset.path", ds.get("path")),
            "test_samples": ("dataset.test_samples", 0 if n is None else n),
            "loss": ("loss", "ce"), "temperature": ("temperature", 10.0)}, shape=shape)

    @classmethod
    def _parse(cls, fields: dict[str, tuple[str, Any]], *, shape: tuple[int, int]) -> D2NNSetup:
        """``fields``: setup field -> (name in the file, value)."""
        def name(k: str) -> str:
            return fields[k][0]

        def value(k: str) -> Any:
            return fields[k][1]

        if not isinstance(value("dataset"), str):
            raise SetupError(f"{name('dataset')}: must be a string, got {value('dataset')!r}")
        return cls(
            detectors=read_boxes(value("detectors"), name("detectors"), shape=shape),
            image_size=read_int(value("image_size"), name("image_size"), low=1,
                                high=min(shape)),
            encoding=read_choice(value("encoding"), name("encoding"), ENCODINGS),
            dataset=value("dataset"),
            data_path=read_optional_str(value("data_path"), name("data_path")),
            test_samples=read_int(value("test_samples"), name("test_samples")),
            loss=read_choice(value("loss"), name("loss"), LOSSES),
            temperature=read_number(value("temperature"), name("temperature")))

    def check(self, *, shape: tuple[int, int], target: np.ndarray | None) -> None:
        super().check(shape=shape, target=target)
        if not self.detectors:
            raise SetupError("setup.detectors: a classifier needs one detector box per class, "
                             "got none")


class D2NN(Task):
    """Classification of images by the energy on one detector per class."""

    setup_type = D2NNSetup
    name = setup_type.name
    loss_kind = "classification"
    primary_metric = "accuracy"
    metric_names = ("accuracy",)
    default_drop: ClassVar[dict[str, float]] = {"accuracy": 0.02}
    supervised = True
    default_layers = 5
    # the stacks' wide angles at sub-wavelength pitch: the angular spectrum's band limit at
    # pad 2 removes a third of each layer's energy, the convolution nothing (docs/verify.md)
    default_propagation = "rs"
    needs_detectors = True

    setup: D2NNSetup

    @classmethod
    def default_input_distance(cls, spacing: float) -> float:
        return spacing

    @classmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        from ..data.datasets import load_dataset
        from ..errors import ConfigError
        from ..models.functional import auto_detectors

        o, d = cfg.optics, cfg.data
        dataset = load_dataset(d.dataset, d.path)
        shape = (o.size, o.size)
        detectors = ([list(b) for b in cfg.detectors.boxes] if cfg.detectors.boxes else
                     auto_detectors(dataset.n_classes, shape, cfg.detectors.size))
        if len(detectors) != dataset.n_classes:
            raise ConfigError(f"detectors.boxes: {len(detectors)} boxes for "
                              f"{dataset.n_classes} classes")
        setup = D2NNSetup(
            detectors=tuple(tuple(b) for b in detectors),  # type: ignore[misc]
            image_size=d.image_size, encoding=d.encoding, dataset=d.dataset,
            data_path=str(Path(d.path).resolve()) if d.path else None,
            test_samples=d.test_samples, loss=cfg.train.loss,
            temperature=cfg.train.temperature)
        return Prepared(setup, None, dataset)

    # ------------------------------------------------------------------ geometry and inputs
    def boxes(self) -> list[list[int]]:
        return [list(b) for b in self.setup.detectors]

    def structural_boxes(self) -> list[list[int]]:
        return self.boxes()

    def input_box(self) -> list[int] | None:
        s = self.setup.image_size
        y0 = (self.shape[0] - s) // 2
        return [y0, y0, s, s]

    def observed(self) -> np.ndarray:
        return box_membership(self.boxes(), self.shape)[0]

    def load_dataset(self, *, path: str | None = None) -> Dataset:
        from ..data.datasets import load_dataset

        return load_dataset(self.setup.dataset, path or self.setup.data_path)

    @property
    def test_samples(self) -> int:
        return self.setup.test_samples

    def input_field(self, images: Any) -> Tensor:
        import torch

        from ..models.functional import place_images

        imgs = torch.as_tensor(np.asarray(images), dtype=torch.float32, device=self.device)
        return place_images(imgs, self.shape, self.setup.image_size, self.setup.encoding)

    # ------------------------------------------------------------------ loss
    def read(self, intensity: Tensor) -> Tensor:
        """Detector energies ``(..., B, C)``."""
        from ..models.functional import detector_energies

        return detector_energies(intensity, self.setup.detectors)

    def read_observed(self, intensity: Tensor) -> Tensor:
        import torch

        member = self.tensor("member", lambda: torch.as_tensor(
            box_membership(self.boxes(), self.shape)[1], device=self.device))
        return intensity @ member

    def loss_of(self, reading: Tensor, labels: Tensor | None = None) -> Tensor:
        """Cross-entropy of ``temperature * e / Σe`` (or the squared distance of ``e / Σe``
        to the one-hot label), averaged over the batch: ``(..., B, C)`` -> ``(...)``."""
        import torch.nn.functional as F

        assert labels is not None
        T = self.setup.temperature
        logits = T * reading / reading.sum(dim=-1, keepdim=True).clamp_min(1e-20)
        if self.setup.loss == "ce":
            if logits.ndim == 2:  # one batch: torch's own mean reduction
                return F.cross_entropy(logits, labels)
            C = logits.shape[-1]
            lab = labels.expand(*logits.shape[:-1])
            per = F.cross_entropy(logits.reshape(-1, C), lab.reshape(-1), reduction="none")
            return per.view(logits.shape[:-1]).mean(-1)
        frac = logits / T
        onehot = F.one_hot(labels, frac.shape[-1]).to(frac.dtype)
        return ((frac - onehot) ** 2).sum(-1).mean(-1)

    def describe_loss(self) -> dict[str, Any]:
        return {"kind": f"{self.loss_kind} ({self.setup.loss})",
                "temperature": self.setup.temperature}

    # ------------------------------------------------------------------ metrics
    def predict(self, intensity: Tensor) -> Tensor:
        from ..models.functional import detector_energies

        return detector_energies(intensity, self.setup.detectors).argmax(dim=-1)

    def metrics_of_predictions(self, predictions: np.ndarray,
                               labels: np.ndarray) -> dict[str, Any]:
        """Accuracy and the confusion matrix (rows: true class, columns: predicted)."""
        n = len(self.setup.detectors)
        confusion = np.zeros((n, n), dtype=np.int64)
        np.add.at(confusion, (labels, predictions), 1)
        return {"accuracy": float((predictions == labels).mean()),
                "confusion": confusion.tolist()}

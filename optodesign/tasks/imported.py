"""Imported: a phase or transmission map made elsewhere (``optodesign import``), judged by
how closely the quantized, fabricated element reproduces the continuous map's output.

The design's ``target`` is the output intensity ``R`` of the continuous imported map (unit
plane wave in, ``distance`` of free space, the training propagator), scaled to a maximum of
1 (:func:`optodesign.importer.import_map` computes it). For the output intensity ``I`` of the
element (quantized, or read back from the files and perturbed in verify) the metrics are

``fidelity``
    the overlap of the two output patterns as normalised distributions of power,
    ``(Σ sqrt(I R))² / (Σ I · Σ R)`` (the classical fidelity, or squared Bhattacharyya
    coefficient, of ``I / Σ I`` and ``R / Σ R``; it equals the field overlap
    ``|<u, u_ref>|² / (‖u‖² ‖u_ref‖²)`` when the two fields have the same phase): 1 when the
    element makes the continuous map's pattern at any power, lower for every change of shape
    (a blurred focus, ghost orders, speckle), weighing faint light as much as the peak does.
``efficiency``
    the fraction of the incident energy landing where the continuous map puts its light
    (``R > 0.1``), as the hologram task counts it; the setup record keeps the continuous
    map's own value (``reference_efficiency``) beside it.

Scoring reads intensities (:meth:`optodesign.evaluate.Evaluator.evaluate` passes the task an
output intensity); the overlap of intensities is the field overlap's observable part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import Prepared, SetupError, Task, TaskSetup, read_choice, read_number

if TYPE_CHECKING:
    from torch import Tensor

    from ..train.config import Config

__all__ = ["Imported", "ImportedSetup", "SUPPORT"]

#: where the continuous map puts its light: reference intensity above this fraction of its peak
SUPPORT = 0.1


@dataclass(frozen=True)
class ImportedSetup(TaskSetup):
    """Attributes:
        map_kind: ``phase`` (a real map, radians) or ``complex`` (a transmission map).
        reference_efficiency: :attr:`Imported.metric_names` ``efficiency`` of the continuous
            map itself (what quantization and fabrication lose is measured against it).
    """

    name: ClassVar[str] = "imported"

    map_kind: str = "phase"
    reference_efficiency: float = 1.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> ImportedSetup:
        return cls(map_kind=read_choice(data.get("map_kind"), "setup.map_kind",
                                        ("phase", "complex")),
                   reference_efficiency=read_number(data.get("reference_efficiency"),
                                                    "setup.reference_efficiency",
                                                    positive=False))

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> ImportedSetup:
        raise SetupError("task: 'imported' designs exist only in format 2")

    def check(self, *, shape: tuple[int, int], target: np.ndarray | None) -> None:
        super().check(shape=shape, target=target)
        if target is None or not np.max(target) > 0:
            raise SetupError("target: an imported map needs its reference output intensity")


class Imported(Task):
    """The output of a continuous imported map, reproduced by its quantized element."""

    setup_type = ImportedSetup
    name = setup_type.name
    loss_kind = "1 - intensity overlap with the continuous map's output"
    primary_metric = "fidelity"
    metric_names = ("fidelity", "efficiency")
    default_drop: ClassVar[dict[str, float]] = {"fidelity": 0.02, "efficiency": 0.03}
    default_target_kind = "image"

    @classmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        from ..errors import ConfigError

        raise ConfigError("task: 'imported' designs are made by `optodesign import MAP ...`, "
                          "not trained from a config")

    def target_flat(self) -> Tensor:
        return self.tensor("target_flat", lambda: self.target().flatten())

    def read(self, intensity: Tensor) -> Tensor:
        return intensity.flatten(-2)

    def read_observed(self, intensity: Tensor) -> Tensor:
        return intensity  # every pixel is observed

    def _overlap(self, reading: Tensor) -> Tensor:
        t = self.target_flat()
        num = (reading.clamp_min(0) * t).sqrt().sum(-1) ** 2
        return num / (reading.sum(-1) * t.sum(-1)).clamp_min(1e-30)

    def loss_of(self, reading: Tensor, labels: Tensor | None = None) -> Tensor:
        """``1 - fidelity`` of a reading ``(..., B, P)`` -> ``(...)``."""
        return (1 - self._overlap(reading)).mean(-1)

    def metrics(self, intensity: Tensor) -> dict[str, Any]:
        """Fidelity (overlap with the continuous map's output pattern, 0..1) and efficiency
        (energy where the continuous map puts its light / incident energy)."""
        i, t = intensity.flatten(), self.target_flat()
        return {"fidelity": self._overlap(i).item(),
                "efficiency": i[t > SUPPORT].sum().item() / self.incident}

"""What every task provides: a typed setup record, config hooks, inputs, the loss, metrics.

A task is a class (one module per task, registered in :data:`optodesign.tasks.TASKS`):

* **class attributes and class methods** used before any design exists: the config's
  defaults and checks (:attr:`Task.default_layers`, :meth:`Task.check_config`, ...), and
  :meth:`Task.setup`, which turns a validated config into the task's :class:`TaskSetup`;
* a **setup record** (:class:`TaskSetup`, a frozen dataclass per task): everything training,
  verify and refine need to score a design, stored in ``design.json`` under ``setup``;
* **an instance bound to one design** (its setup, grid, target) for the loss and metrics.
  The loss is written once, as a function of a *reading* (detector energies, the intensity
  in a focal disk, ...): :meth:`Task.read` takes the reading from a full output plane
  (training), :meth:`Task.read_observed` from the observed pixels only (refinement's exact
  incremental scoring), and :meth:`Task.loss_of` turns either into the loss.

Modules of this package import torch lazily, inside the methods that compute: a Design
(numpy and json only) loads its setup record without torch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from ..data.datasets import Dataset
    from ..grid import Grid
    from ..train.config import Config

__all__ = ["Box", "SetupError", "Task", "TaskSetup", "Prepared", "read_boxes", "read_int",
           "read_number", "read_choice", "read_optional_str"]

#: a pixel box ``(y0, x0, h, w)`` on the output plane
Box = tuple[int, int, int, int]


class SetupError(UserError):
    """A task setup record is missing a field or holds a bad value (``setup.<field>: ...``);
    :class:`optodesign.design.Design` reports it as a ``DesignError``."""


# ---------------------------------------------------------------------------- field readers
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def read_number(v: Any, name: str, *, positive: bool = True) -> float:
    """A finite real number (``> 0`` unless ``positive=False``)."""
    if not (_is_number(v) and math.isfinite(v) and (v > 0 or not positive)):
        raise SetupError(f"{name}: must be a number{' > 0' if positive else ''}, got {v!r}")
    return float(v)


def read_int(v: Any, name: str, *, low: int = 0, high: int | None = None) -> int:
    """A whole number in ``low..high``."""
    ok = _is_number(v) and math.isfinite(v) and float(v).is_integer()
    if not ok or v < low or (high is not None and v > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise SetupError(f"{name}: must be a whole number {span}, got {v!r}")
    return int(v)


def read_choice(v: Any, name: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise SetupError(f"{name}: must be one of {', '.join(allowed)}, got {v!r}")
    return str(v)


def read_optional_str(v: Any, name: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise SetupError(f"{name}: must be a string or absent, got {v!r}")
    return v


def read_boxes(boxes: Any, name: str, *, shape: tuple[int, int],
               required: bool = False) -> tuple[Box, ...]:
    """Pixel boxes ``[y0, x0, h, w]`` of whole numbers inside the ``shape`` grid."""
    def bad() -> SetupError:
        return SetupError(f"{name}: must be a {'non-empty ' if required else ''}list of "
                          f"[y0, x0, h, w] boxes of whole numbers, got {boxes!r}")

    if isinstance(boxes, (str, bytes, dict)) or not hasattr(boxes, "__iter__"):
        raise bad()
    out = []
    for b in boxes:
        if isinstance(b, (str, bytes, dict)) or not hasattr(b, "__iter__"):
            raise bad()
        b = list(b)
        if len(b) != 4 or not all(_is_number(v) and float(v).is_integer() for v in b):
            raise bad()
        out.append(tuple(int(v) for v in b))
    if required and not out:
        raise bad()
    ny, nx = shape
    for y0, x0, h, w in out:
        if h <= 0 or w <= 0 or y0 < 0 or x0 < 0 or y0 + h > ny or x0 + w > nx:
            raise SetupError(f"{name}: box {[y0, x0, h, w]} lies outside the {ny}x{nx} grid")
    return tuple(out)  # type: ignore[return-value]


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------- setup records
@dataclass(frozen=True)
class TaskSetup:
    """Base of the per-task setup records (frozen dataclasses, JSON-able).

    Subclasses add their fields and implement :meth:`from_json` (the ``design.json`` section
    ``setup`` of format 2) and :meth:`from_v1` (the scattered ``detectors`` / ``input`` /
    ``dataset`` / ``extra`` fields of format 1). Both raise :class:`SetupError`.
    """

    #: the task's name (``Design.task``)
    name: ClassVar[str]
    #: what format 1 kept in ``design.json``'s ``extra`` and this record now holds
    v1_extra_keys: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> TaskSetup:
        raise NotImplementedError

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> TaskSetup:
        raise NotImplementedError

    def check(self, *, shape: tuple[int, int], target: np.ndarray | None) -> None:
        """Every field valid on the design's grid, and what the task needs of its arrays
        (raises :class:`SetupError`; ``"target: ..."`` for the design.npz array)."""
        type(self).from_json(self.to_json(), shape=shape)


class Prepared(NamedTuple):
    """What :meth:`Task.setup` derives from a config."""

    setup: TaskSetup
    target: np.ndarray | None = None
    dataset: Dataset | None = None


# ---------------------------------------------------------------------------- tasks
class Task(ABC):
    """A task bound to one design's setup, grid and target (see the module docstring).

    Args:
        setup: the task's :class:`TaskSetup`.
        shape: ``(ny, nx)`` of the layers and the output plane.
        target: float ``(ny, nx)`` target intensity (hologram, splitter), or None.
        device: torch device of the tensors the task builds.
    """

    name: ClassVar[str]
    setup_type: ClassVar[type[TaskSetup]]
    #: the metric a tolerance refers to by default (every metric: higher is better)
    primary_metric: ClassVar[str]
    #: the scalar metrics :meth:`metrics` (or :meth:`metrics_of_predictions`) returns
    metric_names: ClassVar[tuple[str, ...]]
    #: default allowed drop of each metric in verify (absolute: accuracy fraction, dB, ...)
    default_drop: ClassVar[dict[str, float]]
    #: learns from a labelled image dataset (a batch of fields per step, predictions per image)
    #: instead of one unit plane wave
    supervised: ClassVar[bool] = False
    # --- config defaults
    default_layers: ClassVar[int] = 1
    #: ``optics.propagation`` when the config gives none: ``"rs"`` means the
    #: Rayleigh–Sommerfeld convolution where the geometry allows it, else the angular spectrum
    default_propagation: ClassVar[str] = "asm"
    default_target_kind: ClassVar[str] = "text"
    #: the config's detector layout is checked (automatic detectors must fit the grid)
    needs_detectors: ClassVar[bool] = False
    #: what the loss is, in words (refine notes)
    loss_kind: ClassVar[str]
    #: where the task reads its output (:data:`optodesign.models.functional.OUTPUT_PLANES`):
    #: "near" (the last distance away), "far_field" (Fraunhofer: binned onto the design's
    #: angular cells) or "orders" (the layer is one period of a grating); training, verify
    #: and the Evaluator all propagate through it
    output_plane: ClassVar[str] = "near"
    #: the layer is one period of an infinite element (a grating): misalignment and rotation
    #: move the neighbouring periods into the window instead of zero-filling it
    #: (:func:`optodesign.optics.placement.place`)
    periodic: ClassVar[bool] = False
    #: config sections of the task's own, read by :meth:`setup_from_config` from
    #: ``cfg.source`` (a fan-out grating's ``[grating]``)
    config_sections: ClassVar[tuple[str, ...]] = ()

    def __init__(self, setup: TaskSetup, *, shape: tuple[int, int],
                 target: np.ndarray | None = None,
                 device: str | torch.device = "cpu") -> None:
        if not isinstance(setup, self.setup_type):
            raise TypeError(f"setup: {self.name} needs a {self.setup_type.__name__}, got "
                            f"{type(setup).__name__}")
        self.setup = setup
        self.shape = (int(shape[0]), int(shape[1]))
        self.target_array = target
        self.device = device
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ config (class level)
    @classmethod
    def default_input_distance(cls, spacing: float) -> float:
        """Input plane -> first layer when the config gives one ``optics.distance``."""
        return 0.0

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Task-specific checks of a parsed config (one-line ``ConfigError``); none here."""
        return None

    @classmethod
    @abstractmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        """The setup record (and target array, dataset) a training run of ``cfg`` uses."""

    @classmethod
    def export_notes(cls, setup: TaskSetup) -> list[str]:
        """Lines for ``manifest.json``'s notes (a grating period: how to use it); none here."""
        return []

    # ------------------------------------------------------------------ geometry
    @property
    def incident(self) -> float:
        """Incident energy of the unit plane wave on the layer: ``ny * nx``."""
        return float(self.shape[0] * self.shape[1])

    def boxes(self) -> list[list[int]]:
        """Boxes ``[y0, x0, h, w]`` the metrics read (detectors, spots); [] if none."""
        return []

    def structural_boxes(self) -> list[list[int]]:
        """Output regions that structural (physics-fixed) pixels must keep lit."""
        return [[0, 0, self.shape[0], self.shape[1]]]

    def zoom_box(self) -> list[int] | None:
        """A box ``[y0, x0, h, w]`` of the output plane that plots also show enlarged (a
        lens's focus); None: nothing to zoom."""
        return None

    def input_box(self) -> list[int] | None:
        """Where the input field is non-zero (``[y0, x0, h, w]``), if not the whole plane."""
        return None

    def observed(self) -> np.ndarray:
        """Flat indices ``y * nx + x`` of the output pixels the loss reads (row-major order)."""
        return np.arange(self.shape[0] * self.shape[1])

    def tensor(self, key: str, make: Any) -> Tensor:
        """A device tensor built once per task instance."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def target(self) -> Tensor:
        """The target intensity as a float32 device tensor."""
        import torch

        assert self.target_array is not None
        return self.tensor("target", lambda: torch.as_tensor(
            self.target_array, dtype=torch.float32, device=self.device))

    def plane_wave(self) -> Tensor:
        """The unit plane wave ``(1, ny, nx)`` complex64."""
        import torch

        return torch.ones((1, *self.shape), dtype=torch.complex64, device=self.device)

    def output_axes(self, *, pitch: float, wavelength: float,
                    focal_length: float = 0.0) -> tuple[float, str]:
        """``(step, coordinate)`` of the output plane's pixels for plots
        (:func:`optodesign.plotting.show_plane`): the layer pitch in metres on a near-field
        plane; on a far-field plane the step of the direction sines ``λ / (n p)``
        (``"sine"``), or of the positions ``λ f / (n p)`` in the focal plane of a lens of
        focal length ``f > 0`` (``"length"``)."""
        if self.output_plane == "near":
            return pitch, "length"
        step = wavelength / (self.shape[1] * pitch)
        return (step * focal_length, "length") if focal_length > 0 else (step, "sine")

    def under(self, evaluator: Any) -> Task:
        """This task with its references (e.g. a lens's ideal peak) recomputed under
        ``evaluator``'s simulation model, so a metric compares like with like; called by
        verify's drawn models (:class:`optodesign.verify.model.ModelEvaluator`). The default
        has no model-dependent reference and returns the task itself."""
        return self

    def initial_phase(self, grid: Grid, wavelength: float) -> np.ndarray | None:
        """A phase ``(ny, nx)`` to start every layer's training from (None: the quantizer's
        random start). A lens starts from the ideal lens."""
        return None

    # ------------------------------------------------------------------ loss
    def read(self, intensity: Tensor) -> Tensor:
        """The loss's reading of full output planes ``(..., B, ny, nx)``."""
        obs = self.tensor("observed", lambda: _long(self.observed(), self.device))
        return self.read_observed(intensity.flatten(-2)[..., obs])

    @abstractmethod
    def read_observed(self, intensity: Tensor) -> Tensor:
        """The loss's reading of observed intensities ``(..., B, P)`` (:meth:`observed`)."""

    @abstractmethod
    def loss_of(self, reading: Tensor, labels: Tensor | None = None) -> Tensor:
        """The loss of a reading ``(..., B, ...)``: shape ``(...)`` (a scalar for one batch)."""

    def loss(self, intensity: Tensor, labels: Tensor | None = None) -> Tensor:
        """Training loss of output intensities ``(B, ny, nx)``."""
        return self.loss_of(self.read(intensity), labels)

    def observed_loss(self, intensity: Tensor, labels: Tensor | None = None) -> Tensor:
        """The same loss from observed intensities ``(..., B, P)``: one value per leading
        index (refinement scores many candidates at once)."""
        return self.loss_of(self.read_observed(intensity), labels)

    def describe_loss(self) -> dict[str, Any]:
        """``{"kind": what the loss is, **its settings}`` for notes (refine)."""
        return {"kind": self.loss_kind}

    # ------------------------------------------------------------------ metrics
    def metrics(self, intensity: Tensor) -> dict[str, Any]:
        """Metrics of one output plane ``(ny, nx)`` under plane-wave illumination."""
        raise NotImplementedError(f"{self.name}: scored from predictions")

    # supervised tasks
    def load_dataset(self, *, path: str | None = None) -> Dataset | None:
        """The labelled images a supervised task is scored on (None: a plane wave); ``path``
        overrides the setup's data directory."""
        return None

    @property
    def test_samples(self) -> int:
        """Test images scored (the first N; 0: all)."""
        return 0

    def input_field(self, images: Any) -> Tensor:
        """Complex input fields ``(B, ny, nx)`` of images ``(B, h, w)`` in [0, 1]."""
        raise NotImplementedError(f"{self.name}: illuminated by a plane wave")

    def predict(self, intensity: Tensor) -> Tensor:
        """Predicted class of each output plane ``(..., B, ny, nx)`` -> ``(..., B)``."""
        raise NotImplementedError(f"{self.name}: not a classifier")

    def metrics_of_predictions(self, predictions: np.ndarray,
                               labels: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name}: not a classifier")


def _long(values: np.ndarray, device: Any) -> Tensor:
    import torch

    return torch.as_tensor(values, dtype=torch.long, device=device)


def box_membership(boxes: list[list[int]], shape: tuple[int, int]) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Observed pixels of boxes and which box owns each: flat indices ``(P,)`` and a float32
    ``(P, C)`` one-hot membership (so ``I_obs @ member`` is the energy per box)."""
    nx = shape[1]
    flat, owner = [], []
    for c, (y0, x0, h, w) in enumerate(boxes):
        yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w]
        flat.append((yy * nx + xx).ravel())
        owner.append(np.full(h * w, c))
    obs = np.concatenate(flat)
    member = np.zeros((obs.size, len(boxes)), dtype=np.float32)
    member[np.arange(obs.size), np.concatenate(owner)] = 1.0
    return obs, member

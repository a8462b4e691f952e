"""Tasks: what light enters, what comes out, the loss that trains it and the metrics that
judge it. One module per task; :data:`TASKS` lists them (adding a task is a module here and
one entry in that table). See :mod:`optodesign.tasks.base` for what a task provides.

Importing this package does not import torch (a Design loads its task's setup record with
numpy and json alone); the tasks import it inside the methods that compute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Box, Prepared, SetupError, Task, TaskSetup
from .d2nn import D2NN, D2NNSetup
from .fanout import FanOut, FanOutSetup
from .fourier import Fourier, FourierSetup
from .hologram import Hologram, HologramSetup
from .imported import Imported
from .lens import Lens, LensSetup
from .splitter import Splitter, SplitterSetup

if TYPE_CHECKING:
    from ..design import Design

__all__ = ["TASKS", "Box", "Prepared", "SetupError", "Task", "TaskSetup", "get_task",
           "task_of", "D2NN", "D2NNSetup", "FanOut", "FanOutSetup", "Fourier",
           "FourierSetup", "Hologram", "HologramSetup", "Lens", "LensSetup",
           "Splitter", "SplitterSetup"]

#: every task, by the name configs and designs use
TASKS: dict[str, type[Task]] = {t.name: t for t in (D2NN, Hologram, Lens, Splitter, Imported,
                                                      Fourier, FanOut)}


def get_task(name: str) -> type[Task]:
    """The task class of ``name``; ``SetupError`` (one line) for an unknown name."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise SetupError(f"task: unknown task {name!r} (allowed: {', '.join(TASKS)})") from None


def task_of(design: Design, *, device: Any = "cpu") -> Task:
    """The task of a design, bound to its setup, grid and target."""
    return get_task(design.task)(design.setup, shape=design.shape, target=design.target,
                                 device=device)

"""The task registry: one module per task, and a new task is one class plus a table entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from optodesign import tasks
from optodesign.design import Design
from optodesign.evaluate import Evaluator
from optodesign.tasks import TASKS, Hologram, HologramSetup, get_task, task_of


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_declares_what_config_verify_and_refine_need(name: str) -> None:
    t = get_task(name)
    assert t.name == t.setup_type.name == name
    assert t.primary_metric in t.metric_names
    assert set(t.default_drop) == set(t.metric_names)
    assert t.default_layers >= 1 and isinstance(t.loss_kind, str)


def test_unknown_task_is_one_line() -> None:
    with pytest.raises(tasks.SetupError, match="task: unknown task 'x' .allowed: d2nn"):
        get_task("x")


# one more task, as a new module would define it: a toy that reads the output plane through a
# centred 2-D FFT (the real far-field tasks, optodesign/tasks/fourier.py and fanout.py, declare
# Task.output_plane instead)
@dataclass(frozen=True)
class FourierSetup(HologramSetup):
    name: ClassVar[str] = "toy_fourier"


class Fourier(Hologram):
    setup_type = FourierSetup
    name = setup_type.name
    loss_kind = "far-field hologram mse"

    def read(self, intensity: torch.Tensor) -> torch.Tensor:
        far = torch.fft.fftshift(torch.fft.fft2(intensity.sqrt(), norm="ortho"), dim=(-2, -1))
        return (far.abs() ** 2).flatten(-2)

    def metrics(self, intensity: torch.Tensor) -> dict:
        return super().metrics(self.read(intensity[None])[0].view(self.shape))


def test_a_fifth_task_is_one_class_and_one_registry_entry(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(TASKS, "toy_fourier", Fourier)
    rng = np.random.default_rng(0)
    target = np.zeros((8, 8))
    target[2:4, 5:7] = 1
    d = Design(setup=FourierSetup(), wavelength=532e-9, pitch=2e-6,
               levels=rng.integers(0, 4, (1, 8, 8)),
               level_tables=np.exp(2j * np.pi * np.arange(4) / 4), distances=(0.0, 1e-5),
               target=target)
    d.save(tmp_path)
    e = Design.load(tmp_path)
    assert e.task == "toy_fourier" and isinstance(task_of(e), Fourier)
    m = Evaluator.from_design(e).evaluate(e.transmissions())
    assert set(m) == {"psnr", "efficiency"}
    inten = torch.rand(1, 8, 8)
    assert torch.isfinite(task_of(e).loss(inten))

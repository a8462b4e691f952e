"""Shared test fixtures: tiny configs that train in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

TINY_D2NN = """
task = "d2nn"
seed = 3

[optics]
wavelength = "0.75 mm"
pitch = "0.4 mm"
size = 32
layers = 2
distance = "2 cm"

[quantization]
method = "{method}"
levels = 4

[data]
dataset = "digits"
image_size = 16
train_samples = 128
test_samples = 64

[detectors]
size = 3

[train]
epochs = 2
batch_size = 32
lr = 0.1
"""


@pytest.fixture
def tiny_d2nn_config(tmp_path: Path):
    def make(method: str = "psq-li", extra: str = "") -> Path:
        p = tmp_path / f"tiny_{method}.toml"
        p.write_text(TINY_D2NN.format(method=method) + extra)
        return p

    return make

"""Shared test fixtures: tiny configs that train in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


@pytest.fixture(params=[1, 2], ids=["chunked", "batched"])
def threads(request):
    """One thread: propagate() transforms the batch in chunks; two: all at once."""
    saved = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(saved)


@pytest.fixture
def tiny_d2nn_config(tmp_path: Path):
    def make(method: str = "psq-li", extra: str = "") -> Path:
        p = tmp_path / f"tiny_{method}.toml"
        p.write_text(TINY_D2NN.format(method=method) + extra)
        return p

    return make


# ------------------------------------------------------------------------------ test tiers
# Every test belongs to one tier (docs/architecture.md, "Tests"): exact physics, invariants
# and properties, file round trips, or the CLI end to end. A module's tests take its tier
# below unless a test is marked otherwise. Tests marked ``slow`` (seconds each: torchrun,
# 2048² grids, whole pipelines) stay out of the default run; CI runs every tier.
TIERS = ("physics", "property", "roundtrip", "e2e")
MODULE_TIER = {
    "test_propagation": "physics",
    "test_propagation_pruned": "physics",
    "test_propagation_separable": "physics",
    "test_rs_crosscheck": "physics",
    "test_propagation_rs": "physics",
    "test_units_grid": "physics",
    "test_quantize_phase": "property",
    "test_quantize_complex": "property",
    "test_quantize_binary": "property",
    "test_quantize_registry": "property",
    "test_tasks": "property",
    "test_library": "roundtrip",
    "test_architecture": "property",
    "test_allocator": "property",
    "test_device_placement": "property",
    "test_process": "property",
    "test_examples_fab": "e2e",
    "test_fabrules": "property",
    "test_design": "roundtrip",
    "test_gds": "roundtrip",
    "test_stl": "roundtrip",
    "test_complex_training": "roundtrip",
    "test_verify": "roundtrip",
    "test_verify_rs": "roundtrip",
    "test_train": "e2e",
    "test_refine": "e2e",
    "test_export_cli": "e2e",
    "test_quickstart": "e2e",
    "test_distributed": "e2e",
    "test_cli_faults": "e2e",
    "test_bad_input": "e2e",
    "test_safety_fab": "e2e",
    "test_safety_train": "e2e",
    "test_gpu_benchmarks": "e2e",
    "test_import": "roundtrip",
    "test_compare": "e2e",
    "test_targets": "property",
    "test_report_html": "e2e",
    "test_farfield": "physics",
    "test_robust": "physics",
    "test_input_basis": "physics",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
            tier = MODULE_TIER.get(module)
            if tier is None:
                raise pytest.UsageError(f"tests/{module}.py has no tier: add it to MODULE_TIER "
                                        f"in tests/conftest.py ({', '.join(TIERS)})")
            item.add_marker(getattr(pytest.mark, tier))

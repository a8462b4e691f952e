"""Device placement on the training path: no host -> device copies, no device read-backs.

On a GPU each of these is a host-device synchronisation (torch's blocking ``.to(device)`` of
a host tensor waits for the stream; ``float(t)`` of a device tensor waits for the result), so
one per layer and step stalls the host queue. The meta device stands in for a GPU here: it
holds no data, so a read-back fails, and a dispatch mode records every copy from the host.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from optodesign.models.stack import DiffractiveStack
from optodesign.quantize.levels import nearest_level, uniform_levels
from optodesign.quantize.registry import build_quantizer

DEVICE = "meta"


class HostTraffic(TorchDispatchMode):
    """Records copies from the host to a device and reads of device values by the host."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type != "cpu":
            self.events.append(f"read back {tuple(args[0].shape)} from {args[0].device}")
        elif func is torch.ops.aten._to_copy.default:
            dst = torch.device(kwargs.get("device") or args[0].device)
            if args[0].device.type == "cpu" and dst.type != "cpu":
                self.events.append(f"copy {tuple(args[0].shape)} cpu -> {dst}")
        elif func is torch.ops.aten.copy_.default:
            if args[1].device.type == "cpu" and args[0].device.type != "cpu":
                self.events.append(f"copy {tuple(args[1].shape)} cpu -> {args[0].device}")
        return func(*args, **kwargs)


@pytest.mark.parametrize("method", ["psq-li", "psq-ft"])
def test_psq_training_path_keeps_its_scheduled_temperature_on_the_host(method: str) -> None:
    q = build_quantizer(method, levels=4).to(DEVICE)
    q.set_progress(1, 4)
    raw = torch.zeros(6, 6, device=DEVICE, requires_grad=True)
    with HostTraffic() as traffic:
        out = q(raw)
        out.real.sum().backward()
    assert out.device.type == DEVICE and raw.grad is not None
    assert traffic.events == []


@pytest.mark.parametrize("method", ["psq-li", "ste", "dsq", "gs", "pq"])
def test_hard_levels_on_a_device_read_nothing_back(method: str) -> None:
    q = build_quantizer(method, levels=4).to(DEVICE)
    raw = torch.zeros(6, 6, device=DEVICE)
    with HostTraffic() as traffic:
        idx = q.indices(raw)
        hard = q.hard(raw)
    assert idx.device.type == DEVICE and hard.device.type == DEVICE
    assert traffic.events == []


def test_nearest_level_with_the_table_on_the_device() -> None:
    phases = torch.as_tensor(uniform_levels(4), dtype=torch.float64)
    x = torch.tensor([-0.1, 0.2, 1.5, 3.0, 6.2])
    x_dev, phases_dev = x.to(DEVICE), phases.to(DEVICE)
    with HostTraffic() as traffic:
        out = nearest_level(x_dev, phases_dev)
    assert out.device.type == DEVICE and traffic.events == []
    # and the values are unchanged by taking the origin as a tensor (on the host here)
    assert nearest_level(x, phases).tolist() == [0, 0, 1, 2, 0]


def test_stack_regularization_adds_host_zeros_without_copying_them() -> None:
    stack = DiffractiveStack([build_quantizer("psq-li", levels=4) for _ in range(3)], (6, 6))
    stack = stack.to(DEVICE)
    with HostTraffic() as traffic:
        reg = stack.regularization()
    assert reg.device.type == DEVICE and reg.shape == ()
    assert traffic.events == []
    cpu = DiffractiveStack([build_quantizer("psq-lt", levels=4) for _ in range(2)], (6, 6))
    assert cpu.regularization().requires_grad  # LT's learned-temperature term still counts


class ReadBacks(TorchDispatchMode):
    """Counts the tensor values the host reads (``float(t)``, ``t.item()``) on any device."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_binary_soft_path_reads_its_learned_level_once_per_call() -> None:
    from optodesign.quantize.binary import BinaryQuantizer

    q = BinaryQuantizer()
    q.set_progress(0, 4)  # the softest temperature: the most sigmoid steps to consider
    raw = torch.linspace(-1.0, 7.0, 36).reshape(6, 6).requires_grad_()
    with ReadBacks() as reads:
        out = q(raw)
    assert reads.count == 1  # α, once (on a GPU every read waits for the device)
    out.real.sum().backward()
    assert raw.grad is not None and q.alpha.grad is not None

"""The chunked FFT paths of propagate() on the CPU against a plain fft2 reference.

On the CPU propagate() transforms the batch in cache-sized chunks: on one thread with 1-D FFTs
that skip the zero padding and the cropped output, on several with one ``fft2`` per chunk.
These tests pin both to the textbook formula
``ifft2(fft2(u, s=padded) · H)[:ny, :nx]`` for odd sizes, pads that are not 2, batch
dimensions and chunk remainders, and to the same gradients, and check that the platform FFT
self-check probes exactly the calls each path makes.
"""

from __future__ import annotations

import pytest
import torch

import optodesign
from optodesign.grid import Grid
from optodesign.optics import propagation as prop
from optodesign.optics.propagation import transfer_function

WL = 633e-9
Z = 10e-6

pytestmark = pytest.mark.filterwarnings("ignore::optodesign.optics.propagation.SamplingWarning")


@pytest.fixture
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def random_field(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64))


def reference(u: torch.Tensor, grid: Grid) -> torch.Tensor:
    """The textbook band-limited ASM in complex128: pad, fft2, multiply, ifft2, crop."""
    ny, nx = grid.shape
    nyp, nxp = grid.padded().shape
    h = transfer_function((nyp, nxp), Z, pitch=grid.pitch, wavelength=WL,
                          dtype=torch.complex128)
    return torch.fft.ifft2(torch.fft.fft2(u, s=(nyp, nxp)) * h)[..., :ny, :nx]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(torch.complex128) - b).norm() / b.norm())


CASES = [((16, 16), 2.0, (3,)), ((15, 21), 1.5, (2, 2)), ((9, 13), 3.0, ()),
         ((12, 10), 1.0, (2,)), ((7, 8), 2.0, (5,))]


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize(("shape", "pad", "batch"), CASES)
@pytest.mark.parametrize("chunk_fields", [1, 2, 64])
def test_pruned_matches_fft2_reference(one_thread, monkeypatch, shape, pad, batch, dtype,
                                       chunk_fields) -> None:
    grid = Grid(shape, 1e-6, pad=pad)
    nyp, nxp = grid.padded().shape
    itemsize = 8 if dtype == torch.complex64 else 16
    # chunks of chunk_fields fields: with batch 5 and 2 per chunk, the last chunk holds one
    monkeypatch.setattr(prop, "CHUNK_BYTES", chunk_fields * nyp * nxp * itemsize)
    plan = prop._plan((*batch, *shape), (nyp, nxp), itemsize, torch.device("cpu"))
    assert (plan is None) == (pad == 1.0)  # the pruned path runs wherever there is padding
    u = random_field((*batch, *shape))
    out = optodesign.propagate(u.to(dtype), Z, grid=grid, wavelength=WL)
    assert out.shape == u.shape and out.dtype == dtype
    assert rel(out, reference(u, grid)) < (1e-6 if dtype == torch.complex64 else 1e-12)


def test_plan_chunks_the_batch_pruned_on_one_thread_fft2_on_several(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(prop, "CHUNK_BYTES", 2 * 14 * 16 * 8)  # two padded fields per thread
    Plan = prop.Plan
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert prop._plan((5, 7, 8), (14, 16), 8, cpu) == Plan((7, 8), (1, 2), True)
        assert prop._plan((2, 2, 7, 8), (14, 16), 8, cpu) == Plan((7, 8), (2,), True)
        assert prop._plan((7, 8), (14, 16), 8, cpu) == Plan((7, 8), (1,), True)
        assert prop._plan((5, 7, 8), (7, 8), 8, cpu) is None  # pad 1: plain fft2
        torch.set_num_threads(2)  # four fields per chunk, each chunk one fft2
        assert prop._plan((5, 7, 8), (14, 16), 8, cpu) == Plan((7, 8), (1, 4), False)
        assert prop._plan((4, 7, 8), (14, 16), 8, cpu) is None  # one chunk: one batched fft2
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_chunked_fft2_on_several_threads_matches_the_reference(monkeypatch, dtype) -> None:
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grid = Grid((15, 21), 1e-6, pad=1.5)
        nyp, nxp = grid.padded().shape
        itemsize = 8 if dtype == torch.complex64 else 16
        monkeypatch.setattr(prop, "CHUNK_BYTES", nyp * nxp * itemsize)  # 2 fields per chunk
        plan = prop._plan((5, *grid.shape), (nyp, nxp), itemsize, torch.device("cpu"))
        assert plan == prop.Plan(grid.shape, (1, 2), False)
        u = random_field((5, *grid.shape), seed=5).requires_grad_(True)
        out = optodesign.propagate(u.to(dtype), Z, grid=grid, wavelength=WL)
        assert rel(out.detach(), reference(u.detach(), grid)) < \
            (1e-6 if dtype == torch.complex64 else 1e-12)
        out.abs().square().sum().backward()
        chunked = u.grad.clone()
        u.grad = None
        monkeypatch.setattr(prop, "_plan", lambda *a: None)
        optodesign.propagate(u.to(dtype), Z, grid=grid, wavelength=WL).abs().square().sum() \
            .backward()
        assert rel(chunked, u.grad.to(torch.complex128)) < \
            (1e-5 if dtype == torch.complex64 else 1e-12)
    finally:
        torch.set_num_threads(saved)


def test_pruned_gradients_equal_the_batched_path(one_thread, monkeypatch) -> None:
    grid = Grid((9, 12), 1e-6, pad=1.5)
    u = random_field((3, 9, 12), seed=1)
    weight = random_field((9, 12), seed=2).abs()

    def grad(plan) -> tuple[torch.Tensor, torch.Tensor]:
        if plan is not None:
            monkeypatch.setattr(prop, "_plan", plan)
        x = u.clone().requires_grad_(True)
        out = optodesign.propagate(x, Z, grid=grid, wavelength=WL)
        ((out.real**2 + out.imag**2) * weight).sum().backward()
        return out.detach(), x.grad

    monkeypatch.setattr(prop, "CHUNK_BYTES", 2 * 14 * 18 * 16)  # chunks of 2: 2 + 1 fields
    pruned_out, pruned_grad = grad(None)
    batched_out, batched_grad = grad(lambda *a: None)
    assert rel(pruned_out, batched_out) < 1e-12
    assert rel(pruned_grad, batched_grad) < 1e-12


def test_pruned_gradcheck(one_thread) -> None:
    grid = Grid((3, 4), 1e-6, pad=1.5)
    u = random_field((2, 3, 4), seed=3).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: optodesign.propagate(x, Z, grid=grid, wavelength=WL), (u,))


def _broken_ifft(length: int, batch: int | None = None, factor: float | None = None):
    """torch.fft.ifft that returns complex64 results of ``length`` (and chunk ``batch``)
    scaled by 1/length, as MKL does for a 2048² complex64 ifft2 on AMD EPYC."""
    real_ifft = torch.fft.ifft

    def ifft(x, *args, **kwargs):
        out = real_ifft(x, *args, **kwargs)
        if factor is not None:
            return out * factor
        dim = kwargs.get("dim", -1)
        if x.dtype == torch.complex64 and x.shape[dim] == length and \
                (batch is None or x.shape[0] == batch):
            out = out / length
        return out

    return ifft


@pytest.mark.parametrize("batch", [None, 1])
def test_self_check_catches_a_broken_pruned_ifft_and_falls_back(one_thread, monkeypatch,
                                                                caplog, batch) -> None:
    """A mis-scaled complex64 1-D inverse FFT of the padded length, for every chunk or only
    for the remainder chunk (chunks of 2 fields, batch 3): caught, and propagate() stays
    right in complex128."""
    grid = Grid((24, 24), 1e-6, pad=2)
    u = random_field((3, 24, 24), seed=4)
    monkeypatch.setattr(prop, "CHUNK_BYTES", 2 * 48 * 48 * 8)
    monkeypatch.setattr(prop, "_fft_checked", {})
    monkeypatch.setattr(torch.fft, "ifft", _broken_ifft(48, batch))
    with caplog.at_level("WARNING", logger="optodesign.optics.propagation"):
        low = optodesign.propagate(u.to(torch.complex64), Z, grid=grid, wavelength=WL)
    assert low.dtype == torch.complex64
    assert rel(low, reference(u, grid)) < 1e-6
    assert "fails its round trip" in caplog.text
    chosen = {k[:2]: v for k, v in prop._fft_checked.items()}
    assert chosen[((48, 48), torch.complex64)] == torch.complex128


def test_self_check_catches_a_broken_chunk_fft2_on_several_threads(monkeypatch,
                                                                   caplog) -> None:
    """Several threads: a mis-scaled complex64 ifft2 only for the remainder chunk (chunks of 2
    fields, batch 3) is caught, and propagate() stays right in complex128."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    real_ifft2 = torch.fft.ifft2

    def broken_ifft2(x, *args, **kwargs):
        out = real_ifft2(x, *args, **kwargs)
        if x.dtype == torch.complex64 and x.ndim == 3 and x.shape[0] == 1:
            out = out / 48
        return out

    try:
        grid = Grid((24, 24), 1e-6, pad=2)
        u = random_field((3, 24, 24), seed=6)
        monkeypatch.setattr(prop, "CHUNK_BYTES", 48 * 48 * 8)  # 2 fields per chunk on 2 threads
        monkeypatch.setattr(prop, "_fft_checked", {})
        monkeypatch.setattr(torch.fft, "ifft2", broken_ifft2)
        with caplog.at_level("WARNING", logger="optodesign.optics.propagation"):
            low = optodesign.propagate(u.to(torch.complex64), Z, grid=grid, wavelength=WL)
        assert rel(low, reference(u, grid)) < 1e-6
        assert "fails its round trip" in caplog.text
    finally:
        torch.set_num_threads(saved)


def test_self_check_refuses_when_no_pruned_ifft_round_trips(one_thread, monkeypatch) -> None:
    monkeypatch.setattr(prop, "_fft_checked", {})
    monkeypatch.setattr(torch.fft, "ifft", _broken_ifft(0, factor=2.0))
    with pytest.raises(prop.FFTSelfCheckError, match="does not round-trip"):
        optodesign.propagate(torch.ones(8, 8, dtype=torch.complex64), 1e-5,
                             grid=Grid((8, 8), 2e-6), wavelength=WL)

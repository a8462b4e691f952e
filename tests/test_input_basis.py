"""Superposition: a D2NN is linear in its input field, so the readings of every test image are
those of one unit image per pixel, combined with the pixel values as weights
(:meth:`optodesign.evaluate.Evaluator.input_basis`). Verify's Monte Carlo, its convergence
ladder and training's test metric propagate those units instead of the images.

Checked here against the direct computation (every image propagated on its own): the readings
agree to float rounding, for a design read as cells or as points, at one and two samples per
pixel, for one design and for a batch of realisations, with detector boxes that overlap and
touch the edge; and the basis is refused where the field is not linear in the image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optodesign.data.datasets import Dataset
from optodesign.design import Design
from optodesign.evaluate import Evaluator
from optodesign.tasks import D2NNSetup

LAM, PITCH, N = 0.75e-3, 0.4e-3, 24
#: two overlapping boxes and one at the edge of the output plane
BOXES = ((2, 2, 4, 4), (4, 4, 4, 3), (18, 19, 6, 5))


def _images(n: int, rng: np.random.Generator, h: int = 6) -> np.ndarray:
    """Digit-like images: a blank border (never set), values in [0, 1] with exact zeros."""
    imgs = np.zeros((n, h, h), dtype=np.float32)
    inner = rng.random((n, h - 2, h - 2)).astype(np.float32)
    imgs[:, 1:-1, 1:-1] = np.where(inner < 0.3, 0.0, inner)
    imgs[:, 1:-1, 1:-1][:, 0, 0] = 1.0  # the top value, exactly
    return imgs


def _evaluator(pixels: str, oversample: int, images: np.ndarray, *,
               encoding: str = "amplitude") -> Evaluator:
    rng = np.random.default_rng(1)
    levels = rng.integers(0, 4, size=(2, N, N))
    d = Design(setup=D2NNSetup(detectors=BOXES, image_size=12, encoding=encoding),
               wavelength=LAM, pitch=PITCH, levels=levels,
               level_tables=np.exp(1j * np.pi / 2 * np.arange(4)),
               distances=(0.01, 0.012, 0.015), pixels=pixels, oversample=oversample,
               propagation="rs")
    labels = np.arange(len(images)) % len(BOXES)
    data = Dataset("synthetic", images, labels, images, labels)
    return Evaluator.from_design(d, dataset=data)


def _direct(ev: Evaluator, ts, images: np.ndarray) -> torch.Tensor:
    """Every image propagated on its own: the task's readings of the output intensity."""
    return ev.task.read(ev.output_intensity(ev.images_to_field(images), ts))


@pytest.mark.parametrize("pixels,oversample", [("cells", 1), ("points", 1), ("cells", 2)])
def test_readings_through_the_unit_images_equal_the_direct_ones(pixels: str,
                                                                oversample: int) -> None:
    images = _images(40, np.random.default_rng(0))
    ev = _evaluator(pixels, oversample, images)
    units, coeffs = ev.input_basis(images)
    assert len(units) == 16 < len(images)  # the 4 x 4 inner pixels
    np.testing.assert_array_equal(coeffs @ units.reshape(len(units), -1),
                                  images.reshape(len(images), -1))
    ts = [torch.as_tensor(t.astype(np.complex64)) for t in ev.design.transmissions()]
    want = _direct(ev, ts, images)
    got = ev.readings(ts, images, batch_size=7)  # several batches of units
    assert got.shape == want.shape == (40, len(BOXES))
    assert float(want.min()) > 0
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-5, atol=1e-6 * float(want.max()))
    np.testing.assert_array_equal(ev.classify(ts, images), want.argmax(-1).numpy())


def test_realisations_and_propagated_inputs_use_the_units_too() -> None:
    """Verify's batches: S realisations at once, the sources propagated over the first
    distance beforehand (:meth:`Evaluator.input_sources`)."""
    from optodesign.models.functional import forward_stack

    images = _images(30, np.random.default_rng(2))
    ev = _evaluator("cells", 1, images)
    rng = np.random.default_rng(3)
    S = 3
    ts = torch.as_tensor(np.exp(1j * 2 * np.pi * rng.random((2, S, N, N))).astype(np.complex64))
    sources = ev.input_sources(images)
    assert len(sources) < len(images)
    d0 = ev.design.distances[0]
    inputs = [forward_stack(ev.images_to_field(sources[i:i + 8]), [], [d0], grid=ev.grid,
                            wavelength=LAM) for i in range(0, len(sources), 8)]
    got = ev.readings(ts, images, realisations=True, batch_size=8, inputs=inputs)
    for s in range(S):
        want = _direct(ev, list(ts[:, s]), images)
        np.testing.assert_allclose(got[s].numpy(), want.numpy(), rtol=2e-5,
                                   atol=1e-6 * float(want.max()))


def test_no_basis_where_the_field_is_not_linear_in_the_image() -> None:
    rng = np.random.default_rng(4)
    images = _images(40, rng)
    assert _evaluator("cells", 1, images, encoding="phase").input_basis(images) is None
    bright = images.copy()
    bright[0, 2, 2] = 1.5  # the clamp to [0, 1] would act: not linear
    assert _evaluator("cells", 1, bright).input_basis(bright) is None
    few = images[:10]  # 16 units for 10 images: nothing to gain
    ev = _evaluator("cells", 1, few)
    assert ev.input_basis(few) is None
    assert ev.input_sources(few) is few

"""Perturbation physics: one fabricated realisation of a physical stack under an error model.

Systematic errors (:func:`apply_systematic`) are the same in every sample; random ones
(:func:`apply_random`) are drawn per sample from streams seeded by ``(seed, sample, error)``
(:data:`~optodesign.variation.spec.STREAM`), so switching one error on or off, or scaling it,
leaves the draws of the others unchanged. The result is a new
:class:`~optodesign.process.physical.Physical`; its structure turns it into transmissions
(:meth:`optodesign.process.structure.Structure.element_transmissions`) and
:func:`optodesign.optics.placement.place` moves them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..process.physical import Physical
from .spec import STREAM, ErrorModel

__all__ = ["apply_systematic", "apply_random", "perturb"]


def _rng(seed: int, sample: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(sample), STREAM[name]])


def apply_systematic(phys: Physical, model: ErrorModel) -> Physical:
    """The errors that are the same in every sample (height scale/offset, Δn, line-width bias,
    detuning, κ). Returns ``phys`` itself when none is on."""
    changes: dict[str, Any] = {}
    if model.height_scale or model.height_offset:
        h = phys.heights * (1.0 + model.height_scale) + model.height_offset
        changes["heights"] = _clip_heights(h, phys)
    if model.index_error:
        changes["n"] = phys.n + model.index_error
    if model.linewidth_bias:
        changes["bias"] = phys.bias + model.linewidth_bias
    if model.wavelength_shift:
        changes["wavelength"] = phys.wavelength + model.wavelength_shift
        changes["element_wavelength"] = phys.element_wavelength + model.wavelength_shift
        if changes["wavelength"] <= 0 or changes["element_wavelength"] <= 0:
            raise ConfigError("errors.wavelength_shift: detuned wavelength must stay > 0")
    if model.kappa:
        changes["kappa_extra"] = phys.kappa_extra + model.kappa
    return replace(phys, **changes) if changes else phys


def apply_random(phys: Physical, model: ErrorModel, *, seed: int, sample: int) -> Physical:
    """The errors drawn per sample (every σ), from streams seeded by ``(seed, sample, error)``.

    Returns ``phys`` itself when no σ error is on; the height array is shared (not copied)
    when no height σ is on, which lets callers reuse element transmissions.
    """
    changes: dict[str, Any] = {}
    if model.height_scale_sigma or model.height_sigma:
        h = phys.heights
        if model.height_scale_sigma:
            z = _rng(seed, sample, "height_scale_sigma").standard_normal()
            h = h * (1.0 + model.height_scale_sigma * z)
        if model.height_sigma:
            z = _rng(seed, sample, "height_sigma").standard_normal(h.shape)
            h = h + model.height_sigma * z
        changes["heights"] = _clip_heights(h, phys)
    if model.index_sigma:
        changes["n"] = phys.n + model.index_sigma * _rng(seed, sample,
                                                         "index_sigma").standard_normal()
    K = phys.heights.shape[0]
    if model.misalignment:
        d = model.misalignment * _rng(seed, sample, "misalignment").standard_normal((K, 2))
        changes["shifts"] = phys.shift_array() + d
    if model.rotation:
        a = math.radians(model.rotation) * _rng(seed, sample, "rotation").standard_normal(K)
        changes["rotations"] = phys.rotation_array() + a
    if model.linewidth_bias_sigma:
        z = _rng(seed, sample, "linewidth_bias_sigma").standard_normal()
        changes["bias"] = phys.bias + model.linewidth_bias_sigma * float(z)
    if model.spacing_sigma:
        z = _rng(seed, sample, "spacing_sigma").standard_normal(len(phys.distances))
        changes["distances"] = tuple(
            max(0.0, d + model.spacing_sigma * float(zi)) if d > 0 else d
            for d, zi in zip(phys.distances, z, strict=True))
    return replace(phys, **changes) if changes else phys


def perturb(phys: Physical, model: ErrorModel, *, seed: int, sample: int) -> Physical:
    """One fabricated realisation: systematic errors, then the sample's random draws."""
    return apply_random(apply_systematic(phys, model), model, seed=seed, sample=sample)


def _clip_heights(h: np.ndarray, phys: Physical) -> np.ndarray:
    return np.maximum(h, phys.height_floor)

"""Tasks: what light enters, what comes out, the loss that trains it and the metrics that judge it.

Pure functions of the output field, shared by training and verification, so a fabricated
design is scored exactly as it was trained. Intensities are ``|u|²`` per pixel; the incident
energy of a unit plane wave on an ``N x N`` layer is ``N²``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .models.functional import detector_energies

__all__ = [
    "classification_loss",
    "classification_metrics",
    "hologram_loss",
    "hologram_metrics",
    "focus_loss",
    "focus_metrics",
    "splitter_loss",
    "splitter_metrics",
    "focus_radius",
    "ideal_lens_phase",
]


# ----------------------------------------------------------------------- classification (D2NN)
def classification_logits(intensity: Tensor, boxes: list[list[int]], temperature: float) -> Tensor:
    """Normalised detector energies (fractions summing to 1) times a temperature."""
    e = detector_energies(intensity, boxes)
    return temperature * e / e.sum(dim=-1, keepdim=True).clamp_min(1e-20)


def classification_loss(intensity: Tensor, labels: Tensor, boxes: list[list[int]], *,
                        loss: str = "ce", temperature: float = 10.0) -> Tensor:
    """Softmax cross-entropy on tempered normalised energies, or MSE to one-hot fractions."""
    logits = classification_logits(intensity, boxes, temperature)
    if loss == "ce":
        return torch.nn.functional.cross_entropy(logits, labels)
    frac = logits / temperature
    onehot = torch.nn.functional.one_hot(labels, frac.shape[-1]).to(frac.dtype)
    return ((frac - onehot) ** 2).sum(-1).mean()


def classification_predictions(intensity: Tensor, boxes: list[list[int]]) -> Tensor:
    return detector_energies(intensity, boxes).argmax(dim=-1)


def classification_metrics(predictions: np.ndarray, labels: np.ndarray,
                           n_classes: int) -> dict[str, float | list[list[int]]]:
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return {"accuracy": float((predictions == labels).mean()),
            "confusion": confusion.tolist()}


# ----------------------------------------------------------------------------------- hologram
def _fit_scale(intensity: Tensor, target: Tensor) -> Tensor:
    """Least-squares scale s minimising ||s I − T||² per sample (so the loss ignores power)."""
    num = (intensity * target).sum(dim=(-2, -1), keepdim=True)
    den = (intensity * intensity).sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    return num / den


def hologram_loss(intensity: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between the best-scaled intensity and the target (max 1)."""
    s = _fit_scale(intensity, target)
    return ((s * intensity - target) ** 2).mean()


def hologram_metrics(intensity: Tensor, target: Tensor, incident: float) -> dict[str, float]:
    """PSNR (dB, target peak 1, best scale) and diffraction efficiency (energy inside the
    target support T > 0.1 / incident energy)."""
    s = _fit_scale(intensity, target)
    mse = ((s * intensity - target) ** 2).mean().item()
    support = target > 0.1
    eff = intensity[..., support].sum().item() / incident
    return {"psnr": 10 * math.log10(1.0 / max(mse, 1e-30)), "efficiency": eff}


# -------------------------------------------------------------------------------------- lens
def focus_radius(*, wavelength: float, focal_length: float, aperture: float, pitch: float) -> int:
    """Radius (pixels, >= 1) of the central lobe of a square aperture's focus: λ f / D."""
    return max(1, round(wavelength * focal_length / aperture / pitch))


def _disk(shape: tuple[int, int], radius: float, device: torch.device) -> Tensor:
    ny, nx = shape
    y = torch.arange(ny, device=device) - ny // 2
    x = torch.arange(nx, device=device) - nx // 2
    return (y[:, None] ** 2 + x[None, :] ** 2) <= radius**2


def ideal_lens_phase(shape: tuple[int, int], *, pitch: float, wavelength: float,
                     focal_length: float) -> np.ndarray:
    """Continuous phase of an ideal (hyperbolic) lens, wrapped to [0, 2π):
    φ = −2π/λ (sqrt(x² + y² + f²) − f), centred on pixel (ny//2, nx//2)."""
    ny, nx = shape
    y = (np.arange(ny) - ny // 2) * pitch
    x = (np.arange(nx) - nx // 2) * pitch
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return np.mod(-2 * np.pi / wavelength * (np.sqrt(r2 + focal_length**2) - focal_length),
                  2 * np.pi)


def focus_loss(intensity: Tensor, radius: int, incident: float) -> Tensor:
    """Negative fraction of the incident energy inside the focal disk."""
    disk = _disk(intensity.shape[-2:], radius, intensity.device)
    return -(intensity[..., disk].sum(-1) / incident).mean()


def focus_metrics(intensity: Tensor, radius: int, incident: float,
                  ideal_peak: float) -> dict[str, float]:
    """Focal efficiency (energy within 1.5x the central-lobe radius / incident) and Strehl ratio
    (on-axis intensity / that of the ideal continuous lens of the same aperture)."""
    ny, nx = intensity.shape[-2:]
    disk = _disk((ny, nx), 1.5 * radius, intensity.device)
    return {
        "efficiency": intensity[..., disk].sum().item() / incident,
        "strehl": intensity[..., ny // 2, nx // 2].max().item() / ideal_peak,
    }


# ---------------------------------------------------------------------------------- splitter
def splitter_loss(intensity: Tensor, boxes: list[list[int]], incident: float,
                  *, uniformity_weight: float = 1.0) -> Tensor:
    """−(efficiency) + w · (std / mean) of the spot energies."""
    e = detector_energies(intensity, boxes) / incident
    return -e.sum(-1).mean() + uniformity_weight * (e.std(-1) / e.mean(-1).clamp_min(1e-20)).mean()


def splitter_metrics(intensity: Tensor, boxes: list[list[int]],
                     incident: float) -> dict[str, float]:
    """Efficiency (spot energy / incident) and uniformity 1 − (max − min)/(max + min)."""
    e = detector_energies(intensity, boxes).reshape(-1, len(boxes))[0] / incident
    hi, lo = e.max().item(), e.min().item()
    return {"efficiency": e.sum().item(), "uniformity": 1 - (hi - lo) / max(hi + lo, 1e-30)}

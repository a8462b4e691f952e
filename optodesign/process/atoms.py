"""A meta-atom model: the transmission of one pillar, for building example atom tables."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["effective_index_atom"]

TWO_PI = 2.0 * math.pi


def effective_index_atom(
    size: float,
    *,
    lattice: float,
    height: float,
    wavelength: float,
    n: float,
    n0: float = 1.0,
    shape: Literal["circle", "square"] = "circle",
    kappa: float = 0.0,
) -> complex:
    """A crude meta-atom model: transmission of a pillar relative to the bare lattice.

    Zeroth-order effective-medium theory: the pillar layer is a homogeneous slab whose
    permittivity is the area average ``n_eff² = f n² + (1 − f) n0²`` with fill factor ``f``
    (Rytov, Sov. Phys. JETP 2, 466 (1956)); phase ``2π (n_eff − n0) H / λ``; amplitude the two
    normal-incidence Fresnel interfaces ``4 n0 n_eff / (n0 + n_eff)²``. It ignores waveguide
    resonances, coupling between neighbours, the substrate and Fabry–Pérot ripple, so it is a
    model for a self-consistent example, not a measured or simulated library.

    Args:
        size: diameter (circle) or side (square), metres; 0 = empty site.
        lattice: lattice constant, metres.
        height: pillar height, metres.
        wavelength: metres.
        n: pillar index; n0: surrounding index.
        shape: ``"circle"`` or ``"square"``.
        kappa: the pillar's extinction coefficient (``n + iκ``): an absorbing pillar loses
            amplitude as it grows, so a library of sizes spans amplitudes as well as phases
            (``n_eff`` is then complex; its imaginary part attenuates ``exp(−2π κ_eff H/λ)``
            and the Fresnel factor is complex).

    Returns:
        complex transmission with ``|t| <= 1``.
    """
    area = math.pi * size**2 / 4 if shape == "circle" else size**2
    f = min(area / lattice**2, 1.0)
    if kappa == 0:
        n_eff = math.sqrt(f * n**2 + (1 - f) * n0**2)
        amp = 4 * n0 * n_eff / (n0 + n_eff) ** 2
        return complex(amp * np.exp(1j * TWO_PI * (n_eff - n0) * height / wavelength))
    m = complex(n, kappa)
    ne = np.sqrt(f * m**2 + (1 - f) * n0**2)
    fresnel = 4 * n0 * ne / (n0 + ne) ** 2
    return complex(fresnel * np.exp(1j * TWO_PI * (ne - n0) * height / wavelength))



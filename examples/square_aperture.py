"""Propagate a plane wave through a square aperture and save the intensity as a PNG.

    python examples/square_aperture.py --out square_aperture.png

Compares the band-limited angular spectrum result with the exact Fresnel-integral solution
along the central line (the same check the test suite makes, here as a picture).
"""

from __future__ import annotations

import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.special import fresnel

import optodesign
from optodesign.grid import Grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="square_aperture.png")
    parser.add_argument("--wavelength", default="633 nm")
    parser.add_argument("--distance", default="2 cm")
    args = parser.parse_args()

    wavelength = optodesign.parse_quantity(args.wavelength, field="--wavelength")
    z = optodesign.parse_length(args.distance, field="--distance")
    grid = Grid((1024, 1024), 2e-6)
    half = 0.25e-3
    Y, X = grid.meshgrid()
    u0 = ((np.abs(X) < half) & (np.abs(Y) < half)).astype(np.complex128)
    u = optodesign.propagate(torch.from_numpy(u0), z, grid=grid, wavelength=wavelength)
    intensity = u.abs().numpy() ** 2

    s = math.sqrt(2 / (wavelength * z))
    s1, c1 = fresnel(s * (-half - grid.x()))
    s2, c2 = fresnel(s * (half - grid.x()))
    line = (c2 - c1) + 1j * (s2 - s1)
    exact = np.abs(line * line[grid.ny // 2]) ** 2 / 4  # centre row of the separable solution

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    ext = np.array([grid.x()[0], grid.x()[-1], grid.y()[0], grid.y()[-1]]) * 1e3
    im = a.imshow(intensity, extent=ext, origin="lower", cmap="inferno")
    a.set(title=f"|U|² at z = {optodesign.format_length(z)}", xlabel="x (mm)", ylabel="y (mm)")
    fig.colorbar(im, ax=a)
    b.plot(grid.x() * 1e3, intensity[grid.ny // 2], label="angular spectrum")
    b.plot(grid.x() * 1e3, exact, "--", label="Fresnel integrals")
    b.set(title="centre row", xlabel="x (mm)", ylabel="intensity", xlim=(-0.5, 0.5))
    b.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

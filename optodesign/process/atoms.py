"""A meta-atom model: the transmission of one pillar, for building example atom tables."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["effective_index_atom", "read_library", "inline_library"]

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




# ---------------------------------------------------------------------------- your own library
_SIZE_UNITS = {"size_m": 1.0, "size_um": 1e-6, "size_nm": 1e-9}


def read_library(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A meta-atom library from RCWA/FDTD: pillar sizes (metres) and complex transmissions.

    Two formats:

    * **CSV** with a header row: one size column, ``size_nm``, ``size_um`` or ``size_m``, and
      the transmission as ``re,im`` or ``amplitude,phase_rad`` (or ``phase_deg``). Lines
      starting with ``#`` are comments. The first row is the empty site if its size is 0.
    * **NPZ** with arrays ``size_m`` (metres) and ``t`` (complex).

    Every row is one atom; ``|t| <= 1`` (passive). One-line
    :class:`~optodesign.errors.ConfigError` naming the file, line and column otherwise.
    """
    from ..errors import ConfigError

    path = Path(path)
    where = path.name
    if not path.is_file():
        raise ConfigError(f"{path}: meta-atom library not found")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "size_m" not in z or "t" not in z:
                    raise ConfigError(f"{where}: needs arrays size_m (metres) and t (complex), "
                                      f"has {', '.join(z.files) or 'none'}")
                sizes = np.asarray(z["size_m"], dtype=np.float64).ravel()
                t = np.asarray(z["t"]).astype(np.complex128).ravel()
        except (OSError, ValueError) as e:
            raise ConfigError(f"{where}: not a readable .npz ({e})") from None
        rows = [f"entry {i}" for i in range(len(sizes))]
    elif path.suffix.lower() == ".csv":
        lines = [(i, ln.strip()) for i, ln in
                 enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            raise ConfigError(f"{where}: empty (expected a header row and one row per atom)")
        header = [h.strip().lower() for h in lines[0][1].split(",")]
        size_cols = [h for h in header if h in _SIZE_UNITS]
        if len(size_cols) != 1:
            raise ConfigError(f"{where}: line {lines[0][0]}: the header needs one of "
                              f"{', '.join(_SIZE_UNITS)}, got {lines[0][1]!r}")
        polar = "amplitude" in header
        phase_col = "phase_rad" if "phase_rad" in header else "phase_deg"
        need = ["amplitude", phase_col] if polar else ["re", "im"]
        missing = [c for c in need if c not in header]
        if missing:
            raise ConfigError(f"{where}: line {lines[0][0]}: the header needs re,im or "
                              f"amplitude,phase_rad (or phase_deg); missing {missing[0]}")
        values = []
        rows = []
        for lineno, ln in lines[1:]:
            cells = [c.strip() for c in ln.split(",")]
            if len(cells) != len(header):
                raise ConfigError(f"{where}: line {lineno}: {len(cells)} values for "
                                  f"{len(header)} columns")
            try:
                values.append([float(cells[header.index(c)])
                               for c in (size_cols[0], *need)])
            except ValueError:
                raise ConfigError(f"{where}: line {lineno}: not a number in {ln!r}") from None
            rows.append(f"line {lineno}")
        if not values:
            raise ConfigError(f"{where}: no atoms (only a header)")
        v = np.asarray(values, dtype=np.float64)
        sizes = v[:, 0] * _SIZE_UNITS[size_cols[0]]
        if polar:
            phase = v[:, 2] if phase_col == "phase_rad" else np.deg2rad(v[:, 2])
            t = v[:, 1] * np.exp(1j * phase)
        else:
            t = v[:, 1] + 1j * v[:, 2]
    else:
        raise ConfigError(f"{path}: a meta-atom library is a .csv or .npz file")
    for row, s, tk in zip(rows, sizes, t):
        if not (np.isfinite(s) and s >= 0 and np.isfinite(tk)):
            raise ConfigError(f"{where}: {row}: size and transmission must be finite, size >= 0")
        if abs(tk) > 1 + 1e-9:
            raise ConfigError(f"{where}: {row}: |t| = {abs(tk):.4f} > 1 (a passive atom)")
    if len(sizes) < 2:
        raise ConfigError(f"{where}: a library needs at least 2 atoms, got {len(sizes)}")
    return sizes, t


def inline_library(data: dict[str, Any], text: str, *, base_dir: Path | None,
                   src: str) -> tuple[dict[str, Any], str]:
    """``[pillars] library = FILE`` replaced by the ``atoms`` it holds, in the parsed table
    and in the TOML text, so the process (and the copy a manifest embeds) is self-contained:
    verify rebuilds the same atoms without the library file."""
    from ..errors import ConfigError

    pillars = data.get("pillars")
    if not isinstance(pillars, dict) or "library" not in pillars:
        return data, text
    lib = pillars["library"]
    if not isinstance(lib, str) or not lib.strip():
        raise ConfigError(f"{src}: pillars.library: expected the path of a .csv or .npz "
                          f"library, got {lib!r}")
    if "atoms" in pillars:
        raise ConfigError(f"{src}: pillars.library: give either library or atoms, not both")
    p = Path(lib).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    try:
        sizes, t = read_library(p)
    except ConfigError as e:
        raise ConfigError(f"{src}: pillars.library: {e}") from None
    atoms = [{"size": f"{s!r} m", "t": [float(v.real), float(v.imag)]}
             for s, v in zip(sizes.tolist(), t)]
    data = {**data, "pillars": {**{k: v for k, v in pillars.items() if k != "library"},
                                "atoms": atoms}}
    listing = "\n".join(f'  {{ size = "{a["size"]}", t = [{a["t"][0]!r}, {a["t"][1]!r}] }},'
                        for a in atoms)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    block = f"# atoms from {p.name} (sha256 {digest}...)\natoms = [\n{listing}\n]"
    lines, out, section = text.splitlines(), [], ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            section = stripped.strip("[] ").split("]")[0]
        if section == "pillars" and re.match(r"library\s*=", stripped):
            out.append(block)
            continue
        out.append(line)
    return data, "\n".join(out) + ("\n" if text.endswith("\n") else "")

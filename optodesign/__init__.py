"""optodesign: fabrication-aware diffractive optics, from training to GDS/STL to verification.

The physics core is importable without the rest::

    import torch, optodesign
    grid = optodesign.Grid((200, 200), 400e-6)  # (ny, nx), pitch in metres; pad 2 by default
    field = torch.ones(grid.shape, dtype=torch.complex64)
    out = optodesign.propagate(field, 0.03, grid=grid, wavelength=0.75e-3)

Attributes are loaded lazily so that torch-free parts (the Design, export, the CLI's --help)
do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Grid": "optodesign.grid",
    "GridMismatchError": "optodesign.grid",
    "propagate": "optodesign.optics.propagation",
    "check_sampling": "optodesign.optics.propagation",
    "parse_length": "optodesign.units",
    "parse_quantity": "optodesign.units",
    "format_length": "optodesign.units",
    "Design": "optodesign.design",
    "import_map": "optodesign.importer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optodesign' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

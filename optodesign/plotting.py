"""One way to draw and save a figure: matplotlib's Agg canvas, no global pyplot state, and
deterministic PNG bytes (no software stamp) written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .fileio import atomic_path

__all__ = ["new_figure", "save_png"]


def new_figure(width: float, height: float, *, dpi: int = 110) -> Any:
    """A matplotlib ``Figure`` of ``width x height`` inches on its own Agg canvas.

    Unlike ``pyplot.figure`` it touches no global state (no backend switch, nothing to close),
    so library code can draw from any thread or from a program that uses another backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | Path, *, dpi: int | None = None) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically; equal figures give equal bytes."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path

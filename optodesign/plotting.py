"""One way to draw and save a figure: matplotlib's Agg canvas, no global pyplot state, and
deterministic PNG bytes (no software stamp) written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .fileio import atomic_path

__all__ = ["new_figure", "save_png", "show_plane"]


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


def show_plane(ax: Any, img: Any, *, pitch: float, title: str = "", colorbar: str | None = None,
               boxes: Any = (), box_colors: Any = None, **imshow: Any) -> Any:
    """Draw a ``(ny, nx)`` plane in physical units, in the one viewing convention: looking
    from the source towards the detector, x to the right, y (row i) downwards, row 0 at the
    top, the centre of pixel ``(ny // 2, nx // 2)`` at (0, 0). Axes in mm or µm.

    Args:
        ax: a matplotlib Axes. img: the array. pitch: metres.
        title: the panel title. colorbar: its label (``None``: no colorbar).
        boxes: pixel boxes ``(y0, x0, h, w)`` outlined (detectors, spots).
        box_colors: one colour per box (default white).
        imshow: passed on (``cmap``, ``vmin``, ``vmax``).
    """
    from matplotlib.patches import Rectangle

    ny, nx = img.shape[-2:]
    span = max(nx, ny) * pitch
    s, unit = (1e-3, "mm") if span >= 2e-3 else (1e-6, "µm")
    left, right = (-(nx // 2) - 0.5) * pitch / s, (nx - nx // 2 - 0.5) * pitch / s
    top, bottom = (-(ny // 2) - 0.5) * pitch / s, (ny - ny // 2 - 0.5) * pitch / s
    im = ax.imshow(img, origin="upper", extent=(left, right, bottom, top),
                   interpolation="nearest", **imshow)
    for i, (y0, x0, h, w) in enumerate(boxes):
        color = "w" if box_colors is None else box_colors[i]
        ax.add_patch(Rectangle((left + x0 * pitch / s, top + y0 * pitch / s), w * pitch / s,
                               h * pitch / s, fill=False, ec=color, lw=0.6))
    ax.set_xlabel(f"x ({unit})", fontsize=7)
    ax.set_ylabel(f"y ({unit})", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.locator_params(nbins=4)
    if title:
        ax.set_title(title, fontsize=8)
    if colorbar is not None:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label(colorbar, fontsize=7)
        cb.ax.tick_params(labelsize=6)
    return im

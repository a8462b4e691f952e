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
               boxes: Any = (), box_colors: Any = None, window: Any = None,
               coordinate: str = "length", **imshow: Any) -> Any:
    """Draw a ``(ny, nx)`` plane in physical units, in the one viewing convention: looking
    from the source towards the detector, x to the right, y (row i) downwards, row 0 at the
    top, the centre of pixel ``(ny // 2, nx // 2)`` at (0, 0). Axes in mm or µm.

    Args:
        ax: a matplotlib Axes. img: the array. pitch: metres.
        title: the panel title. colorbar: its label (``None``: no colorbar).
        boxes: pixel boxes ``(y0, x0, h, w)`` outlined (detectors, spots).
        box_colors: one colour per box (default white).
        window: a pixel box ``(y0, x0, h, w)`` of ``img`` to show alone, enlarged (a zoomed
            view, e.g. :meth:`optodesign.tasks.base.Task.zoom_box`); its axes keep the
            plane's coordinates, in units chosen for the window's size.
        coordinate: ``"length"`` (``pitch`` in metres; axes in mm or µm) or ``"sine"``
            (a far field: ``pitch`` is the step of the direction sines, axes ``sin θx``,
            ``sin θy``; :meth:`optodesign.tasks.base.Task.output_axes`).
        imshow: passed on (``cmap``, ``vmin``, ``vmax``).
    """
    from matplotlib.patches import Rectangle

    ny, nx = img.shape[-2:]
    y0, x0, h, w = (0, 0, ny, nx) if window is None else (int(v) for v in window)
    span = max(h, w) * pitch
    if coordinate == "sine":
        s, unit = 1.0, ""
    else:
        s, unit = (1e-3, "mm") if span >= 2e-3 else (1e-6, "µm")
    left, right = (x0 - nx // 2 - 0.5) * pitch / s, (x0 + w - nx // 2 - 0.5) * pitch / s
    top, bottom = (y0 - ny // 2 - 0.5) * pitch / s, (y0 + h - ny // 2 - 0.5) * pitch / s
    im = ax.imshow(img[..., y0:y0 + h, x0:x0 + w], origin="upper",
                   extent=(left, right, bottom, top), interpolation="nearest", **imshow)
    left0, top0 = (-(nx // 2) - 0.5) * pitch / s, (-(ny // 2) - 0.5) * pitch / s
    for i, (by, bx, bh, bw) in enumerate(boxes):
        color = "w" if box_colors is None else box_colors[i]
        ax.add_patch(Rectangle((left0 + bx * pitch / s, top0 + by * pitch / s), bw * pitch / s,
                               bh * pitch / s, fill=False, ec=color, lw=0.6))
    if window is not None:
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
    if coordinate == "sine":
        ax.set_xlabel("sin θx", fontsize=7)
        ax.set_ylabel("sin θy", fontsize=7)
    else:
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

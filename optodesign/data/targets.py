"""Built-in targets for single-layer metasurfaces, so no download is needed.

All targets are float64 ``(ny, nx)`` intensity maps normalised to a maximum of 1, on the
output plane of the design grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["text_target", "image_target", "spot_array", "spot_boxes"]


def text_target(text: str, shape: tuple[int, int], *, fill: float = 0.6) -> np.ndarray:
    """Render ``text`` with matplotlib (Agg, DejaVu Sans Bold) centred on ``shape``.

    ``fill`` is the fraction of the width the text spans.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not text.strip():
        raise UserError("target.text: must not be empty")
    ny, nx = shape
    fig = Figure(figsize=(nx / 100, ny / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_facecolor("black")
    t = fig.text(0.5, 0.5, text, color="white", ha="center", va="center", fontweight="bold",
                 family="DejaVu Sans", fontsize=10)
    canvas.draw()
    width = t.get_window_extent().width
    t.set_fontsize(10 * fill * nx / max(width, 1))
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba(), dtype=np.float64)[..., 0]
    img = rgba / 255.0
    if img.shape != (ny, nx):  # renderer rounding
        out = np.zeros((ny, nx))
        h, w = min(ny, img.shape[0]), min(nx, img.shape[1])
        out[:h, :w] = img[:h, :w]
        img = out
    if img.max() <= 0:
        raise UserError(f"target.text: {text!r} rendered empty at {ny}x{nx} pixels")
    return img / img.max()


def image_target(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a PNG/JPEG (grayscale or RGB mean), resize to ``shape`` (bilinear), max 1."""
    import matplotlib.image as mpimg
    from scipy.ndimage import zoom

    path = Path(path)
    if not path.is_file():
        raise UserError(f"target.image: {path} not found")
    try:
        img = np.asarray(mpimg.imread(path), dtype=np.float64)
    except Exception as e:  # PIL raises many types
        raise UserError(f"target.image: cannot read {path} ({e})") from None
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    img = zoom(img, (shape[0] / img.shape[0], shape[1] / img.shape[1]), order=1)
    img = np.clip(img[: shape[0], : shape[1]], 0, None)
    if img.max() <= 0:
        raise UserError(f"target.image: {path} is black")
    return img / img.max()


def spot_boxes(shape: tuple[int, int], spots: tuple[int, int], spacing: int,
               size: int) -> list[list[int]]:
    """Boxes ``[y0, x0, h, w]`` of an ``spots[0] x spots[1]`` array centred on ``shape``."""
    ny, nx = shape
    boxes = []
    for i in range(spots[0]):
        for j in range(spots[1]):
            cy = ny // 2 + round((i - (spots[0] - 1) / 2) * spacing)
            cx = nx // 2 + round((j - (spots[1] - 1) / 2) * spacing)
            y0, x0 = cy - size // 2, cx - size // 2
            if y0 < 0 or x0 < 0 or y0 + size > ny or x0 + size > nx:
                raise UserError(f"target.spots: a {spots[0]}x{spots[1]} array at spacing "
                                f"{spacing} px does not fit the {ny}x{nx} grid")
            boxes.append([y0, x0, size, size])
    return boxes


def spot_array(shape: tuple[int, int], spots: tuple[int, int], spacing: int,
               size: int) -> np.ndarray:
    """Target intensity: ones inside each spot box."""
    out = np.zeros(shape)
    for y0, x0, h, w in spot_boxes(shape, spots, spacing, size):
        out[y0:y0 + h, x0:x0 + w] = 1.0
    return out

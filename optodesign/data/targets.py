"""Built-in targets for single-layer metasurfaces, so no download is needed.

All targets are float64 ``(ny, nx)`` intensity maps normalised to a maximum of 1, on the
output plane of the design grid.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["text_target", "image_target", "read_npy_image", "spot_array", "spot_boxes"]


def text_target(text: str, shape: tuple[int, int], *, fill: float = 0.6) -> np.ndarray:
    """Render ``text`` with matplotlib (its own Agg canvas, no global backend switch; DejaVu
    Sans Bold) centred on ``shape``.

    ``fill`` is the fraction of the width the text spans.
    """
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


def read_npy_image(path: Path) -> np.ndarray:
    """Read a 2-D (or ``(h, w, 3|4)``) numeric ``.npy`` array, checking its header first.

    The shape, dtype and size the header promises are checked against the file's length
    before the array is allocated, so a corrupt header cannot ask for terabytes.

    Raises:
        UserError: one line naming ``target.image``.
    """
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise UserError(f"target.image: {path} is not a readable .npy file ({e})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise UserError(f"target.image: {path} holds {dtype} values; need real numbers")
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (3, 4))):
        raise UserError(f"target.image: {path} has shape {shape}; need (rows, cols) or "
                        f"(rows, cols, 3|4)")
    if min(shape) < 1:
        raise UserError(f"target.image: {path} is empty (shape {shape})")
    promised = math.prod(shape) * dtype.itemsize
    held = path.stat().st_size - offset
    if promised != held:
        raise UserError(f"target.image: {path}: the header promises {promised} bytes for shape "
                        f"{shape}, the file holds {held}")
    return np.load(path, allow_pickle=False)


def image_target(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a PNG/JPEG (grayscale or RGB mean) or a numeric ``.npy`` array, resize to
    ``shape`` (bilinear), max 1."""
    import matplotlib.image as mpimg
    from scipy.ndimage import zoom

    path = Path(path)
    if not path.is_file():
        raise UserError(f"target.image: {path} not found")
    if path.suffix.lower() == ".npy":
        img = np.asarray(read_npy_image(path), dtype=np.float64)
    else:
        try:
            img = np.asarray(mpimg.imread(path), dtype=np.float64)
        except Exception as e:  # PIL raises many types
            raise UserError(f"target.image: cannot read {path} ({e})") from None
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2 or min(img.shape) < 1:
        raise UserError(f"target.image: {path} has shape {img.shape}; need a 2-D image")
    if not np.isfinite(img).all():
        raise UserError(f"target.image: {path} holds non-finite values")
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

"""Built-in targets for single-layer metasurfaces, so no download is needed.

All targets are float64 ``(ny, nx)`` intensity maps normalised to a maximum of 1, on the
output plane of the design grid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

__all__ = ["text_target", "image_target", "read_placement", "read_npy_image", "spot_array",
           "spot_boxes"]


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


def image_target(path: str | Path, shape: tuple[int, int], *, pitch: float | None = None,
                 size: float | None = None,
                 centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Read a PNG/JPEG (grayscale or RGB mean) or a numeric ``.npy`` array and place it on
    the ``shape`` output plane keeping its aspect ratio (bilinear resampling, max 1).

    Placement (``[target] size`` and ``centre`` of a config):

    * ``size`` (metres, needs ``pitch``): the length of the image's longer side on the
      output plane; default: the largest that fits the plane (a 3:2 image on a square grid
      spans the full width and 2/3 of the height, centred; nothing is stretched).
    * ``centre`` (metres ``(x, y)``, needs ``pitch`` unless zero): where the image's centre
      lies, from the optical axis (the centre of pixel ``(ny // 2, nx // 2)``); x along
      columns, y along rows (row index grows with y, as on the design grid).

    Raises:
        UserError: an unreadable, black or non-finite image, or one that the size and centre
            put partly off the plane (one line naming ``target.size`` / ``target.centre``).
    """
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
    ny, nx = shape
    h, w = img.shape
    if (size is not None or any(centre)) and not (pitch and pitch > 0):
        raise UserError("target.size: placing the image in physical units needs the pitch")
    if size is None:
        scale = min(ny / h, nx / w)
    else:
        scale = size / pitch / max(h, w)  # type: ignore[operator]
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    placed = zoom(img, (th / h, tw / w), order=1, grid_mode=True, mode="nearest")
    placed = np.clip(placed[:th, :tw], 0, None)
    # the image centre on the design grid's centre pixel, shifted by `centre`
    dx = round(centre[0] / pitch) if centre[0] else 0  # type: ignore[operator]
    dy = round(centre[1] / pitch) if centre[1] else 0  # type: ignore[operator]
    y0, x0 = ny // 2 + dy - th // 2, nx // 2 + dx - tw // 2
    if y0 < 0 or x0 < 0 or y0 + th > ny or x0 + tw > nx:
        what = "target.centre" if (dx or dy) else "target.size"
        raise UserError(f"{what}: the image ({tw}x{th} px after scaling) centred at pixel "
                        f"({ny // 2 + dy}, {nx // 2 + dx}) does not fit the {ny}x{nx} output "
                        "plane")
    out = np.zeros((ny, nx))
    out[y0:y0 + th, x0:x0 + tw] = placed
    if out.max() <= 0:
        raise UserError(f"target.image: {path} is black")
    return out / out.max()


def read_placement(table: Any, *, require_unit: bool = False
                   ) -> tuple[float | None, tuple[float, float]]:
    """``[target] size`` (a length) and ``centre`` (``[x, y]`` lengths, may be negative) from
    a config's :class:`optodesign.schema.Table`."""
    from ..schema import Table

    size = table.length("size", None, require_unit=require_unit)
    raw = table.raw("centre", None)
    if raw is None:
        return size, (0.0, 0.0)
    if not isinstance(raw, list) or len(raw) != 2:
        raise table.error("centre", f"need [x, y], two lengths such as ['1 mm', '0 mm'], got "
                                    f"{raw!r}")
    items = Table({f"centre[{i}]": v for i, v in enumerate(raw)}, None, src=table.src,
                  section=table.section)
    x, y = (items.length(k, positive=False, require_unit=require_unit) for k in items.data)
    return size, (x, y)


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

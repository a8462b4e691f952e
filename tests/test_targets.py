"""An image target keeps its aspect ratio; size and centre place it in physical units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optodesign.data.targets import image_target
from optodesign.errors import ConfigError, UserError


def _png(path: Path, h: int, w: int) -> Path:
    from PIL import Image

    img = np.full((h, w), 255, dtype=np.uint8)  # a white 3:2 card: its extent is its shape
    Image.fromarray(img).save(path)
    return path


def _extent(t: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(t.max(1) > 0.5), np.flatnonzero(t.max(0) > 0.5)
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def test_a_3_by_2_png_is_not_stretched(tmp_path: Path) -> None:
    png = _png(tmp_path / "card.png", 40, 60)  # 60 wide, 40 tall
    t = image_target(png, (30, 30))
    r0, r1, c0, c1 = _extent(t)
    assert (c1 - c0, r1 - r0) == (30, 20)  # full width, 2/3 of the height: 3:2 kept
    assert (r0 + r1) / 2 == pytest.approx(15, abs=0.5)  # centred on the axis row
    # a tall image on a wide grid fits the height
    t = image_target(_png(tmp_path / "tall.png", 60, 40), (24, 48))
    r0, r1, c0, c1 = _extent(t)
    assert (c1 - c0, r1 - r0) == (16, 24)


def test_size_and_centre_in_physical_units(tmp_path: Path) -> None:
    png = _png(tmp_path / "card.png", 40, 60)
    pitch = 0.4e-3
    t = image_target(png, (40, 40), pitch=pitch, size=6e-3, centre=(2e-3, -1.2e-3))
    r0, r1, c0, c1 = _extent(t)
    assert (c1 - c0, r1 - r0) == (15, 10)  # 6 mm = 15 px long side, 3:2
    # centre: +5 columns (x = 2 mm) and -3 rows (y = -1.2 mm) from pixel (20, 20)
    assert ((c0 + c1) // 2, (r0 + r1) // 2) == (20 + 5, 20 - 3)
    with pytest.raises(UserError, match="^target.centre: .* does not fit"):
        image_target(png, (40, 40), pitch=pitch, size=6e-3, centre=(7e-3, 0.0))
    with pytest.raises(UserError, match="^target.size: .* does not fit"):
        image_target(png, (40, 40), pitch=pitch, size=30e-3)


def test_config_reads_target_size_and_centre(tmp_path: Path) -> None:
    from optodesign.train.config import parse_config

    base = {"task": "hologram", "optics": {"wavelength": "0.75 mm", "pitch": "0.4 mm",
                                           "size": 16, "distance": "2 cm"},
            "quantization": {"levels": 4}}
    cfg = parse_config({**base, "target": {"kind": "text"}})
    assert cfg.target.size is None and cfg.target.centre == (0.0, 0.0)
    cfg = parse_config({**base, "target": {"kind": "text", "size": "4 mm",
                                           "centre": ["1 mm", "-0.8 mm"]}})
    assert cfg.target.size == pytest.approx(4e-3)
    assert cfg.target.centre == pytest.approx((1e-3, -0.8e-3))
    with pytest.raises(ConfigError, match=r"^target.centre: need \[x, y\]"):
        parse_config({**base, "target": {"centre": ["1 mm"]}})
    with pytest.raises(ConfigError, match=r"^target.size: must be > 0"):
        parse_config({**base, "target": {"size": "-1 mm"}})


def test_training_places_the_image_where_the_config_says(tmp_path: Path) -> None:
    """[target] size and centre reach the target a hologram trains on (and its Design)."""
    from optodesign.tasks import get_task
    from optodesign.train.config import parse_config

    png = _png(tmp_path / "card.png", 40, 60)
    cfg = parse_config({"task": "hologram",
                        "optics": {"wavelength": "0.75 mm", "pitch": "0.4 mm", "size": 40,
                                   "distance": "2 cm"},
                        "quantization": {"levels": 4},
                        "target": {"kind": "image", "image": str(png), "size": "6 mm",
                                   "centre": ["2 mm", "-1.2 mm"]}})
    target = get_task("hologram").setup_from_config(cfg).target
    r0, r1, c0, c1 = _extent(target)
    assert (c1 - c0, r1 - r0) == (15, 10)
    assert ((c0 + c1) // 2, (r0 + r1) // 2) == (20 + 5, 20 - 3)

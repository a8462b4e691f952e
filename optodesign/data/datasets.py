"""Image classification datasets as small uint8 arrays; upsampling happens per batch.

``digits`` is embedded (the 1797 8x8 handwritten digits of the UCI "Optical Recognition of
Handwritten Digits" set, as shipped by scikit-learn; CC BY 4.0, doi:10.24432/C50P49), so the
default job needs no download. ``mnist`` / ``fashion`` read the four original IDX ``.gz``
files from a directory.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["Dataset", "load_dataset", "read_idx"]

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
#: classes of each dataset (labels must lie in 0..N-1)
N_CLASSES = {"digits": 10, "mnist": 10, "fashion": 10}
#: deflate's largest expansion (258-byte matches coded in 2 bits: about 1032:1)
MAX_DEFLATE_RATIO = 1032


@dataclass(frozen=True)
class Dataset:
    """Train/test split; images ``(n, h, w)`` float32 in [0, 1], labels int64."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(max(self.train_labels.max(), self.test_labels.max())) + 1


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a uint8 array.

    The header is read and checked first, before anything its size is allocated: the data it
    promises must match the file's length (uncompressed), or be possible at all from a gzip
    file of this size (deflate expands at most :data:`MAX_DEFLATE_RATIO`-fold); a gzip stream
    is then read only up to one byte past the promised size.

    Args:
        path: the ``.gz`` or uncompressed IDX file.

    Raises:
        UserError: missing file, bad gzip stream, wrong magic, a header that promises more
            (or less) data than the file holds, or truncated data.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found")
    gz = path.suffix == ".gz"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise UserError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
            ndim = head[3]
            raw_dims = f.read(4 * ndim)
            if ndim < 1 or len(raw_dims) < 4 * ndim:
                raise UserError(f"{path}: truncated IDX header")
            dims = struct.unpack(">" + "I" * ndim, raw_dims)
            count = math.prod(dims)  # Python int: no overflow for a corrupt header
            header = 4 + 4 * ndim
            size = path.stat().st_size
            if not gz and size - header != count:
                raise UserError(f"{path}: the header promises {count} bytes of data for shape "
                                f"{dims}, the file holds {size - header}")
            if gz and count + header > MAX_DEFLATE_RATIO * size + 1024:
                raise UserError(f"{path}: the header promises {count} bytes of data for shape "
                                f"{dims}, more than a {size}-byte gzip file can hold")
            data = bytearray()
            while len(data) <= count:
                chunk = f.read(min(count + 1 - len(data), 1 << 24))
                if not chunk:
                    break
                data += chunk
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: not a readable gzip/IDX file ({e})") from None
    if len(data) != count:
        found = f"at least {len(data)}" if len(data) > count else str(len(data))
        raise UserError(f"{path}: expected {count} bytes of data for shape {dims}, found {found}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _check_split(directory: Path, split: str, images: np.ndarray, labels: np.ndarray,
                 n_classes: int) -> None:
    img, lab = directory / _IDX_FILES[f"{split}_images"], directory / _IDX_FILES[f"{split}_labels"]
    if images.ndim != 3 or min(images.shape[1:]) < 1:
        raise UserError(f"data.path: {img}: images must be 3-D (count, rows, cols), got shape "
                        f"{images.shape}")
    if images.shape[0] == 0:
        raise UserError(f"data.path: {img}: holds no images (shape {images.shape})")
    if labels.ndim != 1:
        raise UserError(f"data.path: {lab}: labels must be 1-D (count,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise UserError(f"data.path: {lab}: {len(labels)} labels for the {len(images)} images of "
                        f"{img.name}")
    if labels.max() >= n_classes:
        raise UserError(f"data.path: {lab}: label {int(labels.max())} is outside "
                        f"0..{n_classes - 1} (the dataset has {n_classes} classes)")


def _load_idx_dir(name: str, directory: str | Path) -> Dataset:
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"data.path: {directory} is not a directory holding the four {name} "
                        f"IDX files ({', '.join(_IDX_FILES.values())})")
    missing = [f for f in _IDX_FILES.values() if not (directory / f).is_file()]
    if missing:
        raise UserError(f"data.path: {directory} lacks {', '.join(missing)} (the four {name} "
                        f"IDX files are {', '.join(_IDX_FILES.values())})")
    try:
        arrays = {key: read_idx(directory / fname) for key, fname in _IDX_FILES.items()}
    except UserError as e:
        raise UserError(f"data.path: {e}") from None
    for split in ("train", "test"):
        _check_split(directory, split, arrays[f"{split}_images"], arrays[f"{split}_labels"],
                     N_CLASSES[name])
    return Dataset(
        name,
        arrays["train_images"].astype(np.float32) / 255.0,
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"].astype(np.float32) / 255.0,
        arrays["test_labels"].astype(np.int64),
    )


def load_digits(*, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """The embedded 8x8 digits, split reproducibly into train/test (stratified by shuffling)."""
    with np.load(Path(__file__).with_name("digits.npz")) as z:
        images, labels = z["images"].astype(np.float32) / 16.0, z["labels"].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", images[train], labels[train], images[test], labels[test])


def load_dataset(name: str, path: str | Path | None = None) -> Dataset:
    """``digits`` (embedded), or ``mnist`` / ``fashion`` from a directory of IDX files."""
    if name == "digits":
        return load_digits()
    if name in ("mnist", "fashion"):
        if path is None:
            raise UserError(f"data.path: required for dataset {name!r} (a directory of IDX files)")
        return _load_idx_dir(name, path)
    raise UserError(f"data.dataset: unknown dataset {name!r} (allowed: digits, mnist, fashion)")


def split_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a test split (images as float32, labels as int64, C order, in that order):
    ``manifest.json`` records it, and verify refuses a dataset whose split differs."""
    import hashlib

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()

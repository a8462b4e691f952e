"""Image classification datasets as small uint8 arrays; upsampling happens per batch.

``digits`` is embedded (the 1797 8x8 handwritten digits of the UCI "Optical Recognition of
Handwritten Digits" set, as shipped by scikit-learn; CC BY 4.0, doi:10.24432/C50P49), so the
default job needs no download. ``mnist`` / ``fashion`` read the four original IDX ``.gz``
files from a directory.
"""

from __future__ import annotations

import gzip
import struct
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

    Raises:
        UserError: missing file, bad gzip stream, wrong magic, or truncated data.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable gzip/IDX file ({e})") from None
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise UserError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise UserError(
            f"{path}: expected {count} bytes of data for shape {dims}, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_dir(name: str, directory: str | Path) -> Dataset:
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"data.path: {directory} is not a directory holding the four {name} "
                        f"IDX files ({', '.join(_IDX_FILES.values())})")
    arrays = {key: read_idx(directory / fname) for key, fname in _IDX_FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise UserError(f"{directory}: {split} images and labels differ in count")
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

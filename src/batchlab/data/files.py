"""Datasets read from a user's files: CIFAR-10's python batches and a folder of class sub-folders."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from batchlab.data import RawData, datasets, train_test_split
from batchlab.errors import SpecError


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
    try:
        batch = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise SpecError(f"{path}: not a CIFAR-10 batch ({e})") from None
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x.astype(np.float32), np.asarray(batch["labels"], dtype=np.int64)


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


@datasets.register("image-folder")
def image_folder(seed: int, *, path: str, size: int = 32, grayscale: bool = False,
                 test_fraction: float = 0.2) -> RawData:
    """Images in one sub-folder per class (e.g. cats/, dogs/), resized to size×size with Pillow."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise SpecError(f"data.path: {str(root)!r} has no class sub-folders")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            try:
                with Image.open(file) as img:
                    img = img.convert("L" if grayscale else "RGB").resize((size, size), Image.BILINEAR)
                    images.append(np.asarray(img, dtype=np.float32).reshape(size, size, -1))
                    labels.append(label)
            except (UnidentifiedImageError, OSError):
                continue  # not an image (e.g. a README beside the pictures)
    if not images:
        raise SpecError(f"data.path: no readable images under {str(root)!r}")
    x = np.stack(images).transpose(0, 3, 1, 2)
    return train_test_split(x, np.asarray(labels, dtype=np.int64), test_fraction, seed)

"""Datasets, held in memory as tensors: a whole split is a (x, y) pair, batches are slices of it.

A dataset builder returns raw train/test arrays; `load_data` then applies what every dataset shares:
a training subset, a validation split carved from training data, and normalization with training
statistics only (so nothing about the test set leaks into the inputs).

Every draw (MNIST's pools, Chaffard's digit pairs, the subset, the validation split) comes from one seed:
``data.seed``, shared by all trials, so a study's ± is over initializations and batch orders only; or,
with ``data.resample = true``, ``data.seed`` combined with the trial's own seed (``trial_data``), so
each trial trains and is tested on its own draw and the ± covers the data too.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from batchlab.errors import SpecError, os_failure
from batchlab.registry import Registry

datasets = Registry("dataset")
# name -> f(parameters) = the number of input values (examples × values per example) a dataset
# builds, all splits together, known before building it: the memory preflight's estimate.
_sizes: dict[str, Callable[..., int]] = {}


def size_hint(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register how many input values dataset ``name`` holds for given parameters (see ``_sizes``)."""
    def decorate(f: Callable[..., int]) -> Callable[..., int]:
        _sizes[name] = f
        return f

    return decorate


def estimated_values(spec: dict[str, Any]) -> int | None:
    """Input values (all splits) a resolved [data] section will hold, or None when unknown before loading."""
    hint = _sizes.get(spec.get("name", ""))
    if hint is None:
        return None
    params = {k: v for k, v in spec.items()
              if k not in ("name", "subset", "val_fraction", "normalize", "seed", "augment")}
    return int(hint(**params))


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class RawData:
    """What a dataset builder returns: numpy arrays; ``test`` may be None when the set has none."""

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    num_classes: int


@dataclass(frozen=True)
class DataSplits:
    train: Split
    val: Split | None
    test: Split | None
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def named_splits(self) -> dict[str, Split]:
        splits = {"train": self.train, "val": self.val, "test": self.test}
        return {name: split for name, split in splits.items() if split is not None}

    def to(self, device: torch.device | str) -> DataSplits:
        """The same splits on another device (the data then stay there for the whole run)."""
        def move(split: Split | None) -> Split | None:
            return None if split is None else Split(split.x.to(device), split.y.to(device))

        return DataSplits(move(self.train), move(self.val), move(self.test), self.num_classes)


def cache_dir() -> Path:
    """Where parsed and downloaded data are kept: $BATCHLAB_CACHE, else ~/.cache/batchlab."""
    named = os.environ.get("BATCHLAB_CACHE")
    path = Path(named or Path.home() / ".cache" / "batchlab")
    what = f"BATCHLAB_CACHE={named!r}" if named else f"the data cache {str(path)!r}"
    if "\0" in str(path):
        raise SpecError(f"{what}: a path cannot hold a NUL character")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SpecError(f"{what} is a file, not a directory; point BATCHLAB_CACHE at a directory") from None
    except OSError as e:
        raise os_failure(e, what) from None
    if not path.is_dir():
        raise SpecError(f"{what} is not a directory; point BATCHLAB_CACHE at a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise SpecError(f"{what}: cannot write there (permission denied or read-only); point BATCHLAB_CACHE at a "
                        "writable directory")
    return path


def save_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write then rename, so two worker processes filling the same cache never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise os_failure(e, f"data cache file {str(path)!r}") from None


def check_raw(raw: RawData, name: str) -> RawData:
    """What every dataset must be, whatever file it came from: as many labels as examples, integer
    labels in 0..num_classes-1, finite inputs, and at least two classes (a classifier needs two)."""
    if raw.num_classes < 2:
        raise SpecError(f"data {name!r}: {raw.num_classes} class; a classifier needs at least two")
    for split, pair in (("train", raw.train), ("test", raw.test)):
        if pair is None:
            continue
        x, y = pair
        if len(x) != len(y):
            raise SpecError(f"data {name!r}: the {split} split has {len(x)} examples but {len(y)} labels")
        if split == "train" and len(y) == 0:
            raise SpecError(f"data {name!r}: no training examples")
        if not np.issubdtype(np.asarray(y).dtype, np.integer):
            raise SpecError(f"data {name!r}: {split} labels are {np.asarray(y).dtype}, not integers")
        if len(y) and (y.min() < 0 or y.max() >= raw.num_classes):
            raise SpecError(f"data {name!r}: {split} labels lie outside 0..{raw.num_classes - 1}")
        if not np.issubdtype(np.asarray(x).dtype, np.number) or not np.isfinite(x).all():
            raise SpecError(f"data {name!r}: {split} inputs are not all finite numbers")
    return raw


def train_test_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> RawData:
    """A seeded shuffle-split for sets that come without a test split."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return RawData((x[train], y[train]), (x[test], y[test]) if n_test else None, int(y.max()) + 1)


def _normalize(splits: dict[str, Split], how: str) -> dict[str, Split]:
    if how == "none":
        return splits
    x = splits["train"].x
    if how == "channel" and x.dim() > 2:
        dims = [0, *range(2, x.dim())]
        mean, std = x.mean(dim=dims, keepdim=True)[0:1], x.std(dim=dims, keepdim=True)[0:1]
    else:
        mean, std = x.mean(), x.std()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return {name: Split((s.x - mean) / std, s.y) for name, s in splits.items()}


def trial_data(data: dict[str, Any], trial: int) -> dict[str, Any]:
    """A run's [data] section for its trial: unchanged unless ``resample``, which records the trial
    (``data.trial``) so the draw and the loader's cache key are the trial's own."""
    return {**data, "trial": trial} if data.get("resample") else data


def draw_seed(data: dict[str, Any]) -> int:
    """The seed every draw of the data comes from: ``data.seed``, or with ``resample`` a seed derived
    from (data.seed, trial) by numpy's SeedSequence, so nearby pairs give unrelated streams."""
    if not data.get("resample"):
        return int(data.get("seed", 0))
    entropy = [int(data.get("seed", 0)), int(data.get("trial", 0))]
    return int(np.random.SeedSequence([abs(v) for v in entropy]).generate_state(1)[0])


def load_data(spec: dict[str, Any]) -> DataSplits:
    """Build the splits named by a resolved [data] section (cached per process by the whole section,
    so trials share one draw, and with ``resample`` each trial's draw is its own). ``augment`` is
    applied by the training loop to each epoch (data/augment.py), not here: it is not part of the key."""
    return _load_cached(json.dumps({k: v for k, v in spec.items() if k != "augment"}, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _load_cached(spec_json: str) -> DataSplits:
    spec = json.loads(spec_json)
    seed = draw_seed(spec)
    for key in ("seed", "resample", "trial"):
        spec.pop(key, None)
    generic = {k: spec.pop(k) for k in ("subset", "val_fraction", "normalize")}
    raw: RawData = check_raw(datasets.build(spec, seed), spec["name"])
    rng = np.random.default_rng(seed + 1)
    x, y = raw.train
    order = rng.permutation(len(y))
    if generic["subset"]:
        order = order[: generic["subset"]]
    n_val = int(round(len(order) * generic["val_fraction"]))
    val_idx, train_idx = order[:n_val], np.sort(order[n_val:])
    if not len(train_idx):
        raise SpecError(f"data: no training examples left after subset = {generic['subset']} and val_fraction = "
                        f"{generic['val_fraction']}")

    def tensors(xs: np.ndarray, ys: np.ndarray) -> Split:
        return Split(torch.as_tensor(np.ascontiguousarray(xs), dtype=torch.float32),
                     torch.as_tensor(np.ascontiguousarray(ys), dtype=torch.int64))

    splits = {"train": tensors(x[train_idx], y[train_idx])}
    if n_val:
        splits["val"] = tensors(x[np.sort(val_idx)], y[np.sort(val_idx)])
    if raw.test is not None:
        splits["test"] = tensors(*raw.test)
    splits = _normalize(splits, generic["normalize"])
    return DataSplits(splits["train"], splits.get("val"), splits.get("test"), raw.num_classes)


# Register the built-in datasets.
from batchlab.data import files, mnist, toy  # noqa: F401

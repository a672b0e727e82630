"""Small datasets that packages ship or generate: scikit-learn's digits and blobs, and MNIST-1D."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveInt

from batchlab.data import RawData, datasets, size_hint, train_test_split

Fraction = Annotated[float, Field(ge=0, lt=1)]


@size_hint("digits")
def _digits_size(**_: object) -> int:
    return 1797 * 64


@size_hint("blobs")
def _blobs_size(n_samples: int = 1000, n_features: int = 2, **_: object) -> int:
    return n_samples * n_features


@size_hint("mnist1d")
def _mnist1d_size(n_samples: int = 5000, **_: object) -> int:
    return n_samples * 40


@datasets.register("digits")
def digits(seed: int, *, test_fraction: Fraction = 0.2) -> RawData:
    """scikit-learn's 1,797 handwritten digits, 1×8×8, 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return train_test_split(bunch.images[:, None].astype(np.float32), bunch.target, test_fraction, seed)


@datasets.register("blobs")
def blobs(seed: int, *, n_samples: PositiveInt = 1000, centers: Annotated[int, Field(ge=2)] = 3,
          n_features: PositiveInt = 2, cluster_std: NonNegativeFloat = 1.0, test_fraction: Fraction = 0.2) -> RawData:
    """Gaussian blobs (scikit-learn make_blobs): a flat, configurable classification task."""
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n_samples, centers=centers, n_features=n_features,
                      cluster_std=cluster_std, random_state=seed)
    return train_test_split(x.astype(np.float32), y, test_fraction, seed)


@datasets.register("mnist1d")
def mnist1d(seed: int, *, n_samples: Annotated[int, Field(ge=10)] = 5000,
            train_split: Annotated[float, Field(gt=0, lt=1)] = 0.8) -> RawData:
    """MNIST-1D (Greydanus): 40-long 1-D signals, 10 classes, generated locally (never downloaded)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = n_samples, train_split, seed
    d = make_dataset(args)
    return RawData((d["x"].astype(np.float32), d["y"].astype(np.int64)),
                   (d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)), 10)

"""Each dataset loader on tiny generated files, and the shared split/normalize logic."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from batchlab.data import load_data
from batchlab.data.files import read_cifar_batch
from batchlab.data.mnist import IDX_FILES, make_pairs, read_idx
from batchlab.errors import SpecError


def resolved(**data) -> dict:
    from batchlab.spec.schema import DataSpec

    return DataSpec.model_validate(data).model_dump()


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def fake_mnist_dir(directory: Path, n_train: int = 60, n_test: int = 40, compress: bool = True) -> dict:
    """IDX files whose every pixel of an image equals 10 × its digit, so labels can be read back."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.repeat(labels[:, None, None] * 10, 28 * 28).reshape(n, 28, 28).astype(np.uint8)
        arrays[split] = (images, labels)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    write_idx(directory / (IDX_FILES["train_images"] + suffix), arrays["train"][0], compress)
    write_idx(directory / (IDX_FILES["train_labels"] + suffix), arrays["train"][1], compress)
    write_idx(directory / (IDX_FILES["test_images"] + suffix), arrays["test"][0], compress)
    write_idx(directory / (IDX_FILES["test_labels"] + suffix), arrays["test"][1], compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, compress):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    write_idx(tmp_path / "a.idx", array, compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)
    (tmp_path / "bad.idx").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(SpecError, match="not an IDX file"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes((tmp_path / "a.idx").read_bytes()[:-3] if not compress else
                                        gzip.compress(gzip.decompress((tmp_path / "a.idx").read_bytes())[:-3]))
    with pytest.raises(SpecError, match="IDX header promises"):
        read_idx(tmp_path / "short.idx")


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_idx_directory(tmp_path, compress):
    arrays = fake_mnist_dir(tmp_path / "mnist", compress=compress)
    data = load_data(resolved(name="mnist", source="idx", path=str(tmp_path / "mnist"), normalize="none"))
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.train) == 60 and len(data.test) == 40
    # the label of each image is its pixel value / 10 (order within train is the loader's own)
    assert torch.equal(data.train.x[:, 0, 0, 0].long() // 10, data.train.y)
    np.testing.assert_array_equal(data.test.y.numpy(), arrays["test"][1])


def test_mnist_download_uses_mirror_into_cache(tmp_path):
    fake_mnist_dir(tmp_path / "mirror", compress=True)
    spec = resolved(name="mnist", source="download", mirror=(tmp_path / "mirror").as_uri(),
                    path=str(tmp_path / "dl"))
    data = load_data(spec)
    assert len(data.train) == 60
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(f"{s}.gz" for s in IDX_FILES.values())
    with pytest.raises(SpecError, match="could not download"):
        load_data(resolved(name="mnist", source="download", mirror=(tmp_path / "nowhere").as_uri(),
                           path=str(tmp_path / "dl2")))


def test_make_pairs_labels_and_downsampling():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 50)
    images = np.repeat(labels[:, None, None] * 10.0, 28 * 28).reshape(50, 28, 28)
    x, y = make_pairs(images, labels, 20, np.random.default_rng(2))
    assert x.shape == (20, 2, 14, 14)
    first, second = x[:, 0, 0, 0] / 10, x[:, 1, 0, 0] / 10
    np.testing.assert_array_equal(y, (first <= second).astype(np.int64))
    assert 0 < y.mean() < 1


def test_mnist_pairs_from_idx_uses_train_images_for_train_pairs(tmp_path):
    fake_mnist_dir(tmp_path / "m", n_train=200, n_test=100)
    data = load_data(resolved(name="mnist-pairs", source="idx", path=str(tmp_path / "m"), n_train=80, n_test=30,
                              normalize="none"))
    assert data.input_shape == (2, 14, 14) and data.num_classes == 2
    assert len(data.train) == 80 and len(data.test) == 30
    digits = data.train.x[:, :, 0, 0] / 10
    assert torch.equal((digits[:, 0] <= digits[:, 1]).long(), data.train.y)


def test_embedded_mnist_pairs_are_disjoint_and_normalized():
    data = load_data(resolved(n_train=1000, n_test=1000))
    x = data.train.x
    assert x.shape == (1000, 2, 14, 14)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    # no image (one channel of a pair) of the test set appears in the training set
    train_imgs = {tuple(np.round(img.numpy().ravel(), 3)) for img in data.train.x.reshape(-1, 196)}
    test_imgs = {tuple(np.round(img.numpy().ravel(), 3)) for img in data.test.x.reshape(-1, 196)}
    assert not train_imgs & test_imgs
    assert 0.45 < float(data.train.y.float().mean()) < 0.65  # P(first <= second) = 0.55
    # the same spec gives the same data, a different data seed other data
    again = load_data(resolved(n_train=1000, n_test=1000))
    assert torch.equal(again.train.x, x)
    other = load_data(resolved(n_train=1000, n_test=1000, seed=1))
    assert not torch.equal(other.train.x, x)


def test_subset_val_split_and_channel_normalization():
    data = load_data(resolved(name="digits", subset=500, val_fraction=0.2, normalize="channel"))
    assert len(data.train) == 400 and len(data.val) == 100 and len(data.test) == 359
    assert data.input_shape == (1, 8, 8)
    assert abs(float(data.train.x.mean())) < 1e-5
    # val examples are not training examples
    train_rows = {tuple(r.tolist()) for r in data.train.x.reshape(400, -1)}
    assert sum(tuple(r.tolist()) in train_rows for r in data.val.x.reshape(100, -1)) < 5  # digits has duplicates


def test_blobs_and_mnist1d_shapes():
    blobs = load_data(resolved(name="blobs", n_samples=100, centers=4, n_features=5, test_fraction=0.25))
    assert blobs.input_shape == (5,) and blobs.num_classes == 4 and len(blobs.train) == 75
    m1d = load_data(resolved(name="mnist1d", n_samples=200))
    assert m1d.input_shape == (40,) and m1d.num_classes == 10 and len(m1d.train) == 160 and len(m1d.test) == 40


def write_cifar(directory: Path, n: int = 10) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (directory / name).write_bytes(pickle.dumps(batch))


def test_cifar10_reads_batches(tmp_path):
    write_cifar(tmp_path / "c")
    data = load_data(resolved(name="cifar10", path=str(tmp_path / "c"), normalize="none"))
    assert data.input_shape == (3, 32, 32) and len(data.train) == 20 and len(data.test) == 10
    raw = pickle.loads((tmp_path / "c" / "test_batch").read_bytes())
    np.testing.assert_array_equal(data.test.x.numpy().reshape(10, -1), raw[b"data"])


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/batchlab-pwned"),))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [1]}))
    with pytest.raises(SpecError, match="refusing to load"):
        read_cifar_batch(tmp_path / "evil")
    assert not Path("/tmp/batchlab-pwned").exists()
    with pytest.raises(SpecError, match="no CIFAR-10 batches"):
        load_data(resolved(name="cifar10", path=str(tmp_path / "empty")))


def test_image_folder(tmp_path):
    from PIL import Image

    for label, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20 + i, 17), colour).save(tmp_path / "imgs" / label / f"{i}.png")
    (tmp_path / "imgs" / "cats" / "notes.txt").write_text("not an image")
    data = load_data(resolved(name="image-folder", path=str(tmp_path / "imgs"), size=8, test_fraction=0.2,
                              normalize="none"))
    assert data.input_shape == (3, 8, 8) and data.num_classes == 2
    assert len(data.train) == 8 and len(data.test) == 2
    x, y = torch.cat([data.train.x, data.test.x]), torch.cat([data.train.y, data.test.y])
    assert torch.equal((x[:, 2, 0, 0] > 128).long(), y)  # blue = dogs = class 1
    with pytest.raises(SpecError, match="no class sub-folders"):
        load_data(resolved(name="image-folder", path=str(tmp_path / "nothing")))

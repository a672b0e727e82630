"""Hostile or broken input files: every loader refuses with one line (SpecError), never hangs,
never executes anything, never casts or truncates silently; skipped images are counted."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from batchlab.data import load_data
from batchlab.data.files import MAX_PIXELS, image_folder, read_cifar_batch
from batchlab.data.mnist import load_idx_dir, read_idx
from batchlab.errors import BatchlabWarning, SpecError
from batchlab.training.checkpoints import checkpoint_bytes, load_checkpoint, write_checkpoint

RNG = np.random.default_rng(0)


def cifar_batch(n: int = 10, labels: object = None, data: object = None) -> dict:
    return {b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8) if data is None else data,
            b"labels": list(RNG.integers(0, 10, n)) if labels is None else labels}


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/batchlab-hostile-pwned",))


CIFAR_CASES = {
    "a list": (pickle.dumps([1, 2, 3]), "not a dict"),
    "no data": (pickle.dumps({b"labels": [1]}), "no 'data'"),
    "string labels": (pickle.dumps(cifar_batch(labels=["cat"] * 10)), "list of integers"),
    "300 random bytes": (bytes(RNG.integers(0, 256, 300, dtype=np.uint8)), "not a CIFAR-10 batch"),
    "10 images, 1 label": (pickle.dumps(cifar_batch(labels=[3])), "10 images but 1 labels"),
    "float data": (pickle.dumps(cifar_batch(data=np.zeros((10, 3072)))), "uint8"),
    "wrong width": (pickle.dumps(cifar_batch(data=np.zeros((10, 100), np.uint8))), "N×3072"),
    "label 10": (pickle.dumps(cifar_batch(labels=[10] * 10)), "outside 0..9"),
    "code": (pickle.dumps({b"data": _Evil(), b"labels": [1]}), "refusing to load posix.system"),
    "empty": (b"", "not a CIFAR-10 batch"),
}


@pytest.mark.parametrize("case", list(CIFAR_CASES))
def test_hostile_cifar_batches_are_refused_in_one_line(tmp_path, case):
    payload, message = CIFAR_CASES[case]
    (tmp_path / "data_batch_1").write_bytes(payload)
    with pytest.raises(SpecError) as info:
        read_cifar_batch(tmp_path / "data_batch_1")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not Path("/tmp/batchlab-hostile-pwned").exists()


def test_cifar_fifo_and_device_links_are_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "data_batch_1")
    (tmp_path / "test_batch").symlink_to("/dev/zero")
    for name in ("data_batch_1", "test_batch"):
        with pytest.raises(SpecError, match="not a regular file"):
            read_cifar_batch(tmp_path / name)


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(">u1" if code == 0x08 else ">i4").tobytes())


def write_mnist(directory: Path, n: int = 6, **override: np.ndarray) -> None:
    arrays = {"train-images-idx3-ubyte": RNG.integers(0, 256, (n, 28, 28)),
              "train-labels-idx1-ubyte": RNG.integers(0, 10, n),
              "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n, 28, 28)),
              "t10k-labels-idx1-ubyte": RNG.integers(0, 10, n), **override}
    directory.mkdir(exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / name, array)


@pytest.mark.parametrize("override, message", [
    ({"train-labels-idx1-ubyte": RNG.integers(0, 10, 5)}, "6 images but 5 labels"),
    ({"train-images-idx3-ubyte": RNG.integers(0, 256, (6, 27, 27))}, "N×28×28"),
    ({"t10k-labels-idx1-ubyte": np.full(6, 12)}, "labels outside 0..9"),
])
def test_idx_files_with_wrong_shapes_or_counts_are_refused(tmp_path, override, message):
    write_mnist(tmp_path, **override)
    with pytest.raises(SpecError, match=message):
        load_idx_dir(tmp_path)


@pytest.mark.parametrize("payload, message", [
    (b"\x00\x00\x08", "not an IDX file"),
    (b"\x00\x00\x08\x09" + b"\x00" * 40, "not an IDX file"),  # rank 9
    (b"\x00\x00\x08\x03\x00\x00", "cut short"),
    (b"\x00\x00\x08\x01\xff\xff\xff\xff" + b"\x00" * 10, "promises shape"),  # a lying header
    (b"\x1f\x8b" + b"garbage", "broken gzip"),
    (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05" + b"\x01" * 3, mtime=0), "promises shape"),
])
def test_broken_idx_files_are_refused(tmp_path, payload, message):
    (tmp_path / "x").write_bytes(payload)
    with pytest.raises(SpecError, match=message):
        read_idx(tmp_path / "x")


def image(path: Path, colour: int, size: int = 12) -> None:
    Image.new("RGB", (size, size), (colour, colour, colour)).save(path)


def bomb_header(path: Path, side: int = 30000) -> None:
    """A PNG whose header claims side×side pixels (the rest is a stub)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)))


def test_image_folder_skips_and_counts_what_it_cannot_read(tmp_path):
    for cls, colour in (("cats", 10), ("dogs", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            image(tmp_path / cls / f"{i}.png", colour + i)
    os.mkfifo(tmp_path / "cats" / "fifo.png")  # would block a plain open() forever
    bomb_header(tmp_path / "cats" / "bomb.png")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    full = (tmp_path / "dogs" / "0.png").read_bytes()
    (tmp_path / "dogs" / "truncated.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "dogs" / "escape.png").symlink_to(Path(__file__).resolve())
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    image(outside, 99)
    (tmp_path / "cats" / "link-out.png").symlink_to(outside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = image_folder(0, path=str(tmp_path), size=8, test_fraction=0.0)
    assert len(raw.train[1]) == 6 and sorted(np.bincount(raw.train[1])) == [3, 3]
    message = next(str(w.message) for w in caught if issubclass(w.category, BatchlabWarning))
    assert "skipped 6 files" in message
    assert "2 links out of the folder" in message and "1 too large" in message and "1 not regular files" in message
    assert "2 not readable images" in message
    assert MAX_PIXELS < 30000 * 30000


def test_image_folder_with_one_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    image(tmp_path / "only" / "a.png", 5)
    with pytest.raises(SpecError, match="one class .* at least two"):
        image_folder(0, path=str(tmp_path))


def test_image_folder_with_an_empty_class_is_refused(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    image(tmp_path / "a" / "x.png", 5)
    (tmp_path / "b" / "x.txt").write_text("hi")
    with pytest.raises(SpecError, match="no readable images"):
        image_folder(0, path=str(tmp_path))


def test_blobs_with_one_centre_is_refused_by_the_schema():
    from batchlab.spec import plan_study

    with pytest.raises(SpecError, match="centers"):
        plan_study({"data": {"name": "blobs", "centers": 1}})


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))


def saved(tmp_path: Path) -> Path:
    return tmp_path / write_checkpoint(tmp_path, "r0", 1, checkpoint_bytes(Net()))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _safetensors(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors)


CHECKPOINT_CASES = {
    "garbage": (lambda p: _write(p, os.urandom(300)), "header"),
    "empty": (lambda p: _write(p, b""), "too short"),
    "truncated": (lambda p: _write(p, p.read_bytes()[:60]), "truncated"),
    "huge header claim": (lambda p: _write(p, struct.pack("<Q", 2**60) + b"{}"), "header claims"),
    "pickle": (lambda p: _write(p, pickle.dumps({"lin.weight": [1.0]})), "header"),
    "torch.save": (lambda p: (torch.save(Net().state_dict(), p), p)[1], ("header", "more than the")),
    "missing tensor": (lambda p: _write(p, _safetensors({"lin.weight": torch.zeros(2, 3)})), "missing"),
    "extra tensor": (lambda p: _write(p, _safetensors({**Net().state_dict(), "x": torch.zeros(1)})), "unexpected x"),
    "wrong shape": (lambda p: _write(p, _safetensors({**Net().state_dict(), "lin.weight": torch.zeros(3, 3)})),
                    "has shape [3, 3]"),
    "int into float": (lambda p: _write(p, _safetensors({**Net().state_dict(),
                                                         "lin.bias": torch.zeros(2, dtype=torch.int32)})), "no casting"),
    "float into int": (lambda p: _write(p, _safetensors({**Net().state_dict(), "count": torch.zeros(())})),
                       "no casting"),
    "dev zero": (lambda p: (p.unlink(), p.symlink_to("/dev/zero"), p)[2], "outside"),
    "directory": (lambda p: (p.unlink(), p.mkdir(), p)[2], "not a regular file"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_hostile_checkpoints_are_refused_in_one_line(tmp_path, case):
    corrupt, message = CHECKPOINT_CASES[case]
    path = corrupt(saved(tmp_path))
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SpecError) as info:
        load_checkpoint(model, path, root=tmp_path)
    assert any(m in str(info.value) for m in ([message] if isinstance(message, str) else message))
    assert "\n" not in str(info.value)
    if case == "dev zero":  # without a study directory to stay in, a device is still no file
        with pytest.raises(SpecError, match="not a regular file"):
            load_checkpoint(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_a_lying_offset_is_refused(tmp_path):
    path = saved(tmp_path)
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = raw[8 : 8 + size].replace(b'"data_offsets":[0,', b'"data_offsets":[1,')
    path.write_bytes(raw[:8] + header + raw[8 + size :])
    with pytest.raises(SpecError, match="data offsets"):
        load_checkpoint(Net(), path, root=tmp_path)


def test_a_checkpoint_outside_the_study_is_not_read(tmp_path):
    study, other = tmp_path / "study", tmp_path / "elsewhere"
    path = saved(other)
    with pytest.raises(SpecError, match="outside"):
        load_checkpoint(Net(), study / ".." / "elsewhere" / path.relative_to(other), root=study)
    (study / "checkpoints").mkdir(parents=True)
    (study / "checkpoints" / "link.safetensors").symlink_to(path)
    with pytest.raises(SpecError, match="outside"):
        load_checkpoint(Net(), study / "checkpoints" / "link.safetensors", root=study)
    model = load_checkpoint(Net(), path, root=other)  # the same file, from inside its own study
    assert model.count.dtype == torch.int64


def test_checkpoint_round_trip_and_per_process_temporary_names(tmp_path, monkeypatch):
    import batchlab.training.checkpoints as cp

    names = []
    real = cp.os.replace
    monkeypatch.setattr(cp.os, "replace", lambda src, dst: (names.append(str(src)), real(src, dst)))
    net = Net()
    path = tmp_path / write_checkpoint(tmp_path, "r", 0, checkpoint_bytes(net))
    write_checkpoint(tmp_path, "r", 0, checkpoint_bytes(net))
    assert len(set(names)) == 2 and all(f".{os.getpid()}." in n for n in names)
    assert sorted(os.listdir(path.parent)) == [path.name]
    loaded = load_checkpoint(Net(), path, root=tmp_path)
    assert torch.equal(loaded.lin.weight, net.lin.weight)


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    import errno

    import batchlab.training.checkpoints as cp
    from batchlab.errors import EnvironmentFailure

    def full(self, data):
        with open(self, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(cp.Path, "write_bytes", full)
    with pytest.raises(EnvironmentFailure, match="no space left on device") as info:
        write_checkpoint(tmp_path, "c", 1, checkpoint_bytes(Net()))
    folder = tmp_path / "checkpoints" / "c"
    assert info.value.exit_code == 1 and os.listdir(folder) == []


def test_load_data_refuses_a_cifar_directory_with_mismatched_counts(tmp_path):
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps(cifar_batch(labels=[1] * 9)))
    with pytest.raises(SpecError, match="10 images but 9 labels"):
        load_data({"name": "cifar10", "path": str(tmp_path), "subset": None, "val_fraction": 0.0,
                   "normalize": "none", "seed": 0})

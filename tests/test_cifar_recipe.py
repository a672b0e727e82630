"""The cifar10-resnet recipe: --data PATH chooses CIFAR-10's loader for a folder of python batches,
a generated CIFAR-format folder reads back as written, and the recipe's --quick form runs end to end on it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from batchlab.data.files import cifar10, data_override, write_fake_cifar
from batchlab.errors import SpecError
from batchlab.spec import plan_study, read_document


def test_the_generated_folder_reads_back_as_cifar10(tmp_path):
    folder = write_fake_cifar(tmp_path / "c", n_train=50, n_test=20, seed=1)
    assert sorted(p.name for p in folder.iterdir()) == ["data_batch_1", "data_batch_2", "test_batch"]
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f)
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (25, 3072)
    raw = cifar10(0, path=str(folder))
    assert raw.train[0].shape == (50, 3, 32, 32) and raw.test[0].shape == (20, 3, 32, 32)
    first = batch[b"data"][0].reshape(3, 32, 32).astype(np.float32)
    assert np.array_equal(raw.train[0][0], first) and raw.train[1][0] == batch[b"labels"][0]
    again = cifar10(0, path=str(write_fake_cifar(tmp_path / "d", 50, 20, seed=1)))
    assert np.array_equal(again.train[0], raw.train[0])  # the same seed, the same images


def test_data_path_chooses_the_loader_and_keeps_the_specs_use_of_the_data(tmp_path):
    spec = {"name": "mnist-pairs", "n_train": 10, "subset": 100, "normalize": "channel",
            "augment": {"crop": 4, "flip": True, "cutout": 0}}
    cifar = write_fake_cifar(tmp_path / "cifar-10-batches-py", 10, 10)
    chosen = data_override(str(cifar), spec)
    assert chosen == {"name": "cifar10", "path": str(cifar.resolve()), "subset": 100, "normalize": "channel",
                      "augment": spec["augment"]}
    assert data_override(str(tmp_path), spec)["path"] == str(cifar.resolve())  # the folder the archive unpacks
    (tmp_path / "pictures" / "cats").mkdir(parents=True)
    assert data_override(str(tmp_path / "pictures"), spec)["name"] == "image-folder"
    with pytest.raises(SpecError, match="not a directory"):
        data_override(str(tmp_path / "missing"), spec)


def test_the_full_form_is_goyal_et_al_s_grid():
    plan = plan_study(read_document("cifar10-resnet")[0])
    configs = {(r.config["train"]["batch_size"], r.config["train"]["lr"]) for r in plan.runs}
    assert configs == {(b, lr) for b in (128, 256, 512, 1024, 2048, 4096) for lr in (0.05, 0.1, 0.2)}
    train = plan.runs[0].config["train"]
    assert (train["precision"], train["lr_scaling"], train["base_batch_size"], train["warmup_epochs"]) == (
        "bf16", "linear", 128, 5)
    assert plan.runs[0].config["model"] == {"name": "resnet18", "width": 1.0, "norm": "ghost", "ghost_batch_size": 128}
    assert plan.runs[0].config["data"]["augment"] == {"crop": 4, "flip": True, "cutout": 0}


def test_quick_form_runs_on_a_generated_folder_and_checks_a_claim(tmp_path, run_quietly):
    folder = write_fake_cifar(tmp_path / "cifar", n_train=1024, n_test=256, seed=0)
    done = run_quietly("cifar10-resnet", tmp_path / "out", quick=True, sets=[f"data.path={folder}"], report=True)
    assert [row["finished"] for row in done.rows] == [1, 1]
    small = next(row for row in done.rows if row["train.batch_size"] == 128)  # 16 steps (batch 1,024: two)
    assert small["train_acc"]["mean"] > 0.15 and small["train_loss"]["mean"] < 2.3  # it learns (chance: 0.1, 2.30)
    summary = (tmp_path / "out" / "summary.md").read_text()
    table = summary.split("## Published vs measured")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| claim")]
    assert len(rows) == 4
    assert {row.split(" | ")[3] for row in rows} != {"not measured"}  # 1,024 vs 128 at the best rate is measured
    assert "data.augment.flip" in summary or "augment" in (tmp_path / "out" / "report.html").read_text()

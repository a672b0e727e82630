"""Devices: --device resolves and refuses clearly; on a GPU (skipped where torch sees none) runs and
stacked trials give the CPU's numbers to float tolerance."""

from __future__ import annotations

import pytest
import torch

from batchlab.engine import train_run
from batchlab.spec import plan_study
from batchlab.vectorized import train_trials

STUDY = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [12]},
         "train": {"epochs": 3, "batch_size": 16, "lr": 0.05}, "sweep": {"trials": 2}}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is checked on a GPU")


def test_device_flag(tiny_spec, tmp_path, capsys):
    from batchlab.cli import main
    from batchlab.store import load

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal below is for machines without one")
    assert main(["run", str(tiny_spec), "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert main(["run", str(tiny_spec), "--out", str(tmp_path / "y"), "--set", "train.epochs=1", "--set",
                 "sweep.trials=1", "--jobs", "1", "--quiet", "--no-report"]) == 0
    assert set(load(tmp_path / "y").runs["train.device"]) == {"cpu"}  # auto on a machine without a GPU


def records(config):
    out = []
    train_run(config, lambda epoch, metrics: out.append(metrics))
    return out


@cuda
def test_a_run_on_the_gpu_matches_the_cpu():
    run = plan_study(STUDY).runs[0]
    on_cpu = records(run.config)
    on_gpu = records({**run.config, "train": {**run.config["train"], "device": "cuda"}})
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4, abs=1e-5)


@cuda
def test_stacked_trials_on_the_gpu_match_one_by_one():
    runs = plan_study({**STUDY, "train": {**STUDY["train"], "device": "cuda"}}).runs
    stacked = {0: [], 1: []}
    train_trials([r.config for r in runs], lambda i, epoch, metrics: stacked[i].append(metrics))
    for run in runs:
        for a, b in zip(records(run.config), stacked[run.seed], strict=True):
            assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4, abs=1e-5)

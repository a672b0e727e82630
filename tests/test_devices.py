"""Devices: --device resolves and refuses clearly; on a GPU (skipped where torch sees none) runs and
stacked trials give the CPU's numbers to float tolerance."""

from __future__ import annotations

import pytest
import torch

from batchlab.spec import plan_study
from batchlab.training.loop import train_run
from batchlab.training.stacked import train_trials

STUDY = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [12]},
         "train": {"epochs": 3, "batch_size": 16, "lr": 0.05}, "sweep": {"trials": 2}}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is checked on a GPU")


def test_device_flag(tiny_spec, tmp_path, capsys):
    from batchlab.cli import main
    from batchlab.results.store import load

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal below is for machines without one")
    assert main(["run", str(tiny_spec), "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert main(["run", str(tiny_spec), "--out", str(tmp_path / "y"), "--set", "train.epochs=1", "--set",
                 "sweep.trials=1", "--jobs", "1", "--quiet", "--no-report"]) == 0
    assert set(load(tmp_path / "y").runs["train.device"]) == {"cpu"}  # auto on a machine without a GPU


def test_processes_on_the_gpu_need_one_gpu_each(tiny_spec, tmp_path, capsys, monkeypatch):
    from batchlab.cli import main
    from batchlab.training.parallel import backend

    assert backend("cpu") == "gloo"  # also on a machine with a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["run", str(tiny_spec), "--device", "cuda", "--ddp", "2", "--out", str(tmp_path / "x")]) == 2
    assert "train.processes = 2 on cuda needs 2 GPUs; torch sees 1" in capsys.readouterr().err


def test_a_spec_asking_for_cuda_without_one_is_refused(tiny_spec, tmp_path, capsys):
    from batchlab.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["run", str(tiny_spec), "--set", "train.device=cuda", "--out", str(tmp_path / "x")]) == 2
    assert "train.device = cuda: torch sees no CUDA device here" in capsys.readouterr().err


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


@cuda
def test_a_gpu_run_repeats_to_the_bit():
    run = plan_study({**STUDY, "model": {"name": "pair-cnn"}, "data": {"name": "digits"},
                      "train": {**STUDY["train"], "device": "cuda"}}).runs[0]
    first, second = records(run.config), records(run.config)
    assert [m["test_loss"] for m in first] == [m["test_loss"] for m in second]
    assert [m["train_loss"] for m in first] == [m["train_loss"] for m in second]


@cuda
def test_the_cli_runs_on_the_gpu(tiny_spec, tmp_path):
    from batchlab.cli import main
    from batchlab.results.store import load

    assert main(["run", str(tiny_spec), "--device", "cuda", "--out", str(tmp_path / "g"), "--set", "train.epochs=2",
                 "--quiet", "--no-report"]) == 0
    runs = load(tmp_path / "g").runs
    assert set(runs["train.device"]) == {"cuda"} and set(runs["status"]) == {"finished"}


def test_a_capture_that_fails_falls_back_to_the_eager_loss(monkeypatch):
    from batchlab.errors import BatchlabWarning
    from batchlab.training.graphs import GraphedLoss

    def unsupported(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", unsupported)
    weight = torch.randn(3, 2, requires_grad=True)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    graphed = GraphedLoss(lambda xb, yb: ((xb @ weight - yb) ** 2).mean(), [weight])
    failed = "CUDA graph capture failed, training eagerly: RuntimeError: operation not permitted"
    with pytest.warns(BatchlabWarning, match=failed):
        value = graphed(x, y)
    value.backward()
    assert value.item() == pytest.approx(((x @ weight - y) ** 2).mean().item())
    assert weight.grad is not None and graphed.broken and graphed(x, y).item() == pytest.approx(value.item())


def _graphed_and_eager(monkeypatch, train):
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="CUDA graph capture failed")
        graphed = train()
    monkeypatch.setenv("BATCHLAB_CUDA_GRAPHS", "0")
    return graphed, train()


@cuda
def test_graphed_steps_give_the_eager_numbers(monkeypatch):
    run = plan_study({**STUDY, "model": {"name": "pair-cnn"}, "data": {"name": "digits"},
                      "train": {**STUDY["train"], "batch_size": 50, "device": "cuda"}}).runs[0]  # 1,437 = 28·50 + 37
    graphed, eager = _graphed_and_eager(monkeypatch, lambda: records(run.config))
    for a, b in zip(eager, graphed, strict=True):
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-5, abs=1e-6)


@cuda
def test_graphed_stacked_trials_give_the_eager_numbers(monkeypatch):
    runs = plan_study({**STUDY, "train": {**STUDY["train"], "device": "cuda"}}).runs

    def train():
        out = {0: [], 1: []}
        train_trials([r.config for r in runs], lambda i, epoch, metrics: out[i].append(metrics["test_loss"]))
        return out

    graphed, eager = _graphed_and_eager(monkeypatch, train)
    for seed in (0, 1):
        assert graphed[seed] == pytest.approx(eager[seed], rel=1e-5, abs=1e-6)

"""The GPU path (skipped without CUDA; NOT run in the session that wrote it, which had no GPU):
the whole-step CUDA graph (forward, backward and the functional update) matches eager training to
float tolerance, falls back cleanly when capture fails, and BATCHLAB_CUDA_GRAPHS=0 turns it off;
mixed precision trains on the GPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from batchlab.errors import BatchlabWarning
from batchlab.spec import plan_study
from batchlab.training import graphs
from batchlab.training.functional import StackedUpdate
from batchlab.training.loop import train_run
from batchlab.training.stacked import train_trials

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is checked on a GPU")
STUDY = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [12]},
         "train": {"epochs": 3, "batch_size": 16, "lr": 0.05, "device": "cuda"},
         "sweep": {"trials": 2, "train.lr": [0.02, 0.2], "train.optimizer.momentum": [0.0, 0.9]}}


def test_graphs_are_off_on_the_cpu_and_with_the_switch(monkeypatch):
    assert not graphs.enabled(torch.zeros(1))
    monkeypatch.setenv("BATCHLAB_CUDA_GRAPHS", "0")
    assert not graphs.enabled(torch.zeros(1))


def stacked_records(doc: dict) -> list[list[dict]]:
    runs = plan_study(doc).runs
    out: list[list[dict]] = [[] for _ in runs]
    train_trials([r.config for r in runs], lambda i, epoch, m: out[i].append(m))
    return out


@cuda
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_whole_step_graph_matches_eager_training(optimizer, monkeypatch):
    doc = {**STUDY, "train": {**STUDY["train"], "optimizer": optimizer}}
    if optimizer == "adam":
        doc["sweep"] = {"trials": 2, "train.lr": [0.01, 0.003]}
    graphed = stacked_records(doc)
    monkeypatch.setenv("BATCHLAB_CUDA_GRAPHS", "0")
    eager = stacked_records(doc)
    for g_runs, e_runs in zip(graphed, eager, strict=True):
        for g, e in zip(g_runs, e_runs, strict=True):
            assert g["test_loss"] == pytest.approx(e["test_loss"], rel=1e-5, abs=1e-6)
            assert g["lr_end"] == e["lr_end"]


@cuda
def test_the_whole_step_graph_equals_eager_steps_exactly_in_kind():
    """Ten steps of a stacked least-squares problem, graphed and eager, with a rate that changes every step."""
    torch.manual_seed(0)
    x, y = torch.randn(3, 32, 5, device="cuda"), torch.randn(3, 32, device="cuda")
    specs = [{"name": "sgd", "momentum": m, "weight_decay": 0.01} for m in (0.0, 0.5, 0.9)]
    runs = []
    for use_graph in (True, False):
        w = torch.zeros(3, 5, device="cuda", requires_grad=True)
        update = StackedUpdate([w], specs)

        def losses(xs: torch.Tensor, ys: torch.Tensor, w: torch.Tensor = w) -> torch.Tensor:
            return ((xs @ w.unsqueeze(-1)).squeeze(-1) - ys).pow(2).mean(dim=1)

        step = graphs.WholeStepGraph(losses, [w], update)
        for i in range(10):
            update.set_rates([0.01 * (i + 1)] * 3)
            (step if use_graph else step.eager)(x, y)
        if use_graph:
            assert step.graphs and not step.broken  # it really was captured
        runs.append(w.detach().clone())
    assert torch.allclose(runs[0], runs[1], rtol=1e-5, atol=1e-6)


@cuda
def test_a_failed_capture_trains_eagerly_with_a_warning(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("capture refused (test)")

    monkeypatch.setattr(torch.cuda, "graph", refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failed = stacked_records(STUDY)
    assert any(issubclass(w.category, BatchlabWarning) and "whole step" in str(w.message) for w in caught)
    monkeypatch.setenv("BATCHLAB_CUDA_GRAPHS", "0")
    eager = stacked_records(STUDY)
    assert [r[-1]["test_loss"] for r in failed] == pytest.approx([r[-1]["test_loss"] for r in eager], rel=1e-6)


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_gpu(precision):
    doc = {"data": {"name": "digits"}, "model": {"name": "pair-cnn", "hidden": [16]},
           "train": {"epochs": 3, "batch_size": 32, "lr": 0.05, "device": "cuda", "precision": precision}}
    out: list[dict] = []
    train_run(plan_study(doc).runs[0].config, lambda epoch, m: out.append(m))
    assert out[-1]["train_loss"] < 0.7 * out[0]["train_loss"]

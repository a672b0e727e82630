"""Data parallelism: N processes under DistributedDataParallel (gloo on a CPU) give the one-process
run's numbers, uneven shards included; the report shows time per epoch against N."""

from __future__ import annotations

import pytest
import torch

from batchlab.results.store import load
from batchlab.spec import plan_study
from batchlab.training.parallel import World

STUDY = {"data": {"name": "blobs", "n_samples": 210, "centers": 3}, "model": {"name": "mlp", "hidden": [12]},
         "train": {"epochs": 3, "batch_size": 21, "lr": 0.05}, "checkpoints": {"every": 0},
         "sweep": {"train.processes": [1, 2]}}


def test_shards_cover_the_batch_and_their_weights_make_the_batch_mean():
    x, y = torch.arange(21.0).unsqueeze(1), torch.arange(21)
    parts = [World(rank, 2).shard(x, y) for rank in range(2)]
    assert [len(p[1]) for p in parts] == [10, 11]
    assert torch.equal(torch.cat([p[1] for p in parts]), y)
    # DDP averages the ranks' gradients: (1/N) Σ factor_r · mean_r must be the batch mean
    mean = sum(factor * float(xs.mean()) for xs, _, factor in parts) / 2
    assert mean == pytest.approx(float(x.mean()), rel=1e-12)


def test_two_processes_match_one_process(tmp_path, run_quietly):
    run_quietly(STUDY, tmp_path)
    results = load(tmp_path)
    assert list(results.runs["status"]) == ["finished", "finished"]
    epochs = results.epochs.merge(results.runs[["run_id", "train.processes"]], on="run_id")
    one = epochs[epochs["train.processes"] == 1].sort_values("epoch")
    two = epochs[epochs["train.processes"] == 2].sort_values("epoch")
    assert len(one) == len(two) == 4
    for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert two[key].to_numpy() == pytest.approx(one[key].to_numpy(), rel=1e-5, abs=1e-7), key
    assert list(two["step"]) == list(one["step"])
    assert len(results.checkpoints[results.checkpoints["run_id"] == two["run_id"].iloc[0]]) == 2  # rank 0's

    from batchlab.report import write_report

    write_report(tmp_path)
    assert (tmp_path / "figures" / "processes.png").exists()


def test_more_processes_than_examples_is_a_spec_error():
    from batchlab.errors import SpecError

    with pytest.raises(SpecError, match="more processes than the batch has examples"):
        plan_study({"train": {"batch_size": 2, "processes": 3}})


def test_torchrun_launch_gives_the_same_run(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "ddp.toml"
    spec.write_text('name = "ddp"\n[data]\nname = "blobs"\nn_samples = 210\ncenters = 3\n[model]\nname = "mlp"\n'
                    'hidden = [12]\n[train]\nepochs = 3\nbatch_size = 21\nlr = 0.05\n')
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "batchlab",
                           "run", str(spec), "--out", str(tmp_path / "two"), "--quiet", "--no-report",
                           "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    from batchlab.cli import main

    assert main(["run", str(spec), "--out", str(tmp_path / "one"), "--quiet", "--no-report", "--device", "cpu"]) == 0
    two, one = load(tmp_path / "two").epochs.sort_values("epoch"), load(tmp_path / "one").epochs.sort_values("epoch")
    assert two["test_loss"].to_numpy() == pytest.approx(one["test_loss"].to_numpy(), rel=1e-5)
    assert load(tmp_path / "two").runs["train.processes"].item() == 2

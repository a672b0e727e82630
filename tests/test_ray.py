"""Sweeps on Ray: a local instance with 2 CPUs runs the study; the driver alone writes the store, and
the numbers and checkpoints are those of local execution."""

from __future__ import annotations

import os

import pytest

from batchlab.results.store import load

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'batchlab[ray]')")

STUDY = {"data": {"name": "blobs", "n_samples": 120, "centers": 3}, "model": {"name": "mlp", "hidden": [8]},
         "train": {"epochs": 2, "lr": 0.1}, "analysis": {"sharpness": {"subspace": 0, "max_iter": 2}},
         "sweep": {"trials": 2, "train.batch_size": [8, 120]}}


@pytest.fixture(scope="module")
def local_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def run(out, executor, run_quietly):
    run_quietly(STUDY, out, jobs=2, executor=executor)
    return load(out)


def test_ray_sweep_matches_local_and_resumes(local_ray, tmp_path, run_quietly):
    on_ray, local = run(tmp_path / "ray", "ray", run_quietly), run(tmp_path / "local", "local", run_quietly)
    assert list(on_ray.runs["status"]) == ["finished"] * 4
    a = on_ray.epochs.sort_values(["run_id", "epoch"])["test_loss"].to_numpy()
    b = local.epochs.sort_values(["run_id", "epoch"])["test_loss"].to_numpy()
    assert list(a) == list(b)  # one thread per task, as locally: bit for bit
    assert len(on_ray.checkpoints) == 8 and all(os.path.exists(p) for p in on_ray.checkpoints["path"])
    assert len(on_ray.measurements) == 4  # the in-run analyses came back as events

    again = run(tmp_path / "ray", "ray", run_quietly)  # everything finished: nothing is sent again
    assert list(again.runs["train_seconds"]) == list(on_ray.runs["train_seconds"])  # timings of the first pass

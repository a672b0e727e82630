"""Checkpoints: written for every run at initialization, every N epochs and at the end; listed in the
store; loading one restores the exact model the final metrics were measured on."""

from __future__ import annotations

import pickle

import pytest

from batchlab.data import load_data
from batchlab.results.store import load
from batchlab.spec import plan_study
from batchlab.training.checkpoints import load_checkpoint
from batchlab.training.loop import evaluate
from batchlab.training.prepare import build


def test_checkpoints_are_saved_listed_and_reload_the_final_model(tmp_path, run_quietly):
    doc = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [8],
           "norm": "batch"}, "train": {"epochs": 5, "batch_size": 32, "lr": 0.1},
           "checkpoints": {"every": 2}, "sweep": {"trials": 2}}
    plan = run_quietly(doc, tmp_path).plan
    results = load(tmp_path)
    assert results.checkpoints.groupby("run_id")["epoch"].apply(list).tolist() == [[0, 2, 4, 5]] * 2

    run = plan.runs[1]
    final = results.checkpoints.query("run_id == @run.run_id and epoch == 5")["path"].item()
    data = load_data(run.config["data"])
    model, loss = build(run.config, data)
    load_checkpoint(model, final)  # batch-norm running statistics come back too
    last = results.epochs.query("run_id == @run.run_id and epoch == 5").iloc[0]
    assert evaluate(model, data.test, loss, 500) == (pytest.approx(last["test_loss"], abs=1e-6),
                                                     pytest.approx(last["test_acc"]))
    assert plan_study({**doc, "checkpoints": {"every": 0}}).runs[0].config_id == run.config_id


def test_a_pickle_is_refused_not_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code from a checkpoint ran')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    model, _ = build(plan_study({"data": "blobs", "model": "mlp"}).runs[0].config, load_data(
        plan_study({"data": "blobs", "model": "mlp"}).runs[0].config["data"]))
    with pytest.raises(Exception) as err:
        load_checkpoint(model, path)
    assert not isinstance(err.value, SystemExit)

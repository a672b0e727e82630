"""Sweeps: determinism across job counts, resume, failed and diverged runs, the results store."""

from __future__ import annotations

import sqlite3
import textwrap

import pytest

import batchlab
from batchlab.results.summary import summarize


def metric_table(out) -> list:
    epochs = batchlab.load(out).epochs
    cols = ["run_id", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "step"]
    return sorted(map(tuple, epochs[cols].itertuples(index=False)))


def test_same_numbers_with_one_and_two_jobs(tiny_spec, tmp_path, run_quietly):
    run_quietly(tiny_spec, tmp_path / "one", jobs=1)
    run_quietly(tiny_spec, tmp_path / "two", jobs=2)
    one, two = metric_table(tmp_path / "one"), metric_table(tmp_path / "two")
    assert len(one) == 4 * 5  # 2 configurations x 2 trials x (epoch 0 + 4 epochs)
    assert one == two  # bit for bit


def test_resume_redoes_only_unfinished_runs(tiny_spec, tmp_path, run_quietly):
    out = tmp_path / "r"
    runs = run_quietly(tiny_spec, out, jobs=1).plan.runs
    complete = metric_table(out)
    victim = runs[1].run_id
    db = sqlite3.connect(out / "results.db")
    with db:  # as if the sweep had been killed in the middle of this run's epoch 3
        db.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (victim,))
        db.execute("DELETE FROM metrics WHERE run_id = ? AND epoch >= 3", (victim,))
    started = dict(db.execute("SELECT run_id, started FROM runs").fetchall())
    db.close()

    run_quietly(tiny_spec, out, jobs=2)
    db = sqlite3.connect(out / "results.db")
    after = dict(db.execute("SELECT run_id, started FROM runs").fetchall())
    statuses = {s for (s,) in db.execute("SELECT status FROM runs")}
    db.close()
    assert statuses == {"finished"}
    assert {rid for rid in after if after[rid] != started[rid]} == {victim}
    assert metric_table(out) == complete


def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, run_quietly):
    plugin = tmp_path / "plugin_explodes.py"
    plugin.write_text(textwrap.dedent("""
        import torch
        from batchlab.models import models, mlp

        class Explodes(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner, self.calls = inner, 0
            def forward(self, x):
                self.calls += 1
                if self.training and self.calls > 12:
                    raise RuntimeError("boom in forward")
                return self.inner(x)

        @models.register("explodes")
        def explodes(input_shape, num_outputs, *, hidden: list[int] = [8]):
            return Explodes(mlp(input_shape, num_outputs, hidden=hidden))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "s.toml"
    spec.write_text(textwrap.dedent("""
        plugins = ["plugin_explodes"]
        [data]
        name = "blobs"
        n_samples = 100
        [model]
        name = "mlp"
        [train]
        epochs = 3
        batch_size = 10
        loss = "mse"
        [sweep]
        "train.lr" = [0.01, 1e30]
        [[sweep.include]]
        model = "explodes"
    """))
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        run_quietly(spec, out, jobs=jobs)
        results = batchlab.load(out)
        by_status = results.runs["status"].tolist()
        assert sorted(by_status) == ["diverged", "failed", "finished"]
        failed = results.runs[results.runs.status == "failed"].iloc[0]
        assert "RuntimeError: boom in forward" in failed["error"]
        # the failed run keeps the epoch it finished before exploding in epoch 2 (8 steps an epoch)
        kept = results.epochs[results.epochs.run_id == failed["run_id"]]["epoch"].tolist()
        assert kept == [0, 1]
        rows = summarize(results)
        assert sorted((r["finished"], r["diverged"], r["failed"]) for r in rows) == [(0, 0, 1), (0, 1, 0), (1, 0, 0)]
        diverged_row = next(r for r in rows if r["diverged"])
        assert diverged_row["test_acc"]["n"] == 0  # never averaged into the statistics


def test_load_and_summary_statistics(tiny_spec, tmp_path, run_quietly):
    run_quietly(tiny_spec, tmp_path / "s", jobs=1)
    results = batchlab.load(tmp_path / "s")
    runs = results.runs
    assert len(runs) == 4 and set(runs["status"]) == {"finished"}
    assert {"train.batch_size", "data.name", "final_test_acc", "train_seconds", "steps"} <= set(runs.columns)
    assert len(results.epochs) == 20 and {"test_acc", "lr", "seconds", "config_id", "seed"} <= set(results.epochs)
    rows = summarize(results)
    assert [r["train.batch_size"] for r in rows] == [16, 200]
    for row in rows:
        finals = runs[runs.config_id == row["config_id"]]["final_test_acc"]
        assert row["test_acc"]["n"] == 2
        assert row["test_acc"]["mean"] == pytest.approx(finals.mean())
        assert row["test_acc"]["std"] == pytest.approx(finals.std(ddof=1))
        assert "data.name" not in row  # only what varies identifies a configuration




def test_varying_fields_leave_out_columns_that_only_repeat_whether_a_section_is_set():
    import pandas as pd

    from batchlab.results.summary import varying_fields

    nan = float("nan")
    runs = pd.DataFrame({"config_id": ["a", "b", "c"], "train.sam.rho": [nan, 0.05, 0.1],
                         "train.sam.eta": [nan, 0.01, 0.01], "train.lr": [0.1, 0.1, 0.2], "train.epochs": [5, 5, 5]})
    assert varying_fields(runs) == ["train.sam.rho", "train.lr"]
    runs["train.sam.eta"] = [nan, 0.01, 0.02]
    assert varying_fields(runs) == ["train.sam.rho", "train.sam.eta", "train.lr"]

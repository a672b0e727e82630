"""Exports read back with each tool's own reader (TensorBoard's EventAccumulator, MLflow's client) and
compared value by value with the results store."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import batchlab
from batchlab.errors import SpecError
from batchlab.results.export import _label, _safe, _tracking_uri, export
from tests.conftest import TINY_STUDY

METRIC_KEYS = ("run_id", "config_id", "seed", "epoch")


def _run_study(directory: Path, *sets: str) -> Path:
    from batchlab.cli import main

    directory.mkdir(parents=True, exist_ok=True)
    spec = directory / "tiny.toml"
    spec.write_text(TINY_STUDY)
    out = directory / "out"
    args = ["run", str(spec), "--out", str(out), "--quiet", "--no-report", "--jobs", "1"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study (batch sizes 16 and 200, two trials each, four epochs), run once for this module."""
    return _run_study(tmp_path_factory.mktemp("study"))


def _store_values(out: Path) -> dict[tuple[str, str], dict[int, float]]:
    """(run id, metric) -> {epoch: value}, straight from the store."""
    epochs = batchlab.load(out).epochs
    values: dict[tuple[str, str], dict[int, float]] = {}
    for row in epochs.to_dict("records"):
        for name, value in row.items():
            if name not in METRIC_KEYS and value is not None and not math.isnan(value):
                values.setdefault((row["run_id"], name), {})[int(row["epoch"])] = value
    return values


def _run_names(out: Path) -> dict[str, str]:
    """run id -> the name an export gives it (label and seed); in the tiny study only the batch size varies."""
    return {r["run_id"]: f"bs={r['train.batch_size']}-s{r['seed']}" for r in batchlab.load(out).runs.to_dict("records")}


def test_tensorboard_export_reads_back_every_scalar_equal_to_the_store(study, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    messages = export([study], "tensorboard", tmp_path / "tb")
    assert messages == [f"wrote 4 runs of {study} to {tmp_path / 'tb'} (view: tensorboard --logdir {tmp_path / 'tb'})"]
    store = _store_values(study)
    runs = batchlab.load(study).runs.set_index("run_id")
    names = _run_names(study)
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted(names.values())
    compared = 0
    for run_id, name in names.items():
        events = EventAccumulator(str(tmp_path / "tb" / name))
        events.Reload()
        metrics = {metric for rid, metric in store if rid == run_id}
        assert set(events.Tags()["scalars"]) == metrics
        for metric in metrics:
            read = {e.step: e.value for e in events.Scalars(metric)}
            assert read == {epoch: float(np.float32(v)) for epoch, v in store[run_id, metric].items()}
            compared += len(read)
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["train.batch_size"].number_value == runs.loc[run_id, "train.batch_size"]
        assert hparams["train.lr"].number_value == 0.05 and hparams["model.name"].string_value == "mlp"
        assert hparams["label"].string_value == name.rsplit("-s", 1)[0]
    assert compared == 4 * 5 * len({m for _, m in store})  # 4 runs x epochs 0..4 x every metric


def test_tensorboard_export_twice_replaces_rather_than_doubles(study, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    export([study], "tensorboard", tmp_path)
    export([study], "tensorboard", tmp_path)
    folder = tmp_path / "bs=200-s1"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [e.step for e in events.Scalars("test_acc")] == [0, 1, 2, 3, 4]


def test_mlflow_export_reads_back_params_and_metric_histories_equal_to_the_store(study, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    (study / "summary.md").write_text("# tiny\n")  # what `batchlab report` leaves: logged as an artifact
    try:
        messages = export([study], "mlflow", tmp_path / "mlruns")
    finally:
        (study / "summary.md").unlink()
    uri = f"sqlite:///{(tmp_path / 'mlruns' / 'mlflow.db').resolve()}"
    assert messages == [(f"logged 4 runs of {study} to MLflow experiment 'tiny' at {uri} "
                         f"(view: mlflow ui --backend-store-uri {uri})")]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    found = client.search_runs([experiment.experiment_id])
    parents = [r for r in found if r.data.tags.get("batchlab.kind") == "study"]
    children = [r for r in found if "batchlab.run_id" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert [a.path for a in client.list_artifacts(parents[0].info.run_id)] == ["summary.md"]

    store = _store_values(study)
    results = batchlab.load(study)
    names = _run_names(study)
    configs = {r["run_id"]: r for r in results.runs.to_dict("records")}
    compared = 0
    for run in children:
        run_id = run.data.tags["batchlab.run_id"]
        assert run.info.run_name == names[run_id] and run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        params = run.data.params
        assert params["train.batch_size"] == str(configs[run_id]["train.batch_size"])
        assert params["train.lr"] == "0.05" and params["seed"] == str(configs[run_id]["seed"])
        metrics = {metric for rid, metric in store if rid == run_id}
        assert set(run.data.metrics) == metrics
        for metric in metrics:
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)}
            assert history == store[run_id, metric]  # float64 both sides: exact
            compared += len(history)
    assert compared == 4 * 5 * len({m for _, m in store})

    export([study], "mlflow", tmp_path / "mlruns")  # again: the earlier runs are replaced, not doubled
    assert len(client.search_runs([experiment.experiment_id])) == 5


def test_mlflow_export_without_mlflow_names_the_extra(study, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(SpecError, match=r"pip install 'batchlab\[mlflow\]'"):
        export([study], "mlflow", tmp_path)


def test_csv_export_of_one_directory_writes_runs_and_epochs_with_labels(study, tmp_path):
    assert export([study], "csv", tmp_path) == [
        f"wrote {tmp_path / 'runs.csv'} (4 runs) and {tmp_path / 'epochs.csv'} (20 rows)"]
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns[:4]) == ["run_id", "config_id", "label", "seed"]
    assert dict(zip(runs["train.batch_size"], runs["label"], strict=True)) == {16: "bs=16", 200: "bs=200"}
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    store = batchlab.load(study).epochs
    merged = epochs.merge(store, on=["run_id", "epoch"], suffixes=("", "_store"))
    assert len(merged) == 20
    assert np.array_equal(merged["test_acc"].to_numpy(), merged["test_acc_store"].to_numpy())  # round-trips exactly


def test_csv_export_of_two_studies_to_one_folder_stacks_them_with_a_study_column(study, tmp_path):
    other = _run_study(tmp_path / "other", "train.epochs=2", "sweep.trials=1")
    export([study, other], "csv", tmp_path / "both")
    with open(tmp_path / "both" / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert [r["study"] for r in runs] == [str(study)] * 4 + [str(other)] * 2
    epochs = pd.read_csv(tmp_path / "both" / "epochs.csv")
    assert epochs.groupby("study").size().to_dict() == {str(study): 20, str(other): 6}
    assert list(epochs.columns[:3]) == ["study", "run_id", "label"]


def test_tensorboard_export_of_two_studies_gives_each_its_folder(study, tmp_path):
    other = _run_study(tmp_path / "other", "train.epochs=1", "sweep.trials=1")
    messages = export([study, other], "tensorboard", tmp_path / "tb")
    assert len(messages) == 2
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["out", "out-2"]
    assert sorted(p.name for p in (tmp_path / "tb" / "out-2").iterdir()) == ["bs=16-s0", "bs=200-s0"]


def test_label_names_the_fields_that_vary():
    runs = pd.DataFrame({"config_id": ["a", "a", "b", "c"], "seed": [0, 1, 0, 0],
                         "train.batch_size": [1000, 1000, 20, 20], "train.lr": [0.1, 0.1, 0.1, 0.25],
                         "model.hidden": [[16], [16], [16], [16]], "data.seed": [0, 0, 0, 0]})
    assert _label(runs) == {"a": "bs=1000 lr=0.1", "b": "bs=20 lr=0.1", "c": "bs=20 lr=0.25"}
    assert _label(runs[runs.config_id == "a"]) == {"a": "all runs"}  # nothing varies
    both = runs.assign(**{"data.seed": [0, 0, 1, 1], "train.seed": [5, 5, 6, 7]})
    assert _label(both)["c"] == "bs=20 lr=0.25 data.seed=1 train.seed=7"  # a repeated short name stays dotted
    assert _label(runs.assign(label=["big", "big", "small", "small-hot"]))["c"] == "small-hot"


def test_run_folder_names_are_safe_for_the_filesystem():
    assert _safe("bs=1000 lr=0.1-s3") == "bs=1000_lr=0.1-s3"
    assert _safe("optimizer=sgd(momentum=0.9) / x-s0") == "optimizer=sgd_momentum=0.9_x-s0"
    assert _safe("../..") == "run"


def test_mlflow_destination_is_a_uri_as_given_or_a_local_sqlite_store(tmp_path):
    assert _tracking_uri("http://localhost:5000") == ("http://localhost:5000", None)
    assert _tracking_uri("sqlite:///x.db") == ("sqlite:///x.db", None)
    uri, artifacts = _tracking_uri(tmp_path / "ml")
    assert uri == f"sqlite:///{tmp_path.resolve() / 'ml' / 'mlflow.db'}"
    assert artifacts == (tmp_path.resolve() / "ml" / "artifacts").as_uri() and (tmp_path / "ml").is_dir()


def test_export_rejects_an_unknown_format_and_an_empty_directory(study, tmp_path):
    with pytest.raises(SpecError, match="unknown export format 'wandb'; formats: csv, tensorboard, mlflow"):
        export([study], "wandb", None)
    with pytest.raises(SpecError, match="no results"):
        export([tmp_path], "csv", None)

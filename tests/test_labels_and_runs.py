"""Names instead of hashes: a configuration's label (spec field, include, grid, or derived), run ids
shown as ``<label>-s<seed>``, ``ls --runs``, and ``analyze --run`` by shown name."""

from __future__ import annotations

import json
import tomllib

import pytest

from batchlab.results.labels import find_run, plan_labels, run_names
from batchlab.results.store import load
from batchlab.spec import plan_study, read_document

LABELLED = {"label": "small", "train.batch_size": 16}


def _doc(text: str, **sweep: object) -> dict:
    doc = tomllib.loads(text)
    doc["sweep"].update(sweep)
    return doc


@pytest.fixture(scope="module")
def labelled_study(tmp_path_factory, tiny_study_text, run_quietly):
    """The tiny study, one configuration labelled in an include, one epoch."""
    out = tmp_path_factory.mktemp("labelled")
    doc = _doc(tiny_study_text, include=[LABELLED])
    doc["sweep"]["train.batch_size"] = [200]
    doc["train"]["epochs"] = 2
    run_quietly(doc, out)
    return out, doc


def test_a_label_names_a_configuration_without_changing_its_id(tiny_study_text):
    plain = plan_study(_doc(tiny_study_text))
    ids = [r.config_id for r in plain.runs]
    alone = _doc(tiny_study_text, include=[LABELLED])
    alone["sweep"].pop("train.batch_size")
    labelled = plan_study(alone)
    assert [r.config_id for r in labelled.runs] == ids[:2]  # batch 16 labelled or not: one configuration
    assert labelled.runs[0].config["label"] == "small" and plan_labels(labelled.runs) == {ids[0]: "small"}
    top = plan_study({**_doc(tiny_study_text), "label": "mine"})
    assert [r.config_id for r in top.runs] == ids and top.runs[0].config["label"] == "mine"
    assert "label" not in plain.runs[0].config
    # a label every configuration shares is completed by what varies among them
    assert sorted(plan_labels(top.runs).values()) == ["mine bs=16", "mine bs=200"]


def test_a_grid_label_names_every_point_of_its_grid(tiny_study_text):
    doc = _doc(tiny_study_text, grids=[{"label": "slow", "train.lr": [0.01, 0.02]}, {"train.lr": [0.5]}])
    doc["sweep"].pop("train.batch_size")
    labels = list(plan_labels(plan_study(doc).runs).values())
    assert labels == ["slow lr=0.01", "slow lr=0.02", "lr=0.5"]
    swept = _doc(tiny_study_text, label=["a", "b"])  # swept like any field, but a label alone makes no new
    assert sorted(plan_labels(plan_study(swept).runs).values()) == ["a bs=16", "a bs=200"]  # configuration


def test_recipes_name_their_configurations():
    mnist = plan_labels(plan_study(read_document("mnist-pairs")[0]).runs)
    assert "pyramid" in mnist.values() and "bs=20 lr=0.01 schedule=constant" in mnist.values()
    remedies = plan_labels(plan_study(read_document("large-batch-remedies")[0]).runs)
    assert list(remedies.values()) == ["baseline", "linear+warmup", "sqrt+warmup", "SAM", "linear+warmup+SAM"]


def test_labels_travel_with_the_runs_and_name_them(labelled_study, cli):
    out, _ = labelled_study
    runs = load(out).runs
    assert runs["label"].tolist().count("small") == 2 and set(runs["label"].dropna()) == {"small"}
    names = run_names(runs)
    assert sorted(names.values()) == ["bs=200-s0", "bs=200-s1", "small-s0", "small-s1"]
    small = runs[runs["label"] == "small"].sort_values("seed")["run_id"].tolist()
    assert find_run("small-s1", runs) == small[1] and find_run(small[0], runs) == small[0]
    assert find_run("small-s7", runs) is None

    listed = cli("ls", out, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["label"] for r in rows] == ["bs=200", "small"] and next(iter(rows[0])) == "label"
    table = cli("ls", out)
    assert table.stdout.splitlines()[2].split()[1] == "label"  # the first column of the table

    by_run = cli("ls", out, "--runs", "--json")
    run_rows = {r["run"]: r for r in json.loads(by_run.stdout)}
    assert set(run_rows) == {"bs=200-s0", "bs=200-s1", "small-s0", "small-s1"}
    finals = runs.set_index("run_id")
    for row in run_rows.values():
        assert row["status"] == "finished" and row["epochs"] == 2 and row["of"] == 2
        assert row["test_acc"] == pytest.approx(finals.loc[row["run_id"], "final_test_acc"])
    shown = cli("ls", out, "--runs")
    assert "small-s1" in shown.stdout and "finished" in shown.stdout


def test_analyze_takes_a_run_by_its_shown_name(labelled_study, cli):
    out, _ = labelled_study
    done = cli("analyze", "sharpness", out, "--run", "small-s0", "-p", "examples=40", "-p", "max_iter=3", "--json",
               "--jobs", "1")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["configuration"], r["seed"]) for r in rows] == [("small", 0)] and rows[0]["status"] == "ok"
    assert "sharpness: [1/1] small s0: epoch 2" in done.stderr  # one progress line per result
    missing = cli("analyze", "sharpness", out, "--run", "large-s0")
    assert missing.returncode == 2 and "ls" in missing.stderr and "--runs" in missing.stderr


def test_labelling_a_finished_study_names_it_without_retraining(labelled_study, run_quietly, tmp_path, capsys):
    out, doc = labelled_study
    relabelled = json.loads(json.dumps(doc))
    relabelled["sweep"]["include"] = [{**LABELLED, "label": "sixteen"}]
    relabelled["sweep"]["grids"] = [{"label": "big", "train.batch_size": [200]}]
    relabelled["sweep"].pop("train.batch_size")
    capsys.readouterr()
    done = run_quietly(relabelled, out)
    assert "finished" not in capsys.readouterr().err  # nothing trained again
    assert {r["label"] for r in done.rows} == {"big", "sixteen"}
    assert set(load(out).runs["label"]) == {"big", "sixteen"}

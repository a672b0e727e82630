"""The command line end to end, as a user runs it (in-process through ``main``; the entry point
itself once in a subprocess)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest


def test_run_ls_export_end_to_end(tiny_spec, tmp_path, cli):
    out = tmp_path / "out"
    done = cli("run", str(tiny_spec), "--out", str(out), "--jobs", "2", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "[4/4]" in done.stderr  # one log line per finished run
    assert "train.batch_size" in done.stdout and "test acc %" in done.stdout
    assert (out / "report.html").exists() and (out / "summary.md").exists() and (out / "figures" / "curves.svg").exists()

    listed = cli("ls", str(out), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["train.batch_size"] for r in rows] == [16, 200]
    for row in rows:
        assert (row["finished"], row["diverged"], row["failed"]) == (2, 0, 0)
        for metric in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert set(row[metric]) == {"mean", "std", "n"} and row[metric]["n"] == 2
            assert 0 <= row[metric]["mean"] and row[metric]["std"] >= 0
    assert rows[0]["test_acc"]["mean"] > 0.6  # batch 16 learns the blobs in 4 epochs

    from batchlab.results.store import load  # checkpoints come from the worker processes too

    checkpoints = load(out).checkpoints
    assert len(checkpoints) == 8 and set(checkpoints["epoch"]) == {0, 4}
    assert all((out / "checkpoints").rglob("*.safetensors"))

    table = cli("ls", str(out))
    assert table.returncode == 0 and "± " in table.stdout

    again = cli("run", str(tiny_spec), "--out", str(out), "--resume", "--quiet", "--no-report")
    assert again.returncode == 0 and "into the study" not in again.stderr  # nothing left to do

    exported = cli("export", str(out), "--csv", "--to", str(tmp_path / "csv"))
    assert exported.returncode == 0, exported.stderr
    with open(tmp_path / "csv" / "epochs.csv") as f:
        epochs = list(csv.DictReader(f))
    assert len(epochs) == 20 and "test_acc" in epochs[0]
    with open(tmp_path / "csv" / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 4


def test_default_out_is_runs_slash_name(tiny_spec, tmp_path, cli):
    done = cli("run", str(tiny_spec), "--jobs", "1", "--quiet", "--no-report", "--set", "sweep.trials=1",
                    "--set", "train.epochs=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "tiny" / "results.db").exists()


@pytest.mark.parametrize("args, message", [
    (["run", "nonexistent-recipe"], "neither a spec file nor a recipe"),
    (["run", "{spec}", "--set", "sweep.train.batch_size=[0]"], "train.batch_size: Input should be greater than 0"),
    (["run", "{spec}", "--set", "train.batch_size=0"], "--set 'sweep.train.batch_size=[0]'"),
    (["run", "{spec}", "--set", "train.optimiser=sgd"], "unknown field 'optimiser' in [train]"),
    (["run", "{spec}", "--set", "model.name=vgg-small"], "model 'vgg-small' does not fit data 'blobs'"),
    (["run", "{spec}", "--set", "train.early_stop.patience=3"], "'val_loss' is not measured"),
    (["run", "{spec}", "--set", "train.schedule=plateau"], "train.schedule.metric: 'val_loss' is not measured"),
    (["run", "{spec}", "--set", "train.lr_scaling=sqrt"], "lr_scaling = 'sqrt' needs train.base_batch_size"),
    (["run", "{spec}", "--jobs", "0"], "--jobs must be at least 1"),
    (["run", "{spec}", "--resume", "--out", "{tmp}/nothing"], "nothing to resume"),
    (["ls", "{tmp}/nothing"], "no results in"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_spec, tmp_path, args, message, cli):
    args = [a.format(spec=tiny_spec, tmp=tmp_path) for a in args]
    done = cli(*args, cwd=tmp_path)  # a refused study leaves nothing behind, wherever it was run
    assert done.returncode == 2
    assert done.stderr.startswith("batchlab: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_accumulation_with_batch_norm_warns_once_per_study(tiny_spec, tmp_path, cli):
    done = cli("run", str(tiny_spec), "--out", str(tmp_path / "out"), "--jobs", "2", "--quiet", "--no-report",
                    "--set", "model.norm=batch", "--set", "train.accumulate=2", "--set", "train.epochs=1")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning: train.accumulate = 2 with batch norm") == 1
    assert "BatchlabWarning" not in done.stderr  # the workers stay quiet


def test_recipes_and_fast_help(cli):
    listed = cli("recipes")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert any(line.startswith("mnist-pairs") and "Chaffard" in line for line in lines)
    assert any(line.startswith("large-batch-remedies") and "SAM" in line for line in lines)
    probe = ("import sys\nfrom batchlab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, 'pydantic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "False False"
    assert cli("--help").returncode == 0
    assert cli("frobnicate").returncode == 2
    entry = subprocess.run([sys.executable, "-m", "batchlab", "recipes"], capture_output=True, text=True, timeout=120)
    assert entry.returncode == 0 and entry.stdout == listed.stdout

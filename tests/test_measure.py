"""The point measurements: noise scale, gradient statistics and step memory, through the CLI and the store."""

from __future__ import annotations

import json

import pytest

from batchlab.gradients.memory import step_memory
from batchlab.results.claims import Claim
from batchlab.results.store import load
from batchlab.spec import plan_study


def test_grad_stats_and_noise_scale_from_the_cli_are_stored(tiny_spec, tmp_path, cli):
    out = tmp_path / "out"
    done = cli("grad-stats", str(tiny_spec), "--batch-sizes", "1,16,128", "--batches", "200",
                    "--diversity-batches", "5", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["batch_size"] for r in rows] == [1, 16, 128]
    norms = [r["grad_norm_mean"] for r in rows]
    assert norms[0] > norms[1] > norms[2]  # averaging more examples cancels more noise
    assert rows[0]["norm_ratio_mean"] == pytest.approx(1.0)  # one example: Σ‖g_i‖ = ‖Σ g_i‖
    assert rows[0]["diversity_yin_mean"] == pytest.approx(1.0)
    assert 1.0 < rows[2]["norm_ratio_mean"] <= 128 ** 0.5 * 10

    done = cli("noise-scale", str(tiny_spec), "--after-epochs", "0", "2", "--small", "8", "--big", "64",
                    "--batches", "100", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    noise = json.loads(done.stdout)
    assert [r["after_epochs"] for r in noise] == [0, 2]
    assert all(r["critical_batch"] == r["b_simple"] and r["trace"] > 0 for r in noise)

    stored = load(out).measurements
    assert sorted(stored["kind"].unique()) == ["grad-stats", "noise-scale"]
    assert len(stored) == 5 and stored["config_id"].nunique() == 1


@pytest.mark.parametrize("args, message", [
    (["grad-stats", "{spec}", "--batch-sizes", "0,4"], "--batch-sizes: expected positive integers"),
    (["grad-stats", "{spec}", "--batch-sizes", "4,x"], "expected comma-separated integers"),
    (["grad-stats", "{spec}", "--batch-sizes", "100000"], "is not between 1 and the"),
    (["noise-scale", "{spec}", "--small", "64", "--big", "8"], "needs 1 <= --small < --big <= 192"),
])
def test_bad_measurement_arguments_are_one_line(tiny_spec, args, message, cli):
    done = cli(*[a.format(spec=tiny_spec) for a in args])
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_step_memory_grows_with_the_batch():
    doc = {"data": {"name": "blobs", "n_samples": 5000, "n_features": 64}, "model": {"name": "mlp",
           "hidden": [2048, 2048]}, "train": {"batch_size": 16}}
    config = plan_study(doc).runs[0].config
    small, large = step_memory(config, [16, 4000])
    assert large["batch_size"] == 4000 and small["batch_size"] == 16
    # 4000 × 2048 float32 activations are 31 MiB a layer; a 16-example step needs next to nothing
    assert large["step_mb"] > small["step_mb"] + 30
    assert large["peak_rss_mb"] > large["step_mb"]


def test_memory_command_runs_and_stores(tiny_spec, tmp_path, cli):
    done = cli("memory", str(tiny_spec), "--batch-sizes", "8", "--out", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["batch_size"] == 8 and row["peak_rss_mb"] > 0
    assert load(tmp_path).measurements["kind"].tolist() == ["memory"]


def test_a_specs_measure_section_is_taken_once_after_the_sweep_at_each_trial(tiny_spec, tmp_path, cli):
    spec = tmp_path / "measured.toml"
    spec.write_text(tiny_spec.read_text() + "\n[measure.grad-stats]\nbatch_sizes = [1, 64]\nbatches = 50\n"
                    "diversity_batches = 2\nafter_epochs = [0, 2]\ntrials = 2\n")
    out = tmp_path / "out"
    args = ("run", str(spec), "--out", str(out), "--quiet", "--no-report", "--set", "sweep.trials=2")
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    stored = load(out).measurements
    labels = ["batch 1 after 0 epochs", "batch 1 after 2 epochs", "batch 64 after 0 epochs", "batch 64 after 2 epochs"]
    assert sorted(stored["label"]) == sorted(labels * 2)
    first = load(out).runs.sort_values("train.batch_size")["config_id"].iloc[0]
    assert set(stored["config_id"]) == {first} and sorted(stored["seed"]) == [0] * 4 + [1] * 4
    assert all(stored["grad_norm_mean"] > 0)
    by_seed = stored.set_index(["label", "seed"])["grad_norm_mean"]
    assert all(by_seed[(label, 0)] != by_seed[(label, 1)] for label in labels)  # each trial its own network
    assert cli(*args, "--resume").returncode == 0
    assert len(load(out).measurements) == 8  # taken once, however often the study is run

    # two trials: a claim on the measurement has an interval over trials, not "a single trial"
    from batchlab.results.claims import check

    row = check(Claim(claim="averaging cancels noise", value="grad-stats:grad_norm_mean",
                      select={"after_epochs": 0}, decreases_with="batch_size"), load(out))
    assert row["n"] == 2 and row["interval"] is not None and row["verdict"] != "not measured"
    # the same trials at initialization and after 2 epochs: compared in pairs, trial by trial
    earlier = check(Claim(claim="larger early", value="grad-stats:grad_norm_mean",
                          select={"after_epochs": 0, "batch_size": 64},
                          above={"after_epochs": 2, "batch_size": 64}), load(out))
    at = stored[stored["batch_size"] == 64].set_index(["after_epochs", "seed"])["grad_norm_mean"]
    differences = [at[(0, s)] - at[(2, s)] for s in (0, 1)]
    assert earlier["method"] == "paired t" and earlier["n"] == 2
    assert earlier["estimate"] == pytest.approx(sum(differences) / 2)

    # the report's figure draws both panels: the norm and Yin et al.'s diversity
    import matplotlib

    matplotlib.use("Agg")
    from batchlab.report.data import prepare
    from batchlab.report.figures import figures

    fig = figures.get("grad-norms")(prepare(load(out), {"name": "measured"}))
    assert all(ax.lines for ax in fig.axes[:2])

    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_spec.read_text() + "\n[measure.grad-stats]\nbatches = 1\n")
    done = cli("run", str(bad), "--out", str(tmp_path / "bad"))
    assert done.returncode == 2 and "batches" in done.stderr and "Traceback" not in done.stderr
    many = tmp_path / "many.toml"
    many.write_text(tiny_spec.read_text() + "\n[measure.grad-stats]\ntrials = 9\n")
    done = cli("run", str(many), "--out", str(tmp_path / "many"), "--set", "sweep.trials=2")
    assert done.returncode == 2 and "trials = 9" in done.stderr and "Traceback" not in done.stderr

"""A plan before the work (--dry-run, --print-config), no silent surprises (--set on a swept field,
another study's directory: --fresh, --add), and several studies compared in one report."""

from __future__ import annotations

import json
import math
import tomllib

import pytest

from batchlab.results.store import load
from batchlab.spec import plan_study
from batchlab.sweep.estimate import estimate, time_configuration


def test_a_run_costs_its_steps_and_evaluations_shared_among_workers(tiny_study_text):
    runs = plan_study(tomllib.loads(tiny_study_text)).runs
    costs, seconds = estimate(runs, jobs=2, timer=lambda config: (0.01, 0.1, 15.0, 4))
    assert [(c.runs, c.epochs) for c in costs] == [(2, 4), (2, 4)]
    assert costs[0].run_seconds == pytest.approx(15 * 0.01 + 5 * 0.1)  # steps, and 4 + 1 evaluations
    assert seconds == pytest.approx(4 * 0.65 / 2)
    step, evaluation, steps, epochs = time_configuration(runs[0].config, steps=2)
    assert epochs == 4 and steps == 4 * math.ceil(192 / 16)  # 240 blobs less a 20 % test split, batch 16
    assert 0 < step < 1 and 0 < evaluation < 1
    assert time_configuration(runs[2].config, steps=2)[2] == 4  # batch 200 > 192 examples: one step an epoch


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_spec, tmp_path, cli):
    out = tmp_path / "never"
    done = cli("run", tiny_spec, "--dry-run", "--out", out, "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"tiny: 2 configurations × 2 trials = 4 runs into {out}")
    assert "bs=16" in done.stdout and "bs=200" in done.stdout and "train.batch_size" in done.stdout
    assert "estimated time: 0:0" in done.stdout and "on 2 workers" in done.stdout
    assert not out.exists()


def test_print_config_shows_the_resolved_spec(tiny_spec, cli):
    toml = cli("run", tiny_spec, "--print-config", "--set", "train.epochs=7", "--set", "train.lr=0.2")
    assert toml.returncode == 0, toml.stderr
    spec = tomllib.loads(toml.stdout)
    assert spec["train"]["epochs"] == 7 and spec["train"]["lr"] == 0.2 and spec["train"]["optimizer"]["name"] == "sgd"
    as_json = json.loads(cli("run", tiny_spec, "--print-config", "json", "--set", "train.epochs=7",
                             "--set", "train.lr=0.2").stdout)

    def unset_removed(value):
        if isinstance(value, dict):
            return {k: unset_removed(v) for k, v in value.items() if v is not None}
        return value

    assert unset_removed(as_json) == spec


@pytest.mark.parametrize("setting, hint", [
    ("train.batch_size=32", "to run this value alone: --set 'sweep.train.batch_size=[32]'"),
    ("train.batch_size=[32, 64]", "to run these values: --set 'sweep.train.batch_size=[32, 64]'"),
])
def test_set_on_a_swept_field_is_an_error_with_the_sweep_form(tiny_spec, cli, setting, hint):
    done = cli("run", tiny_spec, "--set", setting, "--dry-run")
    assert done.returncode == 2 and "sweeps 'train.batch_size'" in done.stderr and hint in done.stderr
    assert done.stderr.count("\n") == 1
    ok = cli("run", tiny_spec, "--set", "sweep.train.batch_size=[32]", "--print-config", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["sweep"]["train.batch_size"] == [32]


def test_another_study_is_refused_then_added_or_moved_aside(tiny_spec, tmp_path, cli):
    out = tmp_path / "out"
    base = ["run", tiny_spec, "--out", out, "--jobs", "1", "--quiet", "--no-report", "--set", "train.epochs=1"]
    assert cli(*base, "--set", "sweep.trials=1").returncode == 0
    more = cli(*base, "--set", "sweep.trials=2")  # more trials of the same configurations: a resume
    assert more.returncode == 0 and more.stderr.count("finished") == 2
    other = cli(*base[:-1], "train.epochs=2")
    assert other.returncode == 2 and "holds another study" in other.stderr
    assert "--fresh" in other.stderr and "--add" in other.stderr and other.stderr.count("\n") == 1
    assert len(load(out).runs) == 4  # untouched

    added = cli(*base[:-1], "train.epochs=2", "--add")
    assert added.returncode == 0, added.stderr
    assert load(out).runs.groupby("config_id").ngroups == 4

    fresh = cli(*base[:-1], "train.epochs=2", "--fresh", "--set", "sweep.trials=1")
    assert fresh.returncode == 0, fresh.stderr
    [old] = [p for p in tmp_path.iterdir() if p.name.startswith("out.old-")]
    assert f"moved the earlier results to {old}" in fresh.stderr
    assert len(load(old).runs) == 8 and len(load(out).runs) == 2  # nothing deleted; a new study here
    assert cli(*base, "--fresh", "--add").returncode == 2


def test_two_studies_in_one_report_and_one_listing(tiny_spec, tmp_path, cli):
    common = ["--jobs", "1", "--quiet", "--no-report", "--set", "sweep.trials=1", "--set", "train.epochs=1"]
    assert cli("run", tiny_spec, "--out", tmp_path / "a", *common).returncode == 0
    assert cli("run", tiny_spec, "--out", tmp_path / "b", *common, "--set", "train.lr=0.2").returncode == 0
    alone = cli("report", tmp_path / "a", tmp_path / "b")
    assert alone.returncode == 2 and "--out" in alone.stderr
    done = cli("report", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "both")
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "both" / "summary.md").read_text()
    assert summary.startswith("# a vs b")  # both studies are called tiny: their folders name them
    for label in ("a: bs=16", "a: bs=200", "b: bs=16", "b: bs=200"):
        assert f"| {label} |" in summary
    assert "a: bs=16" in (tmp_path / "both" / "report.html").read_text()
    assert cli("report", tmp_path / "a", "--out", tmp_path / "one").returncode == 0  # one study, elsewhere
    assert "| bs=16 |" in (tmp_path / "one" / "summary.md").read_text()
    listed = json.loads(cli("ls", tmp_path / "a", tmp_path / "b", "--json").stdout)
    assert [(r["study"][-1], r["label"]) for r in listed] == [("a", "bs=16"), ("a", "bs=200"), ("b", "bs=16"),
                                                                ("b", "bs=200")]

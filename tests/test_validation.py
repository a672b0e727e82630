"""Specs are checked whole before any work: ranges, section shapes, names, plugins, and sizes
against the machine's memory, each refused in one line."""

from __future__ import annotations

import time

import pytest

from batchlab.errors import SpecError
from batchlab.spec import plan_study, read_document
from batchlab.spec.reading import parse_override


def refused(doc: dict, match: str, sets: list[tuple[str, object]] = ()) -> str:
    with pytest.raises(SpecError) as info:
        plan_study(doc, sets=list(sets))
    message = str(info.value)
    assert match in message, message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("doc, match", [
    ({"train": 7}, "train must be a table"),
    ({"train": [[]]}, "train must be a table"),
    ({"sweep": "x"}, "sweep must be a table"),
    ({"claims": {"a": 1}}, "claims must be a list of tables"),
    ({"data": 5}, "data must be a table"),
    ({"train": {"lr": float("inf")}}, "train.lr"),
    ({"train": {"lr": float("nan")}}, "train.lr"),
    ({"train": {"optimizer": {"name": "sgd", "momentum": float("nan")}}}, "momentum"),
    ({"train": {"optimizer": {"name": "sgd", "momentum": -1}}}, "momentum"),
    ({"train": {"optimizer": {"name": "sgd", "momentum": 1.0}}}, "momentum"),
    ({"train": {"optimizer": {"name": "adam", "betas": [0.9, 1.5]}}}, "betas"),
    ({"train": {"warmup_epochs": float("inf")}}, "warmup_epochs"),
    ({"data": {"seed": -1}}, "data.seed"),
    ({"data": {"n_train": -3}}, "n_train"),
    ({"train": {"epochs": 10**12}}, "train.epochs"),
    ({"sweep": {"trials": 1_000_000_000}}, "sweep.trials"),
    ({"sweep": {"trials": 100, "train.lr": [0.1] * 2000}}, "200,000 runs"),
    ({"sweep": {"a.b": list(range(1000)), "c.d": list(range(1000)), "e.f": list(range(1000))}}, "runs"),
    ({"name": "../escaped"}, "study name"),
    ({"name": "/abs/olute"}, "study name"),
    ({"name": ".."}, "study name"),
    ({"name": "x/../../../y"}, "study name"),
    ({"name": "a\0b"}, "study name"),
    ({"name": "n" * 300}, "study name"),
    ({"name": "tab\there"}, "study name"),
    ({"name": 5}, "name must be a string"),
    ({"plugins": "os"}, "plugins must be a list"),
    ({"plugins": ["../x"]}, "'../x' is not a module name"),
    ({"plugins": [".rel"]}, "is not a module name"),
    ({"plugins": [""]}, "is not a module name"),
    ({"plugins": 5}, "plugins must be a list"),
    ({"plugins": [5]}, "5 is not a module name"),
    ({"plugins": ["batchlab_no_such_plugin_x"]}, "cannot import 'batchlab_no_such_plugin_x'"),
    ({"measure": {"noise-scale": {"small": -2}}}, "small"),
    ({"measure": {"noise-scale": {"smal": 2}}}, "smal"),
])
def test_bad_values_are_refused_before_any_work(doc, match):
    refused(doc, match)


def test_a_huge_trial_count_is_refused_at_once():
    start = time.perf_counter()
    refused({"sweep": {"trials": 1_000_000_000}}, "less than or equal to 10000")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("text", ["train=5", "train=[[]]", "train.optimizer=7"])
def test_set_cannot_replace_a_section_with_a_value(text):
    key, value = parse_override(text)
    sets = [(key, value), ("train.device", "cpu")]  # what `batchlab run` appends
    with pytest.raises(SpecError, match="table"):
        plan_study({}, sets=sets)


def test_good_names_and_plugins_pass():
    plan = plan_study({"name": "Größe-study_2 (v1)", "plugins": ["json", "os.path"]})
    assert plan.study.name == "Größe-study_2 (v1)" and plan.study.plugins == ["json", "os.path"]


def test_a_utf16_or_binary_spec_is_one_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "x"\n', encoding="utf-16")
    with pytest.raises(SpecError, match="not UTF-8"):
        read_document(str(path))
    (tmp_path / "d.toml").mkdir()
    with pytest.raises(SpecError, match="not a regular file"):
        read_document(str(tmp_path / "d.toml"))


def test_plugins_are_found_beside_the_spec_from_any_working_directory(tmp_path, monkeypatch):
    spec_dir, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    spec_dir.mkdir()
    elsewhere.mkdir()
    (spec_dir / "batchlab_test_components_a1.py").write_text(
        "from batchlab.losses import losses\n"
        "import torch.nn.functional as F\n"
        "@losses.register('plugin-ce-a1')\n"
        "def plugin_ce():\n"
        "    '''cross-entropy, from a plugin'''\n"
        "    return F.cross_entropy\n")
    (spec_dir / "s.toml").write_text('plugins = ["batchlab_test_components_a1"]\n[train]\nloss = "plugin-ce-a1"\n')
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    doc, _ = read_document(str(spec_dir / "s.toml"))
    plan = plan_study(doc)
    assert plan.runs[0].config["train"]["loss"]["name"] == "plugin-ce-a1"
    assert "_spec_directory" not in plan.runs[0].config and plan.study.plugins == ["batchlab_test_components_a1"]


def test_a_plugin_that_fails_on_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "batchlab_test_broken_b2.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    (tmp_path / "s.toml").write_text('plugins = ["batchlab_test_broken_b2"]\n')
    doc, _ = read_document(str(tmp_path / "s.toml"))
    refused(doc, "cannot import 'batchlab_test_broken_b2' (RuntimeError: boom)")


# --- the memory preflight and [measure] checked against the data -------------------------------

def test_a_dataset_too_big_for_memory_is_refused_quickly_with_its_estimate():
    from batchlab.sweep.preflight import preflight

    plan = plan_study({"data": {"n_train": 100_000_000}, "train": {"epochs": 1}})
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        preflight(plan.runs)
    assert time.perf_counter() - start < 5
    # (1e8 + 1000 pairs) × 2×14×14 values × 4 bytes × 3 copies while building = 438 GiB
    assert "data 'mnist-pairs' needs about 438.1 GiB of memory" in str(info.value)


def test_memory_check_uses_the_estimate_against_what_is_available(monkeypatch):
    import batchlab.sweep.preflight as pf

    monkeypatch.setattr(pf, "available_memory", lambda: 10 * 2**20)
    with pytest.raises(SpecError, match=r"needs about 0.1 GiB of memory but 0.0 GiB is available"):
        pf.check_memory(100 * 2**20, "data 'x'")
    pf.check_memory(5 * 2**20, "data 'x'")
    assert pf.data_estimate({"name": "blobs", "n_samples": 1000, "n_features": 5, "centers": 3}) == 1000 * 5 * 4 * 3


def test_available_memory_is_read_from_the_machine():
    from batchlab.sweep.preflight import available_memory

    free = available_memory()
    assert free is not None and 2**20 < free < 2**50


def test_a_bad_noise_scale_is_refused_before_the_sweep():
    from batchlab.sweep.preflight import preflight

    doc = {"data": {"name": "blobs", "n_samples": 200}, "model": {"name": "mlp", "hidden": [4]},
           "train": {"epochs": 1, "batch_size": 10}, "measure": {"noise-scale": {"small": 64, "big": 32}}}
    plan = plan_study(doc)
    with pytest.raises(SpecError, match="measure.noise-scale: needs 1 <= small < big"):
        preflight(plan.runs, plan.study.measure)
    preflight(plan.runs, {"noise-scale": {"small": 8, "big": 32}})

"""Spec files: defaults, validation errors that name the field, sweeps, overrides."""

from __future__ import annotations

import tomllib

import pytest

from batchlab.errors import SpecError
from batchlab.spec import parse_override, plan_study, read_document


def plan(text: str, **kwargs):
    return plan_study(tomllib.loads(text), **kwargs)


def test_empty_spec_is_seed_000():
    [run] = plan("").runs
    cfg = run.config
    assert cfg["data"]["name"] == "mnist-pairs" and cfg["data"]["n_train"] == 1000 and cfg["data"]["n_test"] == 1000
    assert cfg["model"]["name"] == "pair-cnn" and cfg["model"]["channels"] == [16, 20]
    assert cfg["train"]["optimizer"] == {"name": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
                                         "dampening": 0.0}
    assert (cfg["train"]["lr"], cfg["train"]["batch_size"], cfg["train"]["epochs"]) == (0.01, 20, 80)
    assert run.seed == 0


def test_grid_is_product_times_trials_and_include_adds():
    p = plan("""
[sweep]
trials = 3
"train.batch_size" = [20, 100]
"train.lr" = [0.01, 0.1]
[[sweep.include]]
"train.batch_size" = 1000
""")
    configs = {(r.config["train"]["batch_size"], r.config["train"]["lr"]) for r in p.runs}
    assert configs == {(20, 0.01), (20, 0.1), (100, 0.01), (100, 0.1), (1000, 0.01)}
    assert len(p.runs) == 15
    assert sorted({r.seed for r in p.runs}) == [0, 1, 2]
    # trials of one configuration share a config id, configurations do not
    assert len({r.config_id for r in p.runs}) == 5
    assert len({r.run_id for r in p.runs}) == 15


def test_sub_grids_are_crossed_with_the_top_grid():
    p = plan("""
[sweep]
"train.batch_size" = [20, 100]
[[sweep.grids]]
"train.optimizer" = ["sgd"]
"train.lr" = [0.01, 0.1]
[[sweep.grids]]
"train.optimizer" = ["adam"]
"train.lr" = [0.001]
""")
    configs = [(r.config["train"]["batch_size"], r.config["train"]["optimizer"]["name"], r.config["train"]["lr"])
               for r in p.runs]
    assert configs == [(20, "sgd", 0.01), (20, "sgd", 0.1), (20, "adam", 0.001),
                       (100, "sgd", 0.01), (100, "sgd", 0.1), (100, "adam", 0.001)]
    with pytest.raises(SpecError, match=r"sweep.grids\[0\] 'train.lr' must be a non-empty list"):
        plan('[[sweep.grids]]\n"train.lr" = 0.1\n')


def test_swept_component_parameters_are_validated_and_resolved():
    p = plan('[sweep]\n"train.optimizer.momentum" = [0.0, 0.5]\n')
    assert [r.config["train"]["optimizer"]["momentum"] for r in p.runs] == [0.0, 0.5]
    p = plan('[sweep]\n"train.optimizer" = ["sgd", "adam"]\n')
    assert p.runs[1].config["train"]["optimizer"] == {"name": "adam", "betas": [0.9, 0.999], "eps": 1e-8,
                                                      "weight_decay": 0.0}


@pytest.mark.parametrize("text, expected", [
    ("[train]\nbatchsize = 20\n", "unknown field 'batchsize' in [train]; allowed: batch_size"),
    ("[train]\nbatch_size = -5\n", "train.batch_size: Input should be greater than 0 (got -5)"),
    ("[train]\nlr = 'fast'\n", "train.lr: Input should be a valid number"),
    ("[train]\noptimizer = 'sgdd'\n", "train.optimizer: unknown optimizer 'sgdd'; known: adam, adamw, lamb, lars, sgd"),
    ("[train]\noptimizer = {name = 'sgd', momentun = 0.9}\n", "optimizer 'sgd' has no parameter 'momentun'"),
    ("[data]\nn_trian = 5\n", "dataset 'mnist-pairs' has no parameter 'n_trian'"),
    ("[model]\nname = 'resnet'\n", "unknown model 'resnet'"),
    ("[sweep]\n\"train.batch_size\" = 20\n", "must be a non-empty list"),
    ("[sweep]\n\"train.batchsize\" = [20]\n", "sweep train.batchsize=20: unknown field 'batchsize' in [train]"),
    ("[sweep]\n\"train.batch_size\" = [20, 0]\n", "sweep train.batch_size=0: train.batch_size: Input should be"),
    ("[train.schedule]\nname = 'piecewise'\nfactors = [1, 2]\nevery = [10]\n", "2 factors but 1 lengths"),
    ("colour = 'red'\n", "unknown field 'colour' in the top level"),
])
def test_bad_specs_name_the_field(text, expected):
    with pytest.raises(SpecError) as info:
        plan(text)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_overrides_and_quick():
    assert parse_override("train.epochs=5") == ("train.epochs", 5)
    assert parse_override("data.name=blobs") == ("data.name", "blobs")
    assert parse_override("sweep.train.batch_size=[1, 2]") == ("sweep.train.batch_size", [1, 2])
    with pytest.raises(SpecError):
        parse_override("train.epochs")
    doc = {"train": {"epochs": 80}, "sweep": {"trials": 5, "train.batch_size": [20, 100]},
           "quick": {"train": {"epochs": 3}, "sweep": {"trials": 1}}}
    p = plan_study(doc, quick=True, sets=[("sweep.train.batch_size", [7])])
    assert [(r.config["train"]["epochs"], r.config["train"]["batch_size"]) for r in p.runs] == [(3, 7)]
    with pytest.raises(SpecError, match="no \\[quick\\] section"):
        plan_study({}, quick=True)


def test_read_document_errors(tmp_path):
    with pytest.raises(SpecError, match="neither a spec file nor a recipe"):
        read_document("no-such-recipe")
    with pytest.raises(SpecError, match="not found"):
        read_document(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(SpecError, match="invalid TOML"):
        read_document(str(bad))
    doc, name = read_document("mnist-pairs")
    assert name == "mnist-pairs" and doc["sweep"]["trials"] == 10


def test_main_job_recipe_expands_to_seed_000_study():
    doc, _ = read_document("mnist-pairs")
    p = plan_study(doc)
    assert len(p.runs) == 50
    configs = {}
    for r in p.runs:
        t = r.config["train"]
        configs[r.config_id] = (t["batch_size"], t["lr"], t["schedule"]["name"])
    assert sorted(configs.values()) == [(20, 0.01, "constant"), (100, 0.01, "constant"), (1000, 0.01, "constant"),
                                        (1000, 0.01, "piecewise"), (1000, 0.1, "constant")]


def test_readme_full_spec_example_validates_as_written():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.DOTALL) if 'name = "my-study"' in b)
    plan = plan_study(tomllib.loads(block))
    assert len(plan.runs) == 18  # (three batch sizes × two sub-grid rates; the include repeats one) × 3 trials
    train = plan.runs[0].config["train"]
    assert train["lr_update"] == "epoch" and train["accumulate"] == 1 and train["sam"] is None


def test_readme_analysis_table_validates_and_does_not_change_the_config_id():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.DOTALL) if b.startswith("[analysis]"))
    plain = plan_study({"train": {"epochs": 1}})
    analysed = plan_study({"train": {"epochs": 1}, **tomllib.loads(block)})
    assert set(analysed.runs[0].config["analysis"]) == {"sharpness", "hessian", "landscape", "interpolate"}
    assert analysed.runs[0].config_id == plain.runs[0].config_id  # analyses do not change the training
    with pytest.raises(SpecError, match="no parameter 'rho'"):
        plan_study({"analysis": {"sharpness": {"rho": 1}}})

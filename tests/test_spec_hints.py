"""Errors that name their fix: a near recipe or spec file, quotes for dotted sweep keys, quotes for list values."""

from __future__ import annotations

import pytest

from batchlab.errors import SpecError
from batchlab.spec import parse_override, plan_study, read_document

TINY = """
[data]
name = "blobs"
n_samples = 60
[model]
name = "mlp"
[train]
epochs = 1
batch_size = 16
"""


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_target_suggests_the_toml_file_beside_it(tmp_path, monkeypatch):
    (tmp_path / "my_study.toml").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    message = _error(read_document, "my_study")
    assert message.startswith("'my_study' is neither a spec file nor a recipe; recipes: ")
    assert message.endswith("; did you mean 'my_study.toml'?")
    assert read_document("my_study.toml")[1] == "my_study"  # and the suggestion works


def test_misspelt_recipe_suggests_the_closest_recipe():
    assert "did you mean the recipe 'mnist-pairs'?" in _error(read_document, "mnist-pair")
    assert "did you mean the recipe 'critical-batch'?" in _error(read_document, "critical_batch")
    assert "did you mean the recipe 'mnist-pairs' (no .toml)?" in _error(read_document, "mnist-pairs.toml")
    assert "did you mean" not in _error(read_document, "zzzz")  # nothing near: no guess


def test_misspelt_spec_file_suggests_the_closest_file(tmp_path):
    (tmp_path / "batch_study.toml").write_text(TINY)
    message = _error(read_document, str(tmp_path / "batch_studdy.toml"))
    assert message == (f"spec file {str(tmp_path / 'batch_studdy.toml')!r} not found; "
                       f"did you mean {str(tmp_path / 'batch_study.toml')!r}?")


@pytest.mark.parametrize("sweep, where, fix", [
    ("[sweep]\ntrain.batch_size = [16, 32]\n", "[sweep]", '"train.batch_size" = [16, 32]'),
    ("[sweep]\ntrials = 2\ntrain.optimizer.name = [\"sgd\", \"adam\"]\n", "[sweep]",
     '"train.optimizer.name" = ["sgd", "adam"]'),
    ("[[sweep.grids]]\ntrain.lr = [0.1, 0.2]\n", "[[sweep.grids]]", '"train.lr" = [0.1, 0.2]'),
    ("[quick.sweep]\ntrain.batch_size = [16]\n", "[quick.sweep]", '"train.batch_size" = [16]'),
])
def test_unquoted_dotted_sweep_key_names_the_quoted_form(tmp_path, sweep, where, fix):
    spec = tmp_path / "s.toml"
    spec.write_text(TINY + sweep)
    message = _error(read_document, str(spec))
    assert message.startswith(f"{where}: ") and message.endswith(f"quote the dotted name: {fix}")
    spec.write_text(TINY + sweep.replace(fix.split(" = ")[0].strip('"'), fix.split(" = ")[0]))
    doc, _ = read_document(str(spec))  # quoted as the message says: accepted
    assert plan_study(doc).runs


def test_set_list_split_by_the_shell_says_how_to_quote():
    # `--set train.batch_size=[32, 64]` unquoted reaches batchlab as two words
    message = _error(parse_override, "sweep.train.batch_size=[32,")
    assert message == ("--set 'sweep.train.batch_size=[32,': '[32,' is not a complete TOML list; quote the whole "
                       "setting for the shell, e.g. --set 'sweep.train.batch_size=[32, 64]'")
    message = _error(parse_override, "train.batch_size=[32,")
    assert message.endswith("(to sweep it: --set 'sweep.train.batch_size=[32, 64]')")
    assert _error(parse_override, "64]").endswith("quote a value with spaces for the shell, "
                                                 "e.g. --set 'sweep.train.batch_size=[32, 64]'")
    assert "quote" not in _error(parse_override, "train.epochs")  # a plain missing value: no quoting advice
    with pytest.raises(SpecError, match="not a complete TOML table"):
        parse_override("train.optimizer={name = ")


def test_set_list_on_a_single_valued_field_shows_the_sweep_form():
    import tomllib

    doc = tomllib.loads(TINY)
    message = _error(plan_study, doc, sets=[parse_override("train.batch_size=[32, 64]")])
    assert message.startswith("train.batch_size: ")
    assert message.endswith("; to run one configuration per value: --set 'sweep.train.batch_size=[32, 64]'")
    plan = plan_study(doc, sets=[parse_override("sweep.train.batch_size=[32, 64]")])  # the form it shows
    assert [r.config["train"]["batch_size"] for r in plan.runs] == [32, 64]
    assert parse_override("model.hidden=[8, 8]") == ("model.hidden", [8, 8])  # lists where a field takes one
    assert "sweep" not in _error(plan_study, doc, sets=[("train.epochs", "many")])

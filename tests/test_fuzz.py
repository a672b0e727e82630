"""A spec fuzzer: mutants of the README's and the recipes' specs (keys deleted, values of the wrong
type, negative / zero / huge / NaN / infinite numbers, wrong names, empty lists, unicode) either
plan and pass the preflight's size checks or are refused with one line (SpecError): never another
exception, never a hang. Fixed seed (derandomized), a budget that fits CI; run with ``-s`` for the
counts."""

from __future__ import annotations

import copy
import math
import re
import time
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchlab.errors import SpecError
from batchlab.spec import plan_study, recipe_names
from batchlab.spec.reading import check_sections
from batchlab.sweep.preflight import check_memory, data_estimate, preflight

README = Path(__file__).resolve().parents[1] / "README.md"
MUTANTS = 600
PREFLIGHT_BYTES = 64 << 20  # mutants with more data than this are sized, not loaded (CI's time and memory)


def base_specs() -> list[dict[str, Any]]:
    specs = []
    for block in re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.DOTALL):
        try:
            specs.append(tomllib.loads(block))
        except tomllib.TOMLDecodeError:
            continue  # a fragment, not a spec
    for name in recipe_names():
        specs.append(tomllib.loads((resources.files("batchlab.spec.recipes") / f"{name}.toml").read_text()))
    return specs


def plans(doc: dict[str, Any]) -> bool:
    """Bases must pass as written; two README blocks do not (its plugin example names the reader's
    own module, and its full spec stops early on val_loss without a validation split)."""
    return check(doc) == "valid"




def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a document (into tables and lists)."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


WRONG_NAMES = ["sgdd", "", "none", "cuda", "linear", "mlp", "ÿ", "train_acc", "lars", "🙂", "cosine", "blobs"]
VALUES = st.one_of(
    st.sampled_from([0, -1, 1, 2, -(10**9), 10**9, 10**30, 0.0, -0.5, 1e-300, 1e300, math.inf, -math.inf, math.nan,
                     True, False, "", [], {}, [[]], [0], ["x"], {"name": "sgd"}]),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WRONG_NAMES),
    st.text(max_size=12),
    st.lists(st.integers(-3, 300), max_size=3),
)


def mutate(data: st.DataObject, doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        where = paths(doc)
        if not where:
            break
        path = data.draw(st.sampled_from(where), label="path")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op = data.draw(st.sampled_from(["delete", "replace", "replace", "insert"]), label="op")
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = data.draw(VALUES, label="value")
        elif isinstance(parent, dict):  # a new key beside existing ones: unknown or misspelt
            parent[data.draw(st.sampled_from(["lr", "momentum", "seed", "trials", "n_train", "x", "name"]))] = \
                data.draw(VALUES, label="value")
    return doc


def check(doc: dict[str, Any]) -> str:
    """'valid' or 'refused'; any other exception fails the test."""
    try:
        check_sections(doc)
        plan = plan_study(doc, sets=[("train.device", "cpu")] if isinstance(doc.get("train", {}), dict) else [])
        estimates = []
        for data in {str(r.config["data"]): r.config["data"] for r in plan.runs[:50]}.values():
            estimates.append(data_estimate(data))
            if estimates[-1] is not None:
                check_memory(estimates[-1], f"data {data['name']!r}")
        if all(e is not None and e < PREFLIGHT_BYTES for e in estimates[:1]):
            # the preflight proper on the first configuration: data loaded, model built, [measure] sized
            preflight(plan.runs[:1], plan.study.measure)
    except SpecError as e:
        assert "\n" not in str(e) and str(e), f"not one line: {e!r}"
        return "refused"
    return "valid"


BASES = [doc for doc in base_specs() if plans(doc)]
COUNTS: Counter[str] = Counter()
SLOWEST = [0.0]  # seconds of the slowest mutant: a hang would show here (and in the test's time)


@settings(max_examples=MUTANTS, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def fuzz_one(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(BASES), label="base")
    start = time.perf_counter()
    COUNTS[check(mutate(data, base))] += 1
    COUNTS["mutants"] += 1
    SLOWEST[0] = max(SLOWEST[0], time.perf_counter() - start)


def test_every_mutant_plans_or_is_refused_in_one_line():
    assert len(BASES) >= 10  # the README's specs and every recipe
    for base in BASES:
        assert check(base) == "valid"
    start = time.perf_counter()
    fuzz_one()
    took = time.perf_counter() - start
    print(f"\nspec fuzzer: {COUNTS['mutants']} mutants of {len(BASES)} specs: {COUNTS['valid']} valid, "
          f"{COUNTS['refused']} refused in one line, 0 other exceptions, 0 hangs ({took:.1f} s, slowest mutant "
          f"{SLOWEST[0]:.2f} s)")
    assert COUNTS["refused"] > COUNTS["mutants"] // 4 and COUNTS["valid"] > 0
    assert SLOWEST[0] < 20


@pytest.mark.parametrize("text", ['[train]\nlr = inf\n', '[train.optimizer]\nname = "sgd"\nmomentum = nan\n',
                                  '[data]\nseed = -1\n', 'train = 7\n', '[sweep]\ntrials = 1000000000\n',
                                  'plugins = "os"\n', 'name = "../escaped"\n'])
def test_the_issues_fuzz_findings_are_refused(text):
    with pytest.raises(SpecError):
        check_sections(tomllib.loads(text))
        plan_study(tomllib.loads(text))

"""Short, readable names for a study's configurations: what a legend, a table row or an axis shows.

A label names only the fields that vary across the study, each as ``short=value``
(``bs=1000 lr=0.1 schedule=piecewise``). A component (``piecewise(factors=[...], every=10)``) shows
its name alone when the name tells the configurations apart, else the name and only the
arguments that differ (``step(decay=0.5)``). A configuration's own ``label`` (a spec field) wins over
all of it; a label several configurations share (one ``[[sweep.grids]]`` entry's) is completed by
what varies among them (``adam lr=0.001``). Labels are never cut: a legend that truncates a label
hides the one thing that tells two lines apart.

A run is shown as ``<label>-s<seed>``; the store keeps the hash ``run_id`` (``run_names`` maps one
to the other, ``find_run`` accepts either).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

SHORT = {"train.batch_size": "bs", "train.lr": "lr", "train.lr_scaling": "scaling", "train.warmup_epochs": "warm-up",
         "train.batch_schedule": "batch schedule", "train.optimizer": "optimizer", "train.epochs": "epochs"}
NOT_NAMING = ("analysis.", "checkpoints.")  # what is done with a configuration's runs, not what they train
_COMPONENT = re.compile(r"^([\w.-]+)\((.*)\)$")


def short_name(field: str) -> str:
    """``train.batch_size`` → ``bs``; other fields lose their section (``train.sam.rho`` → ``sam.rho``)."""
    return SHORT.get(field, field.split(".", 1)[1] if field.split(".", 1)[0] in ("train", "model", "data") else field)


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _arguments(text: str) -> list[str]:
    """``a=1, b=[1, 2], c=x`` → ["a=1", "b=[1, 2]", "c=x"]: split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[({"
        depth -= ch in "])}"
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [p for p in [*parts, text[start:].strip()] if p]


def _value_texts(values: list[Any]) -> list[str]:
    """The values of one field across configurations, each as short as still tells them apart."""
    texts = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    parsed = [_COMPONENT.match(t) for t in texts]
    if not any(parsed):
        return texts
    names = [m.group(1) if m else t for m, t in zip(parsed, texts, strict=True)]
    shown = []
    for i, (m, name) in enumerate(zip(parsed, names, strict=True)):
        twins = [j for j, other in enumerate(names) if other == name and texts[j] != texts[i]]
        if m is None or not twins:
            shown.append(name)
            continue
        mine = _arguments(m.group(2))
        others = [set(_arguments(parsed[j].group(2))) if parsed[j] else set() for j in twins]
        differing = [a for a in mine if any(a not in o for o in others)]
        shown.append(f"{name}({', '.join(differing)})")
    return shown


def varying_fields(runs: Any) -> list[str]:
    """Config columns (dotted names) whose value differs between configurations.

    A field of an optional section (``train.sam.eta``) that only says *whether* the section is set,
    exactly like an earlier column does (``train.sam.rho``), is left out: it would repeat that column.
    """
    config_cols = [c for c in runs.columns if "." in c]
    firsts = runs.groupby("config_id", sort=False).first()
    kept, patterns = [], set()
    for column in config_cols:
        values = firsts[column].map(lambda v: json.dumps(v, default=str) if _is_set(v) else None)
        if values.nunique(dropna=False) <= 1:
            continue
        pattern = tuple(values.notna())
        if values.nunique() == 1 and pattern in patterns:
            continue
        kept.append(column)
        patterns.add(pattern)
    return kept


def config_labels(configs: list[dict[str, Any]], fields: list[str]) -> list[str]:
    """One label per configuration (each a dict of its field values, ``label`` included if it has one)."""
    columns = {f: _value_texts([c.get(f) for c in configs]) for f in fields}
    shorts = [short_name(f) for f in fields]
    names = {f: f if shorts.count(short) > 1 else short for f, short in zip(fields, shorts, strict=True)}
    own = [c.get("label") if isinstance(c.get("label"), str) and c.get("label") else None for c in configs]
    labels = []
    for i, config in enumerate(configs):
        if own[i] is None:
            parts = [f"{names[f]}={columns[f][i]}" for f in fields if _is_set(config.get(f))]
            labels.append(" ".join(parts) or "all runs")
            continue
        twins = [j for j, other in enumerate(own) if other == own[i]]
        group = [{**configs[j], "label": None} for j in twins]
        inner = [f for f in fields if len({json.dumps(c.get(f), default=str) for c in group}) > 1]
        labels.append(f"{own[i]} {config_labels(group, inner)[twins.index(i)]}" if inner else own[i])
    return labels


def labels_by_config(runs: Any) -> dict[str, str]:
    """config id → label, for a runs table (``batchlab.load(DIR).runs``, config fields by dotted name):
    what ``ls``, exports and log lines call each configuration."""
    if len(runs) == 0:
        return {}
    fields = [f for f in varying_fields(runs) if not f.startswith(NOT_NAMING)]
    firsts = runs.groupby("config_id", sort=False).first()
    configs = [{**{f: _plain(row.get(f)) for f in fields}, "label": _plain(row.get("label"))}
               for _, row in firsts.iterrows()]
    labels = config_labels(configs, fields)
    if len(set(labels)) < len(labels):  # configurations that differ only where no label looks: keep them apart
        labels = [f"{label} [{c}]" for label, c in zip(labels, firsts.index, strict=True)]
    return dict(zip(firsts.index, labels, strict=True))


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if _is_set(value) else None


def plan_frame(runs: list[Any]) -> Any:
    """A planned study's runs (``RunSpec``s) as the runs table ``batchlab.load`` would give, before
    any result exists: run id, config id, seed and every config field by dotted name."""
    import pandas as pd

    from batchlab.spec import flatten_config

    return pd.DataFrame([{"run_id": r.run_id, "config_id": r.config_id, "seed": r.seed,
                          **flatten_config({k: v for k, v in r.config.items() if k != "seed"})} for r in runs])


def plan_labels(runs: list[Any]) -> dict[str, str]:
    """config id → label for a planned study, before any result exists: the labels the live progress
    shows, derived exactly as ``labels_by_config`` derives them from the store."""
    return labels_by_config(plan_frame(runs)) if runs else {}


def run_name(label: str, seed: int) -> str:
    """What a user sees for a run: ``<label>-s<seed>``."""
    return f"{label}-s{seed}"


def run_names(runs: Any) -> dict[str, str]:
    """run id → ``<label>-s<seed>`` for a runs table (``batchlab.load(DIR).runs``)."""
    labels = labels_by_config(runs)
    return {r.run_id: run_name(labels[r.config_id], int(r.seed)) for r in runs.itertuples()}


def find_run(name: str, runs: Any) -> str | None:
    """The stored run id of ``name``: a run id itself, or a run's shown name ``<label>-s<seed>``."""
    if name in set(runs["run_id"]):
        return name
    return next((run_id for run_id, shown in run_names(runs).items() if shown == name), None)


def config_name(config_id: str, labels: dict[str, str]) -> str:
    """A configuration's label; a pair's (``a~b``, a pairwise analysis) as ``label a → label b``."""
    return " → ".join(labels.get(part, part) for part in config_id.split("~"))


def named_runs(text: str, names: dict[str, str]) -> str:
    """``text`` (e.g. a pairwise analysis's ``a-s0 -> b-s0; epoch 4``) with every run id shown by name."""
    for run_id in sorted(names, key=len, reverse=True):
        text = text.replace(run_id, names[run_id])
    return text

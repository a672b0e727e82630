"""Short, readable names for a study's configurations: what a legend, a table row or an axis shows.

A label names only the fields that vary across the study, each as ``short=value``
(``bs=1000 lr=0.1 schedule=piecewise``). A component (``piecewise(factors=[...], every=10)``) shows
its name alone when the name tells the configurations apart, else the name and only the
arguments that differ (``step(decay=0.5)``). A run's own ``label`` (a spec field) wins over all of it.
Labels are never cut: a legend that truncates a label hides the one thing that tells two lines apart.
"""

from __future__ import annotations

import math
import re
from typing import Any

SHORT = {"train.batch_size": "bs", "train.lr": "lr", "train.lr_scaling": "scaling", "train.warmup_epochs": "warm-up",
         "train.batch_schedule": "batch schedule", "train.optimizer": "optimizer", "train.epochs": "epochs"}
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


def config_labels(configs: list[dict[str, Any]], fields: list[str]) -> list[str]:
    """One label per configuration (each a dict of its field values, ``label`` included if it has one)."""
    columns = {f: _value_texts([c.get(f) for c in configs]) for f in fields}
    shorts = [short_name(f) for f in fields]
    names = {f: f if shorts.count(short) > 1 else short for f, short in zip(fields, shorts, strict=True)}
    labels = []
    for i, config in enumerate(configs):
        own = config.get("label")
        if isinstance(own, str) and own:
            labels.append(own)
            continue
        parts = [f"{names[f]}={columns[f][i]}" for f in fields if _is_set(config.get(f))]
        labels.append(" ".join(parts) or "all runs")
    return labels


def labels_by_config(runs: Any) -> dict[str, str]:
    """config id → label, for a runs table (``batchlab.load(DIR).runs``, config fields by dotted name):
    what ``ls``, exports and log lines call each configuration."""
    from batchlab.results.summary import varying_fields

    if len(runs) == 0:
        return {}
    fields = varying_fields(runs)
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

"""Summaries over trials: one row per configuration, mean ± sample std and n of each final metric.

Only finished runs enter the statistics; diverged and failed runs are counted beside them, never
dropped silently. Configurations are told apart by the fields that vary across the directory.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from batchlab.metrics import SPLIT_METRICS, target_sign
from batchlab.results.labels import config_name, labels_by_config, named_runs, run_names, varying_fields
from batchlab.results.store import Results

RUN_KEYS = {"run_id", "config_id", "seed", "status", "stop_reason", "error"}
__all__ = ["render_table", "stats", "summarize", "summarize_measurements", "varying_fields"]


def stats(values: Any) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (ddof = 1; None for fewer than two values) and count."""
    v = np.asarray([x for x in values if _is_set(x)], dtype=float)
    if len(v) == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": len(v)}


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def summarize(results: Results, config_ids: list[str] | None = None) -> list[dict[str, Any]]:
    runs = results.runs
    if len(runs) == 0:
        return []
    fields, labels = varying_fields(runs), labels_by_config(runs)
    rows = []
    for config_id, group in runs.groupby("config_id", sort=False):
        if config_ids is not None and config_id not in config_ids:
            continue
        first = group.iloc[0]
        row: dict[str, Any] = {"label": labels[config_id], **{f: _plain(first[f]) for f in fields}}
        row["config_id"] = config_id
        for status in ("finished", "diverged", "failed"):
            row[status] = int((group["status"] == status).sum())
        row["unfinished"] = int(len(group) - row["finished"] - row["diverged"] - row["failed"])
        finished = group[group["status"] == "finished"]
        for metric in SPLIT_METRICS:
            column = f"final_{metric}"
            if column in group:
                row[metric] = stats(finished[column])
        if isinstance(first.get("train.target.metric"), str):
            row["target"] = {"metric": first["train.target.metric"], "value": float(first["train.target.value"])}
            row["target_epoch"] = stats(finished["target_epoch"]) if "target_epoch" in finished else stats([])
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars become Python ones, and a field a run does not have is None."""
    value = value.item() if hasattr(value, "item") else value
    return value if _is_set(value) else None


def _pm(s: dict[str, Any] | None, scale: float = 1.0, digits: int = 1) -> str:
    if not s or s["n"] == 0:
        return "–"
    text = f"{s['mean'] * scale:.{digits}f}"
    return text + (f" ± {s['std'] * scale:.{digits}f}" if s["std"] is not None else "")


def render_table(rows: list[dict[str, Any]], title: str = "") -> Any:
    """A rich Table: varying fields, trial counts, final metrics (mean ± std over finished trials)."""
    from rich.table import Table

    table = Table(title=title or None)
    fields = [k for k in (rows[0] if rows else {}) if "." in k or k == "label"]
    for f in fields:
        table.add_column(f)
    table.add_column("done/div/fail", justify="right")
    metrics = [m for m in SPLIT_METRICS if any(r.get(m, {}).get("n") for r in rows)]
    for m in metrics:
        table.add_column(m.replace("_acc", " acc %").replace("_loss", " loss"), justify="right")
    targets = {json.dumps(r["target"]) for r in rows if "target" in r}
    if targets:
        t = rows[0].get("target") or json.loads(next(iter(targets)))
        sign = target_sign(t["metric"])
        table.add_column(f"epoch to {t['metric']} {sign} {t['value']}", justify="right")
    for r in rows:
        cells = [_fmt_field(r[f]) for f in fields]
        counts = f"{r['finished']}/{r['diverged']}/{r['failed']}"
        counts += f" (+{r['unfinished']})" if r["unfinished"] else ""
        cells.append(counts)
        for m in metrics:
            cells.append(_pm(r.get(m), 100.0, 1) if m.endswith("acc") else _pm(r.get(m), 1.0, 3))
        if targets:
            s = r.get("target_epoch")
            reached = f" ({s['n']}/{r['finished']})" if s and s["n"] else "never"
            cells.append((_pm(s, 1.0, 1) + reached) if s and s["n"] else reached)
        table.add_row(*cells)
    return table


def _fmt_field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


def measurement_stats(results: Results, kind: str) -> list[dict[str, Any]]:
    """Per (configuration, label) of one analysis: the configuration's label, the varying config
    fields and stats() of each headline number over trials (run ids in labels shown by name). Failed analyses are counted (``failed``), never averaged in."""
    from batchlab.analysis import HEADLINES

    m = results.measurements
    if len(m) == 0 or kind not in set(m["kind"]):
        return []
    m = m[m["kind"] == kind]
    runs = results.runs
    fields = varying_fields(runs) if len(runs) else []
    firsts = runs.groupby("config_id", sort=False).first() if len(runs) else None
    labels, names = (labels_by_config(runs), run_names(runs)) if len(runs) else ({}, {})
    rows = []
    m = m.assign(label=[named_runs(str(text), names) for text in m["label"]])
    m = m.assign(request=_across_trials(m))
    for (config_id, label), group in m.groupby(["config_id", "request"], sort=False):
        row: dict[str, Any] = {"configuration": config_name(config_id, labels)}
        if firsts is not None and config_id in firsts.index:
            row.update({f: _plain(firsts.loc[config_id, f]) for f in fields})
        row.update(config_id=config_id, label=label)
        ok = group[group["status"] == "ok"] if "status" in group else group
        row["failed"] = int(len(group) - len(ok))
        for key in HEADLINES.get(kind, []):
            row[key] = stats(ok[key]) if key in ok else stats([])
        rows.append(row)
    return rows


def _across_trials(m: Any) -> Any:
    """Each measurement's request with what differs between trials taken out, so the trials of one
    configuration share a row: the trial in a run id (``-s2`` → ``-s*``) and the epoch, which differs
    when runs stop early (``epoch 64`` … ``epoch 69`` → ``epochs 64–69``). A configuration whose
    trials then share a request more than once (analyses at several epochs) keeps its labels."""
    import re

    key = m["label"].astype(str).str.replace(r"-s\d+\b", "-s*", regex=True) \
        .str.replace(r"\bepoch \d+", "epoch", regex=True)
    request = m["label"].astype(str).copy()
    for _, group in m.groupby([m["config_id"], key], sort=False):
        if group["seed"].is_unique:
            epochs = sorted({int(e) for text in group["label"] for e in re.findall(r"\bepoch (\d+)", str(text))})
            span = (f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}–{epochs[-1]}") if epochs else ""
            shared = str(group["label"].iloc[0])
            shared = re.sub(r"-s\d+\b", "-s*", shared) if len(group) > 1 else shared
            request[group.index] = re.sub(r"\bepoch \d+", span, shared) if len(group) > 1 else shared
    return request


def summarize_measurements(results: Results, kind: str) -> list[dict[str, Any]]:
    """measurement_stats as printable rows: 'mean ± std (n)' per headline number."""
    rows = []
    for row in measurement_stats(results, kind):
        out = {k: _fmt_field(v) for k, v in row.items() if not isinstance(v, dict)}
        for key, s in row.items():
            if isinstance(s, dict):
                out[key] = f"{_pm(s, 1.0, 4)} (n={s['n']})" if s["n"] else "–"
        rows.append(out)
    return rows

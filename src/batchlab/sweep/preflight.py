"""Checks that need the data: run once per distinct (data, model, loss) before any worker starts,
so a model that does not fit the data is a one-line error, not a sweep of failed runs."""

from __future__ import annotations

import json

from batchlab.errors import SpecError
from batchlab.spec import RunSpec


def preflight(runs: list[RunSpec]) -> list[str]:
    """Raise SpecError for a study that cannot run; return its warnings, each once."""
    from batchlab.data import load_data
    from batchlab.training.prepare import build
    from batchlab.training.steps import accumulation_warning

    warnings: list[str] = []

    seen: set[str] = set()
    for run in runs:
        cfg = run.config
        key = json.dumps([cfg["data"], cfg["model"], cfg["train"]], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        data = load_data(cfg["data"])
        try:
            model, _ = build(cfg, data)
        except (RuntimeError, ValueError) as e:
            raise SpecError(f"model {cfg['model']['name']!r} does not fit data {cfg['data']['name']!r}: "
                            f"{str(e).splitlines()[0]}") from None
        measured = {f"{name}_{m}" for name in data.named_splits() for m in ("loss", "acc")}
        for rule in ("early_stop", "target", "schedule"):
            metric = (cfg["train"][rule] or {}).get("metric")
            if metric and metric not in measured:
                raise SpecError(f"train.{rule}.metric: {metric!r} is not measured for this data "
                                f"(measured: {', '.join(sorted(measured))}); set data.val_fraction for val_*")
        message = accumulation_warning(model, cfg["train"])
        if message and message not in warnings:
            warnings.append(message)
    return warnings

"""Checks that need the data: run once per distinct (data, model, loss) before any worker starts,
so a model that does not fit the data is a one-line error, not a sweep of failed runs."""

from __future__ import annotations

import json

from batchlab.errors import SpecError
from batchlab.spec import RunSpec


def preflight(runs: list[RunSpec]) -> None:
    from batchlab.data import load_data
    from batchlab.engine import build

    seen: set[str] = set()
    for run in runs:
        cfg = run.config
        key = json.dumps([cfg["data"], cfg["model"], cfg["train"]["loss"], cfg["train"]["early_stop"],
                          cfg["train"]["target"]], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        data = load_data(cfg["data"])
        try:
            build(cfg, data)
        except (RuntimeError, ValueError) as e:
            raise SpecError(f"model {cfg['model']['name']!r} does not fit data {cfg['data']['name']!r}: "
                            f"{str(e).splitlines()[0]}") from None
        measured = {f"{name}_{m}" for name in data.named_splits() for m in ("loss", "acc")}
        for rule in ("early_stop", "target"):
            chosen = cfg["train"][rule]
            if chosen and chosen["metric"] not in measured:
                raise SpecError(f"train.{rule}.metric: {chosen['metric']!r} is not measured for this data "
                                f"(measured: {', '.join(sorted(measured))}); set data.val_fraction for val_*")

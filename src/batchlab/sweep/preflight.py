"""Checks that need the data: run once per distinct (data, model, loss) before any worker starts,
so a model that does not fit the data is a one-line error, not a sweep of failed runs.

The memory check comes first, from sizes alone: a dataset's input values × 4 bytes (float32),
times the copies made while building it, is compared with the memory available before anything is
allocated; once the model is built its parameters, their gradients and the optimizer's state, and
one batch's activations are added. On a GPU the data and model are compared with its free memory.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

from batchlab.errors import BatchlabWarning, SpecError
from batchlab.spec import RunSpec

FLOAT = 4  # bytes of a float32
BUILD_COPIES = 3  # numpy arrays, their float copy and the torch tensors exist together while loading
STATE_COPIES = 4  # weights, gradients and up to two optimizer moments
ACTIVATION_FACTOR = 32  # a batch's activations and their gradients, per input value, roughly


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup limit when one is set."""
    candidates: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    for path, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(path) as f:
                limit = f.read().strip()
            with open(usage) as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            candidates.append(max(0, int(limit) - used))
        break
    return min(candidates) if candidates else None


def gpu_free_memory() -> int | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info()
    return int(free)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(needed: int, what: str, device: str = "cpu") -> None:
    """SpecError when ``needed`` bytes exceed what is available (on the GPU for ``device = "cuda"``)."""
    free = gpu_free_memory() if device == "cuda" else available_memory()
    if free is not None and needed > free:
        place = "free on the GPU" if device == "cuda" else "available"
        raise SpecError(f"{what} needs about {_gib(needed)} of memory but {_gib(free)} is {place}; "
                        "use a smaller data set or data.subset")


def data_estimate(data: dict[str, Any]) -> int | None:
    """Bytes of memory building a [data] section takes at its peak, from its sizes alone (None when unknown)."""
    from batchlab.data import estimated_values

    values = estimated_values(data)
    return None if values is None else values * FLOAT * BUILD_COPIES


def preflight(runs: list[RunSpec], measure: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Raise SpecError for a study that cannot run; return its warnings, each once.

    ``measure`` (the study's ``[measure]`` section) is checked against the first run's data here
    too, so a measurement that cannot be taken is refused before the sweep, not after it.
    """
    from batchlab.data import load_data
    from batchlab.training.prepare import build
    from batchlab.training.steps import accumulation_warning

    warnings_: list[str] = []

    seen: set[str] = set()
    for run in runs:
        cfg = run.config
        key = json.dumps([cfg["data"], cfg["model"], cfg["train"]], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        estimate = data_estimate(cfg["data"])
        if estimate is not None:
            check_memory(estimate, f"data {cfg['data']['name']!r}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BatchlabWarning)
            data = load_data(cfg["data"])
        for w in caught:
            if issubclass(w.category, BatchlabWarning) and str(w.message) not in warnings_:
                warnings_.append(str(w.message))
        try:
            model, _ = build(cfg, data)
        except (RuntimeError, ValueError) as e:
            raise SpecError(f"model {cfg['model']['name']!r} does not fit data {cfg['data']['name']!r}: "
                            f"{str(e).splitlines()[0]}") from None
        _check_training_memory(cfg, data, model)
        measured = {f"{name}_{m}" for name in data.named_splits() for m in ("loss", "acc")}
        for rule in ("early_stop", "target", "schedule"):
            metric = (cfg["train"][rule] or {}).get("metric")
            if metric and metric not in measured:
                raise SpecError(f"train.{rule}.metric: {metric!r} is not measured for this data "
                                f"(measured: {', '.join(sorted(measured))}); set data.val_fraction for val_*")
        message = accumulation_warning(model, cfg["train"])
        if message and message not in warnings_:
            warnings_.append(message)
    if measure and runs:
        check_measure(measure, len(load_data(runs[0].config["data"]).train))
    return warnings_


def _check_training_memory(cfg: dict[str, Any], data: Any, model: Any) -> None:
    """The built data and model, one batch's activations and the optimizer's state, against memory."""
    per_example = 1
    for d in data.input_shape:
        per_example *= d
    params = sum(p.numel() for p in model.parameters())
    batch = min(max(cfg["train"]["batch_size"], cfg["train"]["eval_batch_size"]), len(data.train))
    data_bytes = sum(split.x.numel() * FLOAT for split in data.named_splits().values())
    state = params * FLOAT * STATE_COPIES + batch * per_example * FLOAT * ACTIVATION_FACTOR
    device = cfg["train"]["device"]
    if device == "cuda":
        check_memory(data_bytes + state, f"training {cfg['model']['name']!r} on {cfg['data']['name']!r}", "cuda")
    else:
        check_memory(state, f"training {cfg['model']['name']!r} on {cfg['data']['name']!r} (beyond its data)")


def check_measure(measure: dict[str, dict[str, Any]], n_train: int) -> None:
    """The [measure] section's sizes against the training set, before any run trains."""
    noise = measure.get("noise-scale")
    if noise is not None:
        big = min(noise.get("big") or n_train // 2, n_train)
        if not 1 <= noise.get("small", 16) < big:
            raise SpecError(f"measure.noise-scale: needs 1 <= small < big <= {n_train} (the training set), got small "
                            f"= {noise.get('small')} and big = {big}")

"""Measurements at one point of training (``batchlab noise-scale``, ``grad-stats``, ``memory``, and a
spec's ``[measure]`` section): the registry, and the model they measure.

Each takes a run configuration (a spec's first configuration, seed 0 unless asked otherwise), gets
the model at initialization or after a short training prefix, measures, and returns rows that go
into the results store's ``measurements`` table. They are registered by name, so the same builder
answers the CLI and a spec's ``[measure]`` section.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import nn

from batchlab.data import DataSplits, load_data
from batchlab.losses import Loss
from batchlab.registry import Registry

measurements = Registry("measurement")
Rows = list[tuple[str, dict[str, Any]]]  # (label, row): the label keys the row in the store
Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what was just measured)
_progress: ContextVar[Progress | None] = ContextVar("measurement_progress", default=None)


@contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Within the block, measurements report each step done to ``progress`` (a progress display);
    a context variable, so the registered builders keep their spec fields as their only parameters."""
    token = _progress.set(progress)
    try:
        yield
    finally:
        _progress.reset(token)


def steps(total: int) -> Callable[[str], None]:
    """A measurement's counter of its ``total`` steps (batch sizes, points of training): call it with
    what was just measured; it tells the progress display set by ``reporting``, if any."""
    progress, count = _progress.get(), itertools.count(1)

    def done(what: str) -> None:
        if progress is not None:
            progress(next(count), total, what)

    return done


def model_at(config: dict[str, Any], after_epochs: int) -> tuple[nn.Module, Loss, DataSplits]:
    """The configuration's model at initialization (0) or after ``after_epochs`` epochs of its training."""
    from batchlab.training.loop import train_run
    from batchlab.training.prepare import build, place, run_device

    data = load_data(config["data"])
    device = run_device(config["train"])
    if after_epochs == 0:
        model, loss = build(config, data)
        return model, loss, place(model, data, device)
    prefix = copy.deepcopy(config)
    prefix["train"].update(epochs=after_epochs, target=None, early_stop=None)
    prefix["train"]["regime"] = "same-epochs"
    result = train_run(prefix, lambda epoch, metrics: None, data)
    if result.model is None or result.status != "finished":
        raise RuntimeError(f"the {after_epochs}-epoch training prefix ended as {result.status}")
    _, loss = build(config, data)
    return result.model, loss, place(result.model, data, device)

"""What a report is drawn from: the loaded results, one entry per configuration, and a consistent style.

Every figure colours a configuration by its batch size, on one logarithmic colour scale shared by
the whole report, so "the yellow line" means the same batch size everywhere. Configurations that
share a batch size (other learning rates, schedules, ...) get different line styles and markers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchlab.results.store import Results
from batchlab.results.summary import _plain, varying_fields

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]


@dataclass
class Config:
    """One configuration of the study, with its label and style."""

    config_id: str
    label: str
    batch_size: int
    lr: float
    fields: dict[str, Any]  # the fields that vary across the study, dotted name → value
    colour: Any = None
    linestyle: str = "-"
    marker: str = "o"
    run_ids: list[str] = field(default_factory=list)  # finished runs only


@dataclass
class ReportData:
    results: Results
    study: dict[str, Any]
    configs: list[Config]
    colour_norm: Any = None  # matplotlib LogNorm over the batch sizes
    colour_map: Any = None

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({c.batch_size for c in self.configs})

    def epochs_of(self, config: Config) -> Any:
        """The per-epoch records of a configuration's finished runs."""
        epochs = self.results.epochs
        return epochs[epochs["run_id"].isin(config.run_ids)]

    def has_metric(self, column: str) -> bool:
        epochs = self.results.epochs
        return column in epochs and epochs[column].notna().any()

    def measurements(self, kind: str) -> Any:
        m = self.results.measurements
        if len(m) == 0 or "kind" not in m:
            return m
        m = m[m["kind"] == kind]
        return m[m["status"] == "ok"] if "status" in m else m


def _short(name: str) -> str:
    return {"train.batch_size": "batch", "train.lr": "lr"}.get(name, name.removeprefix("train.").removeprefix("model."))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def prepare(results: Results, study: dict[str, Any]) -> ReportData:
    """Configurations in plan order, labelled by what varies, coloured by batch size."""
    import matplotlib as mpl
    from matplotlib.colors import LogNorm

    runs = results.runs
    fields = varying_fields(runs) if len(runs) else []
    configs: list[Config] = []
    for config_id, group in runs.groupby("config_id", sort=False):
        first = group.iloc[0]
        values = {f: _plain(first[f]) for f in fields}
        label = ", ".join(f"{_short(f)} {_fmt(v)}" for f, v in values.items() if v is not None) or "all runs"
        finished = group[group["status"] == "finished"]["run_id"].tolist()
        configs.append(Config(config_id, label, int(first["train.batch_size"]), float(first["train.lr"]), values,
                              run_ids=finished))
    sizes = sorted({c.batch_size for c in configs}) or [1]
    norm = LogNorm(vmin=sizes[0] / 1.5, vmax=sizes[-1] * 1.5) if sizes[0] != sizes[-1] else None
    cmap = mpl.colormaps["viridis"]
    seen: dict[int, int] = {}
    for c in configs:
        c.colour = cmap(0.25 if norm is None else min(0.85, float(norm(c.batch_size))))
        k = seen.get(c.batch_size, 0)
        seen[c.batch_size] = k + 1
        c.linestyle, c.marker = LINESTYLES[k % len(LINESTYLES)], MARKERS[k % len(MARKERS)]
    return ReportData(results, study, configs, norm, cmap)


def mean_std_by_epoch(epochs: Any, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """epoch, mean and sample std (0 for a single trial) of a column over a configuration's runs."""
    grouped = epochs.dropna(subset=[column]).groupby("epoch")[column]
    mean = grouped.mean()
    std = grouped.std(ddof=1).fillna(0.0)
    return mean.index.to_numpy(), mean.to_numpy(), std.to_numpy()


def finite(values: Any) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]

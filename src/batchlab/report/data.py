"""What a report is drawn from: the loaded results, one entry per configuration, and a consistent style.

Configurations come sorted by batch size, then learning rate, each with a short label
(results/labels.py). Where the batch size is the only thing that varies, a configuration is coloured by
its batch size on one logarithmic scale shared by the whole report, so "the yellow line" means the
same batch size everywhere. Where configurations share a batch size (other rates, schedules, ...),
colour by batch size would make them indistinguishable, so each configuration gets its own colour
from a qualitative palette instead, and its own marker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchlab.results.labels import labels_by_config
from batchlab.results.store import Results
from batchlab.results.summary import _plain, varying_fields

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
QUALITATIVE = ("tab10", "tab20", "tab20b", "tab20c")


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
    trials: int = 0  # runs planned, whatever became of them


@dataclass
class ReportData:
    results: Results
    study: dict[str, Any]
    configs: list[Config]
    colour_norm: Any = None  # matplotlib LogNorm over the batch sizes, when colour means batch size
    colour_map: Any = None
    quick: bool = False  # a recipe's --quick form: a smoke test, its claims are not expected to hold
    environment: dict[str, Any] = field(default_factory=dict)  # versions, device, commit (report/environment.py)

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({c.batch_size for c in self.configs})

    @property
    def colour_is_batch(self) -> bool:
        """True when every batch size has one configuration: the colour then names the batch size."""
        return self.colour_norm is not None

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

    def label_of(self, config_id: str) -> str:
        return next((c.label for c in self.configs if c.config_id == config_id), str(config_id))


def _number(value: Any, default: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(value) else value


def prepare(results: Results, study: dict[str, Any], quick: bool = False,
            environment: dict[str, Any] | None = None) -> ReportData:
    """Configurations sorted by batch size then rate, labelled by what varies, coloured as the module says."""
    import matplotlib as mpl
    from matplotlib.colors import LogNorm

    runs = results.runs
    fields = varying_fields(runs) if len(runs) else []
    labels = labels_by_config(runs)
    configs: list[Config] = []
    for config_id, group in runs.groupby("config_id", sort=False):
        first = group.iloc[0]
        values = {f: _plain(first[f]) for f in fields}
        finished = group[group["status"] == "finished"]["run_id"].tolist()
        configs.append(Config(config_id, labels[config_id], int(first["train.batch_size"]),
                              _number(first.get("train.lr"), 0.0), values, run_ids=finished, trials=len(group)))
    order = {c.config_id: i for i, c in enumerate(configs)}  # plan order breaks the remaining ties
    configs.sort(key=lambda c: (c.batch_size, c.lr, order[c.config_id]))
    sizes = sorted({c.batch_size for c in configs}) or [1]
    alone = len(sizes) == len(configs) and len(sizes) > 1
    norm = LogNorm(vmin=sizes[0] / 1.5, vmax=sizes[-1] * 1.5) if alone else None
    cmap = mpl.colormaps["viridis"]
    palette = [colour for name in QUALITATIVE for colour in mpl.colormaps[name].colors]
    palette = palette[:10] if len(configs) <= 10 else palette[10:]  # tab10, else the three tab20s
    for k, c in enumerate(configs):
        c.colour = cmap(min(0.85, float(norm(c.batch_size)))) if alone else palette[k % len(palette)]
        c.marker = MARKERS[k % len(MARKERS)]
        c.linestyle = LINESTYLES[(k // len(palette)) % len(LINESTYLES)]  # only past the palette's colours
    return ReportData(results, study, configs, norm, cmap if alone else None, quick, environment or {})


def mean_std_by_epoch(epochs: Any, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """epoch, mean and sample std (0 for a single trial) of a column over a configuration's runs."""
    grouped = epochs.dropna(subset=[column]).groupby("epoch")[column]
    mean = grouped.mean()
    std = grouped.std(ddof=1).fillna(0.0)
    return mean.index.to_numpy(), mean.to_numpy(), std.to_numpy()


def geometric_by_epoch(epochs: Any, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """epoch, geometric mean, and the geometric ±1-std band (mean ÷ and × e^σ of the logs) of a positive
    column: a band that stays positive on a log axis even where the spread exceeds the mean."""
    positive = epochs[epochs[column] > 0].dropna(subset=[column])
    logs = np.log(positive[column].astype(float)).groupby(positive["epoch"])
    centre, spread = logs.mean(), logs.std(ddof=1).fillna(0.0)
    return (centre.index.to_numpy(), np.exp(centre.to_numpy()), np.exp((centre - spread).to_numpy()),
            np.exp((centre + spread).to_numpy()))


def finite(values: Any) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]

"""The report's figures: each a registered builder that draws from ``ReportData`` or returns None
when the study did not vary or record what it needs (no heatmap without two rates and two batch
sizes, no distance plot without the distance probe, ...).

Conventions, the same in every figure: a configuration keeps its colour, marker and label (data.py)
in every figure; legends list configurations in order of batch size, then rate, with their full
labels; axes carry units; quantities that span decades (batch size, steps, time, noise scale) are on
log axes with at least two labelled ticks (every decade, and the batch sizes run); epochs are whole
numbers; means over trials come with ±1 sample-std bands or error bars, and a point from fewer
trials than were run is hollow and says how many. A figure's caption is its builder's whole docstring.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from batchlab.metrics import lower_is_better
from batchlab.registry import Registry
from batchlab.report.data import Config, ReportData, geometric_by_epoch, mean_std_by_epoch

figures = Registry("figure")

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
METRIC_NAMES = {"acc": "accuracy", "loss": "loss"}
DODGE = 0.035  # decades between markers that share a batch size


def figure(name: str) -> Callable[[Callable[[ReportData], Any]], Callable[[ReportData], Any]]:
    """Register a builder whose figure gets the finishing every figure needs (labelled log ticks)."""
    def decorate(builder: Callable[[ReportData], Any]) -> Callable[[ReportData], Any]:
        @functools.wraps(builder)
        def build(data: ReportData) -> Any:
            fig = builder(data)
            if fig is not None:
                finish(fig)
            return fig

        return figures.register(name)(build)

    return decorate


def caption(name: str) -> str:
    """The figure's whole docstring as one paragraph, ending in a full stop."""
    text = " ".join((inspect.getdoc(figures.get(name)) or name).split())
    return text if text.endswith((".", "?", "!")) else text + "."


# ----------------------------------------------------------------------------- shared drawing


def _figure(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 3.4) -> tuple[Any, np.ndarray]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.reshape(-1)


def _line(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, c: Config, label: bool = True) -> None:
    ax.plot(x, mean, color=c.colour, linestyle=c.linestyle, marker=c.marker, ms=3.5, markevery=_every(len(x)),
            lw=1.6, label=c.label if label else None)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=c.colour, alpha=0.15, lw=0)


def _every(n: int) -> int:
    return max(1, n // 8)


def _epoch_axis(ax: Any, label: str = "epoch") -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label)


def _legend(fig: Any, axes: Any, extra_rows: int = 0) -> None:
    """One legend under the panels: every labelled line of ``axes`` once, in configuration order,
    in as many columns as the labels' length allows, with room reserved so nothing overlaps."""
    seen: dict[str, Any] = {}
    for ax in np.atleast_1d(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if not seen:
        fig.tight_layout()
        return
    labels = list(seen)
    width = fig.get_size_inches()[0]
    longest = max(len(label) for label in labels)
    ncol = max(1, min(len(labels), int(width * 12 // (longest + 6))))
    rows = math.ceil(len(labels) / ncol) + extra_rows
    fig.legend([seen[label] for label in labels], labels, loc="lower center", ncol=ncol, frameon=False, fontsize=8.5,
               bbox_to_anchor=(0.5, 0.0))
    inches = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, min(0.6, (0.21 * rows + 0.12) / inches), 1, 1))


def _plain_log(ax: Any, axis: str) -> None:
    """A log axis labelled with plain numbers (0.05, 200), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: _tick(v)))
    target.set_minor_formatter(NullFormatter())


def _tick(v: float) -> str:
    return f"{v:g}" if 1e-4 <= abs(v) < 1e6 or v == 0 else f"{v:.0e}"


def _visible_majors(axis: Any, limits: tuple[float, float]) -> int:
    lo, hi = sorted(limits)
    return sum(1 for t in axis.get_majorticklocs() if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9))


def finish(fig: Any) -> None:
    """Give every log axis at least two labelled ticks: every decade, then 1-2-5 steps, then all
    nine per decade, then its two ends when the data span less than that."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log" or min(limits) <= 0:
                continue
            for subs in ((1.0,), (1.0, 2.0, 5.0), tuple(range(1, 10))):
                if _visible_majors(axis, limits) >= 2:
                    break
                if isinstance(axis.get_major_locator(), FixedLocator):
                    ticks = [t for t in axis.get_majorticklocs() if min(limits) <= t <= max(limits)]
                    decades = LogLocator(subs=subs).tick_values(*sorted(limits))
                    axis.set_major_locator(FixedLocator(sorted({*ticks, *decades})))
                else:
                    axis.set_major_locator(LogLocator(subs=subs))
                axis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v)))
                axis.set_minor_formatter(NullFormatter())
            if _visible_majors(axis, limits) < 2:
                lo, hi = sorted(limits)
                axis.set_major_locator(FixedLocator([lo, hi]))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def _batch_axis(ax: Any, data: ReportData, sizes: list[int] | None = None) -> None:
    """Batch size on a log axis, ticked at the batch sizes run (and at the decades, by finish())."""
    from matplotlib.ticker import NullFormatter

    sizes = sizes or data.batch_sizes
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("batch size (examples)")
    spread = 3.0 if len(sizes) == 1 else 1.5
    ax.set_xlim(sizes[0] / spread, sizes[-1] * spread)  # every batch size run is in view, drawn or not


def _series_key(c: Config) -> str:
    """What a configuration shares with others along the batch axis: every varying field but the batch."""
    return json.dumps({k: v for k, v in c.fields.items() if k != "train.batch_size"}, default=str, sort_keys=True)


def _dodged(data: ReportData, present: set[str]) -> dict[str, float]:
    """x position of each configuration: its batch size, shifted a little where several share it."""
    at: dict[int, list[Config]] = {}
    for c in data.configs:
        if c.config_id in present:
            at.setdefault(c.batch_size, []).append(c)
    return {c.config_id: c.batch_size * 10 ** (DODGE * (j - (len(cs) - 1) / 2))
            for cs in at.values() for j, c in enumerate(cs)}


def _by_batch(ax: Any, data: ReportData, values: dict[str, list[float]], ylabel: str, log_y: bool | None = None,
              counts: dict[str, tuple[int, int]] | None = None) -> None:
    """Mean ± std per configuration against batch size. Configurations that differ only in batch size
    are joined by a grey line; markers that share a batch size are dodged sideways. ``counts``
    (contributing, run) marks a point from fewer trials than were run: hollow, with "k/n" beside it.
    ``log_y=None``: log when the means span more than two decades."""
    points: dict[str, tuple[float, float, int]] = {}
    for c in data.configs:
        v = [x for x in values.get(c.config_id, []) if x is not None and np.isfinite(x)]
        if v:
            points[c.config_id] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
    xs = _dodged(data, set(points))
    series: dict[str, list[Config]] = {}
    for c in data.configs:
        if c.config_id in points:
            series.setdefault(_series_key(c), []).append(c)
    for members in series.values():
        if len(members) > 1:
            ax.plot([xs[c.config_id] for c in members], [points[c.config_id][0] for c in members], color="0.65",
                    lw=1, zorder=1)
    for k, c in enumerate(data.configs):
        if c.config_id not in points:
            continue
        mean, std, n = points[c.config_id]
        some, run = (counts or {}).get(c.config_id, (n, n))
        hollow = some < run
        ax.errorbar([xs[c.config_id]], [mean], yerr=[std], color=c.colour, marker=c.marker, capsize=3, ms=6,
                    mfc="white" if hollow else c.colour, mew=1.5, label=c.label, zorder=3)
        if hollow:
            ax.annotate(f"{some}/{run}", (xs[c.config_id], mean), textcoords="offset points",
                        xytext=(5, 4 if k % 2 == 0 else -11), fontsize=7, color="0.3")
    _batch_axis(ax, data)
    means = [p[0] for p in points.values()]
    if log_y is None:
        log_y = bool(means) and min(means) > 0 and max(means) / min(means) > 100
    if log_y and means and min(means) > 0:
        _plain_log(ax, "y")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")


def _run_values(data: ReportData, column: str) -> dict[str, list[float]]:
    runs = data.results.runs
    if column not in runs:
        return {}
    return {c.config_id: runs[runs["run_id"].isin(c.run_ids)][column].tolist() for c in data.configs}


def _reached(data: ReportData, column: str) -> dict[str, tuple[int, int]]:
    """(finished trials with a value in ``column``, finished trials) per configuration."""
    runs = data.results.runs
    out = {}
    for c in data.configs:
        mine = runs[runs["run_id"].isin(c.run_ids)]
        out[c.config_id] = (int(mine[column].notna().sum()) if column in mine else 0, len(mine))
    return out


def _many_batch_sizes(data: ReportData) -> bool:
    return len(data.batch_sizes) >= 2


def _metric_name(metric: str) -> str:
    split, _, kind = metric.rpartition("_")
    return f"{SPLIT_NAMES.get(split, split)} {METRIC_NAMES.get(kind, kind)}"


def _target_text(target: dict[str, Any]) -> str:
    """``train_acc`` 0.75 → "training accuracy reaches 75 %"."""
    metric, value = str(target.get("metric", "")), target.get("value")
    if metric.endswith("_acc") and isinstance(value, int | float):
        return f"{_metric_name(metric)} reaches {100 * value:g} %"
    sign = "falls to" if lower_is_better(metric) else "reaches"
    return f"{_metric_name(metric)} {sign} {value}"


def _after(epochs: Any) -> str:
    return "at initialization" if float(epochs) == 0 else f"after {float(epochs):g} epochs"


# ----------------------------------------------------------------------------- training curves


@figure("curves")
def curves(data: ReportData) -> Any:
    """Loss and accuracy per epoch, mean ± 1 std over trials (Chaffard, Figs. 1-2; Chang & Pathak,
    Fig. 5); epoch 0 is the initialization."""
    splits = [s for s in SPLIT_NAMES if data.has_metric(f"{s}_loss")]
    if not splits or not any(c.run_ids for c in data.configs):
        return None
    fig, axes = _figure(len(splits), 2)
    for col, split in enumerate(splits):
        for row, (metric, name, scale) in enumerate((("loss", "loss", 1.0), ("acc", "accuracy (%)", 100.0))):
            ax = axes[row * len(splits) + col]
            for c in data.configs:
                x, mean, std = mean_std_by_epoch(data.epochs_of(c), f"{split}_{metric}")
                if len(x):
                    _line(ax, x, mean * scale, std * scale, c)
            ax.set_title(f"{SPLIT_NAMES[split]} {name.split(' ')[0]}")
            _epoch_axis(ax)
            ax.set_ylabel(f"{SPLIT_NAMES[split]} {name}")
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


@figure("final-by-batch")
def final_by_batch(data: ReportData) -> Any:
    """Final test accuracy and best validation (else final test) loss by batch size, mean ± 1 std over
    finished trials (Chang & Pathak, Figs. 6 and 24)."""
    if not _many_batch_sizes(data) or "final_test_acc" not in data.results.runs:
        return None
    fig, axes = _figure(2)
    _by_batch(axes[0], data, {k: [v * 100 for v in vs] for k, vs in _run_values(data, "final_test_acc").items()},
              "final test accuracy (%)")
    epochs = data.results.epochs
    if data.has_metric("val_loss"):
        best = epochs[epochs["epoch"] > 0].groupby("run_id")["val_loss"].min()
        values = {c.config_id: [best.get(r) for r in c.run_ids] for c in data.configs}
        _by_batch(axes[1], data, values, "best validation loss")
    else:
        _by_batch(axes[1], data, _run_values(data, "final_test_loss"), "final test loss")
    _legend(fig, axes)
    return fig


@figure("time-by-batch")
def time_by_batch(data: ReportData) -> Any:
    """Training time per epoch, epochs to the target (or to the best validation score, with early
    stopping) and total training time by batch size (Chang & Pathak, Figs. 7 and 25); a hollow point
    counts only the trials that got there (k of n)."""
    if not _many_batch_sizes(data) or not data.has_metric("seconds"):
        return None
    runs, epochs = data.results.runs, data.results.epochs
    per_epoch = epochs[epochs["epoch"] > 0].groupby("run_id")["seconds"].mean()
    panels: list[tuple[dict[str, list[float]], str, bool | None, dict[str, tuple[int, int]] | None]] = [
        ({c.config_id: [per_epoch.get(r) for r in c.run_ids] for c in data.configs}, "training time per epoch (s)",
         True, None)]
    for column, label in (("target_epoch", "epochs to the target"), ("best_epoch", "epoch of the best validation score")):
        if column in runs and runs[column].notna().any():
            panels.append((_run_values(data, column), label, False, _reached(data, column)))
            break
    if "train_seconds" in runs:
        panels.append((_run_values(data, "train_seconds"), "total training time (s)", True, None))
    fig, axes = _figure(len(panels))
    for ax, (values, label, log_y, counts) in zip(axes, panels, strict=True):
        _by_batch(ax, data, values, label, log_y=log_y, counts=counts)
        if label.startswith("epoch"):
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, axes)
    return fig


@figure("schedule")
def schedule(data: ReportData) -> Any:
    """Learning rate over training, at the first and the last step of every epoch, so a warm-up or a
    decay within an epoch shows as a slope; and the batch size of every epoch."""
    epochs = data.results.epochs
    if "lr" not in epochs or "batch_size" not in epochs:
        return None
    trained = epochs[epochs["epoch"] > 0]
    columns = [c for c in ("lr", "lr_end", "batch_size") if c in trained]
    moving = trained.groupby("run_id")[columns].nunique().max()
    lr_moves = moving.get("lr", 1) > 1 or moving.get("lr_end", 1) > 1 or \
        ("lr_end" in trained and bool((trained["lr"] != trained["lr_end"]).any()))
    if not lr_moves and moving.get("batch_size", 1) <= 1:
        return None
    fig, axes = _figure(2)
    rates, sizes = [], set()
    for c in data.configs:
        if not c.run_ids:
            continue
        run = trained[trained["run_id"] == c.run_ids[0]].sort_values("epoch")
        end = run["lr_end"] if "lr_end" in run else run["lr"]
        x = np.column_stack([run["epoch"] - 1, run["epoch"]]).reshape(-1)
        y = np.column_stack([run["lr"], end]).reshape(-1)
        axes[0].plot(x, y, color=c.colour, linestyle=c.linestyle, marker=c.marker, ms=3, markevery=_every(len(x)),
                     label=c.label)
        axes[1].step(run["epoch"], run["batch_size"], where="pre", color=c.colour, linestyle=c.linestyle,
                     marker=c.marker, ms=3, markevery=_every(len(run)))
        rates += [float(v) for v in y if np.isfinite(v)]
        sizes |= {int(b) for b in run["batch_size"]}
    axes[0].set_ylabel("learning rate")
    if rates and min(rates) > 0 and max(rates) / min(rates) > 20:
        _plain_log(axes[0], "y")
    _plain_log(axes[1], "y")
    axes[1].set_yticks(sorted(sizes), [str(s) for s in sorted(sizes)])
    axes[1].set_ylabel("batch size (examples)")
    for ax in axes:
        _epoch_axis(ax, "epochs trained")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


@figure("lr-batch-heatmap")
def lr_batch_heatmap(data: ReportData) -> Any:
    """Final test accuracy over the learning-rate × batch-size grid, mean over finished trials (Chang &
    Pathak, Fig. 29); an empty cell was not run or did not finish."""
    lrs = sorted({c.lr for c in data.configs})
    sizes = data.batch_sizes
    if len(lrs) < 2 or len(sizes) < 2:
        return None
    finals = _run_values(data, "final_test_acc")
    grid = np.full((len(lrs), len(sizes)), np.nan)
    for c in data.configs:
        values = [v for v in finals.get(c.config_id, []) if v is not None and np.isfinite(v)]
        if values and np.isnan(grid[lrs.index(c.lr), sizes.index(c.batch_size)]):
            grid[lrs.index(c.lr), sizes.index(c.batch_size)] = 100 * np.mean(values)
    fig, axes = _figure(1, width=1.2 * len(sizes) + 3, height=0.7 * len(lrs) + 2)
    ax = axes[0]
    image = ax.imshow(grid, cmap="magma", origin="lower", aspect="auto")
    for i in range(len(lrs)):
        for j in range(len(sizes)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center",
                        color="white" if grid[i, j] < np.nanmean(grid) else "black", fontsize=9)
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("batch size (examples)")
    ax.set_ylabel("learning rate")
    fig.colorbar(image, ax=ax, label="final test accuracy (%)")
    fig.tight_layout()
    return fig


def _unreached(ax: Any, sizes: list[int]) -> None:
    """Mark batch sizes that never reached the target along the top of the axes."""
    if not sizes:
        return
    ax.scatter(sizes, [0.96] * len(sizes), transform=ax.get_xaxis_transform(), marker="x", color="crimson", s=40,
               zorder=4, label="never reached the target")
    for b in sizes:
        ax.annotate("not reached", (b, 0.96), xycoords=("data", "axes fraction"), textcoords="offset points",
                    xytext=(0, -12), ha="center", fontsize=7, color="crimson")


@figure("steps-to-target")
def steps_to_target(data: ReportData) -> Any:
    """Steps to the target against batch size, log-log, with the perfect-scaling line (Shallue et al.
    2019); with several rates, the best rate per batch size (its rate beside each point), McCandlish
    et al.'s (2018) fit and the measured gradient noise scale. Batch sizes that never reached the
    target are marked along the top."""
    from batchlab.results.critical import fit_steps, tuned_steps

    runs = data.results.runs
    if "target_step" not in runs or not _many_batch_sizes(data) or runs["target_step"].notna().sum() == 0:
        return None
    fig, axes = _figure(1, width=6.4, height=4.6)
    ax = axes[0]
    tuned = "train.lr" in runs and runs["train.lr"].nunique() > 1
    if tuned:
        best = tuned_steps(runs)
        if not best:
            return None
        xs = np.array([r["batch_size"] for r in best], dtype=float)
        ys = np.array([r["steps"] for r in best])
        ax.errorbar(xs, ys, yerr=[r["std"] for r in best], marker="o", capsize=3, color="C0",
                    label="measured, best rate per batch size (mean ± std)")
        for x, y, r in zip(xs, ys, best, strict=True):
            ax.annotate(f"lr {r['lr']:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7, color="0.3")
        fit = fit_steps(xs.tolist(), ys.tolist())
        grid = np.geomspace(xs.min(), xs.max(), 100)
        if fit:
            ax.plot(grid, fit["s_min"] * (1 + fit["b_noise"] / grid), color="C1",
                    label=f"fit S_min(1 + B_noise/B): B_noise ≈ {fit['b_noise']:.0f}")
            ax.axvline(fit["b_noise"], color="C1", linestyle=":", lw=1)
        noise = data.measurements("noise-scale")
        if len(noise) and "b_simple" in noise:
            for (after, value), colour in zip(noise.groupby("after_epochs")["b_simple"].mean().items(),
                                              ("C2", "C3", "C4", "C5"), strict=False):
                ax.axvline(value, color=colour, linestyle="--", lw=1,
                           label=f"noise scale B_simple {_after(after)} ≈ {value:.0f}")
        ax.plot(grid, ys[0] * xs[0] / grid, color="0.3", linestyle="--", lw=1, label="perfect scaling (steps ∝ 1/B)")
        _batch_axis(ax, data)
        _plain_log(ax, "y")
        ax.set_ylabel("steps to the target")
        ax.grid(alpha=0.3, which="both")
        _unreached(ax, [b for b in data.batch_sizes if b not in {r["batch_size"] for r in best}])
    else:
        values = _run_values(data, "target_step")
        _by_batch(ax, data, values, "steps to the target", log_y=True, counts=_reached(data, "target_step"))
        reached = sorted((c.batch_size, float(np.nanmean([v for v in values[c.config_id] if v is not None])))
                         for c in data.configs
                         if any(v is not None and np.isfinite(v) for v in values.get(c.config_id, [])))
        if reached:
            b0, s0 = reached[0]
            xs = np.array(data.batch_sizes, dtype=float)
            ax.plot(xs, s0 * b0 / xs, color="0.3", linestyle="--", lw=1, label="perfect scaling (steps ∝ 1/B)")
        _unreached(ax, [b for b in data.batch_sizes if b not in {r[0] for r in reached}])
    target = (data.study.get("train") or {}).get("target") or {}
    if target:
        ax.set_title(f"Steps until the {_target_text(target)}", fontsize=10)
    _legend(fig, [ax])
    return fig


@figure("processes")
def processes(data: ReportData) -> Any:
    """Training time per epoch against the number of data-parallel processes (DDP), one line per batch
    size, mean ± 1 std over trials."""
    runs, epochs = data.results.runs, data.results.epochs
    if "train.processes" not in runs or runs["train.processes"].nunique() < 2:
        return None
    per_epoch = epochs[epochs["epoch"] > 0].groupby("run_id")["seconds"].mean()
    fig, axes = _figure(1, width=5.5, height=4.2)
    counts = set()
    for batch in data.batch_sizes:
        points = []
        for c in data.configs:
            if c.batch_size == batch and c.run_ids:
                n = int(runs.loc[runs["run_id"] == c.run_ids[0], "train.processes"].iloc[0])
                values = [per_epoch.get(r) for r in c.run_ids if r in per_epoch]
                points.append((n, float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                               c))
        points.sort(key=lambda p: p[0])
        counts |= {p[0] for p in points}
        if points:
            axes[0].errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                             color=points[0][3].colour, marker=points[0][3].marker, capsize=3, label=f"bs={batch}")
    axes[0].set_xticks(sorted(counts))
    axes[0].set_xlabel("data-parallel processes")
    axes[0].set_ylabel("training time per epoch (s)")
    _plain_log(axes[0], "y")
    axes[0].grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


# ----------------------------------------------------------------------------- probes


@figure("distance")
def distance(data: ReportData) -> Any:
    """Distance of the weights from their initial values, the distance moved within each epoch (with,
    in red on the right axis, its ratio between the smallest and the largest batch size), and each
    layer's final distance, named by the layer's module in the model (Chang & Pathak, Figs. 10-12, 27)."""
    if not data.has_metric("distance"):
        return None
    epochs = data.results.epochs
    layers = [c for c in epochs.columns if c.startswith("distance[")]
    fig, axes = _figure(3 if layers else 2)
    for c in data.configs:
        e = data.epochs_of(c)
        x, mean, std = mean_std_by_epoch(e, "distance")
        if len(x):
            _line(axes[0], x, mean, std, c)
        if "epoch_distance" in e:
            x, mean, std = mean_std_by_epoch(e[e["epoch"] > 0], "epoch_distance")
            if len(x):
                _line(axes[1], x, mean, std, c, label=False)
    axes[0].set_ylabel("‖θ − θ₀‖ (distance from init)")
    axes[1].set_ylabel("distance moved within the epoch")
    if data.has_metric("epoch_distance") and (epochs["epoch_distance"] > 0).all():
        _plain_log(axes[1], "y")
    small = [c for c in data.configs if c.batch_size == data.batch_sizes[0] and c.run_ids]
    large = [c for c in data.configs if c.batch_size == data.batch_sizes[-1] and c.run_ids]
    if small and large and small[0] is not large[0] and data.has_metric("epoch_distance"):
        xs, ms, _ = mean_std_by_epoch(data.epochs_of(small[0])[lambda d: d["epoch"] > 0], "epoch_distance")
        xl, ml, _ = mean_std_by_epoch(data.epochs_of(large[0])[lambda d: d["epoch"] > 0], "epoch_distance")
        n = min(len(xs), len(xl))
        twin = axes[1].twinx()
        twin.plot(xs[:n], ms[:n] / ml[:n], color="crimson", lw=1, alpha=0.8)
        twin.set_ylabel(f"ratio {small[0].label} / {large[0].label}", color="crimson", fontsize=8)
    if layers:
        shown = [c for c in data.configs if len(data.epochs_of(c))]
        width = 0.8 / max(1, len(shown))
        for k, c in enumerate(shown):
            e = data.epochs_of(c)
            last = e[e["epoch"] == e["epoch"].max()]
            axes[2].bar(np.arange(len(layers)) + k * width, [last[col].mean() for col in layers], width,
                        color=c.colour, edgecolor="white", lw=0.5)
        names = [col[len("distance["):-1] for col in layers]
        axes[2].set_xticks(np.arange(len(layers)) + 0.4 - width / 2,
                           [f"module {n}" if n.isdigit() else n for n in names], rotation=30, ha="right", fontsize=8)
        axes[2].set_xlabel("layer (input → output)")
        axes[2].set_ylabel("final distance from init")
    for ax in axes[:2]:
        _epoch_axis(ax)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


@figure("update-norms")
def update_norms(data: ReportData) -> Any:
    """Distribution of the per-step update norms ‖Δθ‖ in the last epoch (box: quartiles, whiskers: 5th
    to 95th percentile, means over trials), one box per configuration in its legend colour, and the
    median update norm over training (Chang & Pathak, Fig. 13)."""
    if not data.has_metric("update_norm.q50"):
        return None
    fig, axes = _figure(2, width=5.2, height=3.8)
    stats, shown = [], []
    for c in data.configs:
        e = data.epochs_of(c)
        e = e[e["epoch"] > 0]
        if len(e) == 0:
            continue
        last = e[e["epoch"] == e["epoch"].max()]
        stats.append({"med": last["update_norm.q50"].mean(), "q1": last["update_norm.q25"].mean(),
                      "q3": last["update_norm.q75"].mean(), "whislo": last["update_norm.q05"].mean(),
                      "whishi": last["update_norm.q95"].mean(), "label": c.label, "fliers": []})
        shown.append(c)
        x, mean, std = mean_std_by_epoch(e, "update_norm.q50")
        _line(axes[1], x, mean, std, c)
    boxes = axes[0].bxp(stats, patch_artist=True, showfliers=False)
    for patch, c in zip(boxes["boxes"], shown, strict=True):
        patch.set_facecolor(c.colour)
        patch.set_edgecolor("0.2")
    for median in boxes["medians"]:
        median.set_color("0.1")
    axes[0].set_xticks(range(1, len(stats) + 1), [c.label for c in shown], rotation=30, ha="right", fontsize=7.5)
    axes[0].set_ylabel("update norm ‖Δθ‖, last epoch")
    _epoch_axis(axes[1])
    axes[1].set_ylabel("median update norm")
    for ax in axes:
        _plain_log(ax, "y")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


@figure("noise-scale")
def noise_scale(data: ReportData) -> Any:
    """Gradient noise scale B_simple over training (McCandlish et al. 2018), the critical batch size
    it predicts: geometric mean over trials with a geometric ±1-std band, which stays on a log axis
    even where the spread exceeds the mean."""
    if not data.has_metric("noise.b_simple"):
        return None
    fig, axes = _figure(1, width=6, height=4)
    for c in data.configs:
        x, centre, low, high = geometric_by_epoch(data.epochs_of(c), "noise.b_simple")
        if len(x):
            axes[0].plot(x, centre, color=c.colour, linestyle=c.linestyle, marker=c.marker, ms=3,
                         markevery=_every(len(x)), lw=1.6, label=c.label)
            if np.any(high > low):
                axes[0].fill_between(x, low, high, color=c.colour, alpha=0.15, lw=0)
    _epoch_axis(axes[0])
    axes[0].set_ylabel("B_simple = tr Σ / ‖G‖² (examples)")
    _plain_log(axes[0], "y")
    axes[0].grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


@figure("grad-norms")
def grad_norms(data: ReportData) -> Any:
    """Norm of the batch gradient, and Yin et al.'s gradient diversity, against batch size over many
    random batches (mean ± std over batches, averaged over the trials measured), from `grad-stats`, at
    initialization and after training."""
    m = data.measurements("grad-stats")
    if len(m) == 0:
        return None
    fig, axes = _figure(2)
    styles = ["-", "--", ":", "-."]
    sizes = sorted({int(b) for b in m["batch_size"]})
    for (config_id, after), group in m.groupby(["config_id", "after_epochs"], sort=True):
        c = next((c for c in data.configs if c.config_id == config_id), None)
        colour, marker = (c.colour, c.marker) if c else ("0.3", "o")
        style = styles[sorted(set(m["after_epochs"])).index(after) % len(styles)]
        group = group.groupby("batch_size").mean(numeric_only=True).reset_index()
        label = f"{data.label_of(config_id)}, {_after(after)}"
        axes[0].errorbar(group["batch_size"], group["grad_norm_mean"], yerr=group["grad_norm_std"].fillna(0),
                         marker=marker, color=colour, linestyle=style, capsize=3, label=label)
        if "diversity_yin_mean" in group:
            axes[1].errorbar(group["batch_size"], group["diversity_yin_mean"],
                             yerr=group["diversity_yin_std"].fillna(0), marker=marker, color=colour,
                             linestyle=style, capsize=3)
    axes[0].set_ylabel("‖batch gradient‖ (mean ± std)")
    axes[1].set_ylabel("gradient diversity Σ‖gᵢ‖² / ‖Σgᵢ‖² (Yin et al.)")
    for ax in axes:
        _batch_axis(ax, data, sizes)
        _plain_log(ax, "y")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


@figure("memory")
def memory(data: ReportData) -> Any:
    """Peak memory of one training step (two steps, so the optimizer's state is included) against batch
    size, from `batchlab memory`: what limits the largest batch a machine can take."""
    m = data.measurements("memory")
    if len(m) == 0 or "step_mb" not in m:
        return None
    peak = "peak_gpu_mb" if "peak_gpu_mb" in m and m["peak_gpu_mb"].notna().any() else "peak_rss_mb"
    panels = [("step_mb", "memory of a step above the set-up (MiB)")]
    if peak in m:
        panels.append((peak, "peak device memory (MiB)" if peak == "peak_gpu_mb" else "peak process memory (MiB)"))
    fig, axes = _figure(len(panels))
    sizes = sorted({int(b) for b in m["batch_size"]})
    for ax, (column, label) in zip(axes, panels, strict=True):
        for config_id, group in m.groupby("config_id", sort=False):
            c = next((c for c in data.configs if c.config_id == config_id), None)
            mean = group.groupby("batch_size")[column].mean()
            ax.plot(mean.index, mean.to_numpy(), marker=c.marker if c else "o", color=c.colour if c else "0.3",
                    label=data.label_of(config_id))
        _batch_axis(ax, data, sizes)
        if (m[column] > 0).all():
            _plain_log(ax, "y")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


# ----------------------------------------------------------------------------- analyses


def _analysis_values(data: ReportData, kind: str, key: str) -> dict[str, list[float]]:
    m = data.measurements(kind)
    if len(m) == 0 or key not in m:
        return {}
    label = m["label"].value_counts().index[0]  # the most common request, e.g. 'epoch 80'
    m = m[m["label"] == label]
    return {c: g[key].tolist() for c, g in m.groupby("config_id")}


def _analysis_by_batch(data: ReportData, kind: str, panels: list[tuple[str, str]]) -> Any:
    """One panel per headline number of an analysis, by batch size, all on the same kind of y axis;
    None if the first is missing."""
    values = [(_analysis_values(data, kind, key), label) for key, label in panels]
    if not values[0][0]:
        return None
    values = [(v, label) for v, label in values if v]
    means = [[np.mean(finite) for finite in ([x for x in vs if x is not None and np.isfinite(x)] for vs in v.values())
              if finite] for v, _ in values]
    log_y = all(ms and min(ms) > 0 for ms in means) and any(max(ms) / min(ms) > 100 for ms in means)
    fig, axes = _figure(len(values))
    for ax, (v, label) in zip(axes, values, strict=True):
        _by_batch(ax, data, v, label, log_y=log_y)
    _legend(fig, axes)
    return fig


@figure("sharpness")
def sharpness(data: ReportData) -> Any:
    """ε-sharpness of each minimum by batch size, in the full parameter space and in a random subspace,
    mean ± 1 std over trials (Keskar et al. 2017; Chang & Pathak, Figs. 21 and 26)."""
    return _analysis_by_batch(data, "sharpness", [("sharpness", "ε-sharpness, full space"),
                                                  ("sharpness_subspace", "ε-sharpness, random subspace")])


@figure("hessian")
def hessian(data: ReportData) -> Any:
    """Largest Hessian eigenvalue and Hessian trace (Hutchinson's estimator) of each minimum by batch
    size, mean ± 1 std over trials."""
    return _analysis_by_batch(data, "hessian", [("lambda_max", "largest Hessian eigenvalue λ_max"),
                                                ("trace", "Hessian trace (Hutchinson)")])


@figure("interpolation")
def interpolation(data: ReportData) -> Any:
    """Loss and accuracy along the straight line from the small-batch minimum (α = 0) to the large-batch
    minimum (α = 1), beyond both ends, mean ± 1 std over seeds (Chang & Pathak, Fig. 18)."""
    m = data.measurements("interpolate")
    if len(m) == 0:
        return None
    splits = [s for s in SPLIT_NAMES if f"{s}_loss" in m]
    fig, axes = _figure(2)
    styles = iter(["-", "--", ":", "-."] * 4)
    for _, group in m.groupby("config_id", sort=False):
        alpha = np.asarray(group["alpha"].iloc[0])
        linestyle = next(styles)
        for split, colour in zip(splits, ("tab:blue", "tab:orange", "tab:green"), strict=False):
            for ax, metric, scale in ((axes[0], "loss", 1.0), (axes[1], "acc", 100.0)):
                curves = np.array([np.asarray(v) for v in group[f"{split}_{metric}"]]) * scale
                mean, std = curves.mean(0), curves.std(0, ddof=1) if len(curves) > 1 else np.zeros(len(alpha))
                ax.plot(alpha, mean, color=colour, linestyle=linestyle,
                        label=f"{SPLIT_NAMES[split]}, batch {int(group['batch_a'].iloc[0])} → "
                              f"{int(group['batch_b'].iloc[0])}")
                ax.fill_between(alpha, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
    _plain_log(axes[0], "y")
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("accuracy (%)")
    for ax in axes:
        ax.axvline(0, color="0.5", lw=0.8)
        ax.axvline(1, color="0.5", lw=0.8)
        ax.set_xlabel("α  (0: small-batch minimum, 1: large-batch minimum)")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


@figure("landscapes")
def landscapes(data: ReportData) -> Any:
    """Two-dimensional filter-normalized loss landscapes around each configuration's minimum (its first
    trial, marked by the star), side by side on one logarithmic colour scale of the rise above the
    minimum's loss, in a palette apart from the configurations' colours (Li et al. 2018; Chang & Pathak,
    Fig. 22)."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter

    m = data.measurements("landscape")
    if len(m) == 0 or "dims" not in m:
        return None
    m = m[m["dims"] == 2].sort_values("seed")
    chosen = [(c, m[m["config_id"] == c.config_id].iloc[0]) for c in data.configs if c.config_id in set(m["config_id"])]
    if not chosen:
        return None
    rises = [np.asarray(row["loss"], dtype=float) - row["center_loss"] for _, row in chosen]
    finite = [r[np.isfinite(r)] for r in rises]  # a diverged run's landscape may be NaN throughout
    top = max((float(f.max()) for f in finite if f.size), default=0.0)
    levels = np.geomspace(top * 1e-3, top, 13) if top > 0 else np.linspace(-1, 1, 13)
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.6 * len(chosen) + 1.2, 3.9), squeeze=False,
                             constrained_layout=True)
    contour = None
    for ax, (c, row), rise in zip(axes[0], chosen, rises, strict=True):
        coords = np.asarray(row["coords"])
        shown = np.clip(rise, levels[0], None).T if top > 0 else rise.T
        contour = ax.contourf(coords, coords, shown, levels=levels, cmap="YlOrBr",
                              norm=LogNorm(levels[0], levels[-1]) if top > 0 else None)
        ax.contour(coords, coords, shown, levels=levels, colors="0.3", linewidths=0.3)
        ax.plot(0, 0, marker="*", color="black", ms=10)
        title = f"{c.label} (seed {row['seed']}); loss at the minimum {row['center_loss']:.3g}"
        ax.set_title(textwrap.fill(title, 40), fontsize=8)
        ax.set_xlabel("direction 1 (filter-normalized)")
        ax.set_aspect("equal")
    axes[0][0].set_ylabel("direction 2 (filter-normalized)")
    if contour is not None:
        fig.colorbar(contour, ax=list(axes[0]), label="loss − loss at the minimum", shrink=0.9,
                     format=FuncFormatter(lambda v, _: f"{v:.2g}"))
    return fig

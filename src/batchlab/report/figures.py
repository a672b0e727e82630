"""The report's figures: each a registered builder that draws from ``ReportData`` or returns None
when the study did not vary or record what it needs (no heatmap without two rates and two batch
sizes, no distance plot without the distance probe, ...).

Conventions, the same in every figure: batch size is the colour (one log scale, see data.py);
axes carry units; quantities that span decades (batch size, steps, time, noise scale) are on log
axes; means over trials come with ±1 sample-std bands or error bars.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batchlab.registry import Registry
from batchlab.report.data import Config, ReportData, mean_std_by_epoch

figures = Registry("figure")

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


def _figure(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 3.4) -> tuple[Any, np.ndarray]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.reshape(-1)


def _line(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, c: Config, label: bool = True) -> None:
    ax.plot(x, mean, color=c.colour, linestyle=c.linestyle, lw=1.6, label=c.label if label else None)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=c.colour, alpha=0.18, lw=0)


def _legend(fig: Any, axes: np.ndarray) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False, fontsize=9,
                   bbox_to_anchor=(0.5, 0.0))
        rows = (len(labels) + 2) // 3
        inches = fig.get_size_inches()[1]
        fig.tight_layout(rect=(0, min(0.5, (0.22 * rows + 0.1) / inches), 1, 1))
    else:
        fig.tight_layout()


def _by_batch(ax: Any, data: ReportData, values: dict[str, list[float]], ylabel: str, log_y: bool | None = None
              ) -> None:
    """Mean ± std per configuration against batch size; configurations that differ otherwise are
    joined as separate series (same line style). ``log_y=None``: log when the means span > 2 decades."""
    series: dict[str, list[tuple[int, float, float, Config]]] = {}
    for c in data.configs:
        v = [x for x in values.get(c.config_id, []) if x is not None and np.isfinite(x)]
        if not v:
            continue
        series.setdefault(c.linestyle, []).append((c.batch_size, float(np.mean(v)),
                                                   float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, c))
    for points in series.values():
        points.sort(key=lambda p: p[0])
        ax.plot([p[0] for p in points], [p[1] for p in points], color="0.6", linestyle=points[0][3].linestyle, lw=1)
        for b, m, s, c in points:
            ax.errorbar([b], [m], yerr=[s], color=c.colour, marker=c.marker, capsize=3, ms=6, label=c.label)
    _batch_axis(ax, data)
    means = [p[1] for points in series.values() for p in points]
    if log_y is None:
        log_y = bool(means) and min(means) > 0 and max(means) / min(means) > 100
    if log_y:
        _plain_log(ax, "y")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")


def _plain_log(ax: Any, axis: str) -> None:
    """A log axis labelled with plain numbers (0.05, 200), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _batch_axis(ax: Any, data: ReportData) -> None:
    """Batch size on a log axis, ticked at the study's batch sizes."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(data.batch_sizes, [str(b) for b in data.batch_sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("batch size (examples)")


def _run_values(data: ReportData, column: str) -> dict[str, list[float]]:
    runs = data.results.runs
    if column not in runs:
        return {}
    return {c.config_id: runs[runs["run_id"].isin(c.run_ids)][column].tolist() for c in data.configs}


def _many_batch_sizes(data: ReportData) -> bool:
    return len(data.batch_sizes) >= 2


# ----------------------------------------------------------------------------- training curves


@figures.register("curves")
def curves(data: ReportData) -> Any:
    """Loss and accuracy per epoch, mean ± std over trials (seed 000 Figs. 1-2, seed 002 Fig. 5)."""
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
                    _line(ax, x, mean * scale, std * scale, c, label=row == 0 and col == 0)
            ax.set_title(f"{SPLIT_NAMES[split]} {name.split(' ')[0]}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{SPLIT_NAMES[split]} {name}")
            ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


@figures.register("final-by-batch")
def final_by_batch(data: ReportData) -> Any:
    """Final test accuracy and best validation (else final test) loss by batch size (seed 002 Figs. 6, 24)."""
    if not _many_batch_sizes(data):
        return None
    fig, axes = _figure(2)
    _by_batch(axes[0], data, {k: [v * 100 for v in vs] for k, vs in _run_values(data, "final_test_acc").items()},
              "final test accuracy (%)")
    epochs = data.results.epochs
    if data.has_metric("val_loss"):
        best = epochs.groupby("run_id")["val_loss"].min()
        values = {c.config_id: [best.get(r) for r in c.run_ids] for c in data.configs}
        _by_batch(axes[1], data, values, "best validation loss")
    else:
        _by_batch(axes[1], data, _run_values(data, "final_test_loss"), "final test loss")
    _legend(fig, axes)
    return fig


@figures.register("time-by-batch")
def time_by_batch(data: ReportData) -> Any:
    """Training time per epoch, epochs to converge and total training time by batch size (seed 002 Figs. 7, 25)."""
    if not _many_batch_sizes(data) or not data.has_metric("seconds"):
        return None
    epochs = data.results.epochs
    per_epoch = epochs[epochs["epoch"] > 0].groupby("run_id")["seconds"].mean()
    values = {c.config_id: [per_epoch.get(r) for r in c.run_ids] for c in data.configs}
    converge = "target_epoch" if "target_epoch" in data.results.runs else "best_epoch"
    fig, axes = _figure(3)
    _by_batch(axes[0], data, values, "training time per epoch (s)", log_y=True)
    if converge in data.results.runs:
        _by_batch(axes[1], data, _run_values(data, converge),
                  "epochs to the target" if converge == "target_epoch" else "epoch of the best validation score")
    else:
        axes[1].set_visible(False)
    _by_batch(axes[2], data, _run_values(data, "train_seconds"), "total training time (s)", log_y=True)
    _legend(fig, axes)
    return fig


@figures.register("schedule")
def schedule(data: ReportData) -> Any:
    """Learning rate and batch size over training, where a schedule changes them."""
    epochs = data.results.epochs
    if "lr" not in epochs or "batch_size" not in epochs:
        return None
    moving = epochs[epochs["epoch"] > 0].groupby("run_id")[["lr", "lr_end", "batch_size"]].nunique().max()
    if moving.get("lr", 1) <= 1 and moving.get("lr_end", 1) <= 1 and moving.get("batch_size", 1) <= 1:
        return None
    fig, axes = _figure(2)
    for c in data.configs:
        if not c.run_ids:
            continue
        run = epochs[(epochs["run_id"] == c.run_ids[0]) & (epochs["epoch"] > 0)].sort_values("epoch")
        axes[0].step(run["epoch"], run["lr"], where="pre", color=c.colour, linestyle=c.linestyle, label=c.label)
        axes[1].step(run["epoch"], run["batch_size"], where="pre", color=c.colour, linestyle=c.linestyle)
    axes[0].set_ylabel("learning rate (first step of the epoch)")
    axes[1].set_ylabel("batch size (examples)")
    for ax in axes:
        ax.set_xlabel("epoch")
        _plain_log(ax, "y")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


@figures.register("lr-batch-heatmap")
def lr_batch_heatmap(data: ReportData) -> Any:
    """Final test accuracy over the learning-rate × batch-size grid, mean over trials (seed 002 Fig. 29)."""
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


@figures.register("steps-to-target")
def steps_to_target(data: ReportData) -> Any:
    """Steps to the target vs batch size, log-log, with the perfect-scaling line (Shallue et al.); with
    several rates, the best rate per batch size, McCandlish et al.'s fit and the measured noise scale."""
    from batchlab.results.critical import fit_steps, tuned_steps

    runs = data.results.runs
    if "target_step" not in runs or not _many_batch_sizes(data) or runs["target_step"].notna().sum() == 0:
        return None
    fig, axes = _figure(1, width=6, height=4.4)
    ax = axes[0]
    if "train.lr" in runs and runs["train.lr"].nunique() > 1:
        best = tuned_steps(runs)
        if not best:
            return None
        xs = np.array([r["batch_size"] for r in best], dtype=float)
        ys = np.array([r["steps"] for r in best])
        ax.errorbar(xs, ys, yerr=[r["std"] for r in best], marker="o", capsize=3, color="C0",
                    label="measured, best rate per batch size")
        for x, y, r in zip(xs, ys, best, strict=True):
            ax.annotate(f"{r['lr']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="0.4")
        fit = fit_steps(xs.tolist(), ys.tolist())
        grid = np.geomspace(xs.min(), xs.max(), 100)
        if fit:
            ax.plot(grid, fit["s_min"] * (1 + fit["b_noise"] / grid), color="C1",
                    label=f"S_min(1 + B_noise/B): B_noise ≈ {fit['b_noise']:.0f}")
            ax.axvline(fit["b_noise"], color="C1", linestyle=":", lw=1)
        noise = data.measurements("noise-scale")
        if len(noise) and "b_simple" in noise:
            for (after, value), colour in zip(noise.groupby("after_epochs")["b_simple"].mean().items(),
                                              ("C2", "C3", "C4", "C5"), strict=False):
                ax.axvline(value, color=colour, linestyle="--", lw=1,
                           label=f"noise scale B_simple after {after} epochs ≈ {value:.0f}")
        ax.plot(grid, ys[0] * xs[0] / grid, color="0.3", linestyle="--", lw=1, label="perfect scaling (steps ∝ 1/B)")
        _plain_log(ax, "x")
        _plain_log(ax, "y")
        ax.set_xlabel("batch size (examples)")
        ax.set_ylabel("steps to the target")
        ax.grid(alpha=0.3, which="both")
    else:
        values = _run_values(data, "target_step")
        _by_batch(ax, data, values, "steps to the target", log_y=True)
        reached = [(c.batch_size, np.nanmean([v for v in values[c.config_id] if v is not None]))
                   for c in data.configs
                   if any(v is not None and np.isfinite(v) for v in values.get(c.config_id, []))]
        if reached:
            b0, s0 = min(reached)
            xs = np.array(data.batch_sizes, dtype=float)
            ax.plot(xs, s0 * b0 / xs, color="0.3", linestyle="--", lw=1, label="perfect scaling (steps ∝ 1/batch)")
    target = data.study.get("train", {}).get("target") or {}
    if target:
        ax.set_title(f"{target.get('metric')} reaching {target.get('value')}")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


@figures.register("processes")
def processes(data: ReportData) -> Any:
    """Training time per epoch against the number of data-parallel processes (DDP), by batch size."""
    runs, epochs = data.results.runs, data.results.epochs
    if "train.processes" not in runs or runs["train.processes"].nunique() < 2:
        return None
    per_epoch = epochs[epochs["epoch"] > 0].groupby("run_id")["seconds"].mean()
    fig, axes = _figure(1, width=5.5, height=4.2)
    for batch in data.batch_sizes:
        points = []
        for c in data.configs:
            if c.batch_size == batch and c.run_ids:
                n = int(runs.loc[runs["run_id"] == c.run_ids[0], "train.processes"].iloc[0])
                values = [per_epoch.get(r) for r in c.run_ids if r in per_epoch]
                points.append((n, float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                               c))
        points.sort(key=lambda p: p[0])
        if points:
            axes[0].errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                             color=points[0][3].colour, marker="o", capsize=3, label=f"batch {batch}")
    axes[0].set_xlabel("data-parallel processes")
    axes[0].set_ylabel("training time per epoch (s)")
    _plain_log(axes[0], "y")
    axes[0].grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- probes


@figures.register("distance")
def distance(data: ReportData) -> Any:
    """Distance from the initial weights, distance moved per epoch and its ratio between the smallest and
    largest batch size, and each layer's final distance (seed 002 Figs. 10-12, 27)."""
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
        x, mean, std = mean_std_by_epoch(e[e["epoch"] > 0], "epoch_distance")
        if len(x):
            _line(axes[1], x, mean, std, c, label=False)
    axes[0].set_ylabel("‖θ − θ₀‖ (distance from init)")
    axes[1].set_ylabel("distance moved within the epoch")
    _plain_log(axes[1], "y")
    small = [c for c in data.configs if c.batch_size == data.batch_sizes[0] and c.run_ids]
    large = [c for c in data.configs if c.batch_size == data.batch_sizes[-1] and c.run_ids]
    if small and large and small[0] is not large[0]:
        xs, ms, _ = mean_std_by_epoch(data.epochs_of(small[0])[lambda d: d["epoch"] > 0], "epoch_distance")
        xl, ml, _ = mean_std_by_epoch(data.epochs_of(large[0])[lambda d: d["epoch"] > 0], "epoch_distance")
        n = min(len(xs), len(xl))
        twin = axes[1].twinx()
        twin.plot(xs[:n], ms[:n] / ml[:n], color="crimson", lw=1, alpha=0.8)
        twin.set_ylabel(f"ratio batch {small[0].batch_size} / batch {large[0].batch_size}", color="crimson")
    if layers:
        width = 0.8 / max(1, len(data.configs))
        for k, c in enumerate(data.configs):
            e = data.epochs_of(c)
            if len(e) == 0:
                continue
            last = e[e["epoch"] == e["epoch"].max()]
            axes[2].bar(np.arange(len(layers)) + k * width, [last[col].mean() for col in layers], width,
                        color=c.colour, hatch=None if c.linestyle == "-" else "//", edgecolor="white")
        axes[2].set_xticks(np.arange(len(layers)) + 0.4 - width / 2, [c[9:-1] for c in layers], rotation=45, fontsize=8)
        axes[2].set_xlabel("layer (module name)")
        axes[2].set_ylabel("final distance from init")
    for ax in axes[:2]:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


@figures.register("update-norms")
def update_norms(data: ReportData) -> Any:
    """Distribution of the per-step update norms ‖Δθ‖ in the last epoch (box: quartiles, whiskers: 5-95 %),
    and the median over training (seed 002 Fig. 13)."""
    if not data.has_metric("update_norm.q50"):
        return None
    fig, axes = _figure(2)
    stats, colours = [], []
    for c in data.configs:
        e = data.epochs_of(c)
        e = e[e["epoch"] > 0]
        if len(e) == 0:
            continue
        last = e[e["epoch"] == e["epoch"].max()]
        stats.append({"med": last["update_norm.q50"].mean(), "q1": last["update_norm.q25"].mean(),
                      "q3": last["update_norm.q75"].mean(), "whislo": last["update_norm.q05"].mean(),
                      "whishi": last["update_norm.q95"].mean(), "label": c.label, "fliers": []})
        colours.append(c.colour)
        x, mean, std = mean_std_by_epoch(e, "update_norm.q50")
        _line(axes[1], x, mean, std, c)
    boxes = axes[0].bxp(stats, patch_artist=True, showfliers=False)
    for patch, colour in zip(boxes["boxes"], colours, strict=True):
        patch.set_facecolor(colour)
    axes[0].set_xticks(range(1, len(stats) + 1), [str(i + 1) for i in range(len(stats))])
    axes[0].set_xlabel("configuration (legend order)")
    axes[0].set_ylabel("update norm ‖Δθ‖, last epoch")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("median update norm")
    for ax in axes:
        _plain_log(ax, "y")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes[1:])
    return fig


@figures.register("noise-scale")
def noise_scale(data: ReportData) -> Any:
    """Gradient noise scale B_simple over training (McCandlish et al.), the predicted critical batch size."""
    if not data.has_metric("noise.b_simple"):
        return None
    fig, axes = _figure(1, width=6, height=4)
    for c in data.configs:
        e = data.epochs_of(c)
        x, mean, std = mean_std_by_epoch(e[e["noise.b_simple"] > 0], "noise.b_simple")
        if len(x):
            _line(axes[0], x, mean, std, c)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("B_simple = tr Σ / ‖G‖² (examples)")
    _plain_log(axes[0], "y")
    axes[0].grid(alpha=0.3, which="both")
    _legend(fig, axes)
    return fig


@figures.register("grad-norms")
def grad_norms(data: ReportData) -> Any:
    """Norm of the batch gradient vs batch size over many random batches (seed 004), from `grad-stats`."""
    m = data.measurements("grad-stats")
    if len(m) == 0:
        return None
    fig, axes = _figure(2)
    for (after, config_id), group in m.groupby(["after_epochs", "config_id"]):
        group = group.sort_values("batch_size")
        axes[0].errorbar(group["batch_size"], group["grad_norm_mean"], yerr=group["grad_norm_std"].fillna(0),
                         marker="o", capsize=3, label=f"configuration {config_id} after {after} epochs")
        if "diversity_mean" in group:
            axes[1].errorbar(group["batch_size"], group["diversity_mean"], yerr=group["diversity_std"].fillna(0),
                             marker="o", capsize=3)
    axes[0].set_ylabel("‖batch gradient‖ (mean ± std)")
    axes[1].set_ylabel("gradient diversity Σ‖gᵢ‖ / ‖Σgᵢ‖")
    for ax in axes:
        _plain_log(ax, "x")
        _plain_log(ax, "y")
        ax.set_xlabel("batch size (examples)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
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
    """One panel per headline number of an analysis, by batch size; None if the first is missing."""
    values = [(_analysis_values(data, kind, key), label) for key, label in panels]
    if not values[0][0]:
        return None
    values = [(v, label) for v, label in values if v]
    fig, axes = _figure(len(values))
    for ax, (v, label) in zip(axes, values, strict=True):
        _by_batch(ax, data, v, label)
    _legend(fig, axes)
    return fig


@figures.register("sharpness")
def sharpness(data: ReportData) -> Any:
    """ε-sharpness of each minimum by batch size, mean ± std over trials (Keskar et al.; seed 002 Figs. 21, 26)."""
    return _analysis_by_batch(data, "sharpness", [("sharpness", "ε-sharpness, full space"),
                                                  ("sharpness_subspace", "ε-sharpness, random 100-d subspace")])


@figures.register("hessian")
def hessian(data: ReportData) -> Any:
    """Largest Hessian eigenvalue and Hessian trace by batch size, mean ± std over trials."""
    return _analysis_by_batch(data, "hessian", [("lambda_max", "largest Hessian eigenvalue λ_max"),
                                                ("trace", "Hessian trace (Hutchinson)")])


@figures.register("interpolation")
def interpolation(data: ReportData) -> Any:
    """Loss and accuracy along the line from the small-batch (α = 0) to the large-batch minimum (α = 1)
    (seed 002 Fig. 18); mean ± std over seeds."""
    m = data.measurements("interpolate")
    if len(m) == 0:
        return None
    splits = [s for s in SPLIT_NAMES if f"{s}_loss" in m]
    fig, axes = _figure(2)
    styles = iter(["-", "--", ":", "-."] * 4)
    for config_pair, group in m.groupby("config_id", sort=False):
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


@figures.register("landscapes")
def landscapes(data: ReportData) -> Any:
    """2-D filter-normalized loss landscapes around each configuration's minimum (first trial), side by
    side on one colour scale of the rise above the minimum's loss (Li et al.; seed 002 Fig. 22)."""
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
    top = max(float(np.nanmax(r)) for r in rises)
    levels = np.geomspace(top * 1e-3, top, 13) if top > 0 else np.linspace(-1, 1, 13)
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.6 * len(chosen) + 1.2, 3.9), squeeze=False,
                             constrained_layout=True)
    contour = None
    for ax, (c, row), rise in zip(axes[0], chosen, rises, strict=True):
        coords = np.asarray(row["coords"])
        shown = np.clip(rise, levels[0], None).T if top > 0 else rise.T
        contour = ax.contourf(coords, coords, shown, levels=levels, cmap="viridis_r",
                              norm=LogNorm(levels[0], levels[-1]) if top > 0 else None)
        ax.contour(coords, coords, shown, levels=levels, colors="k", linewidths=0.3)
        ax.plot(0, 0, marker="*", color="white", ms=10)
        title = f"{c.label} (seed {row['seed']}); loss at centre {row['center_loss']:.3g}"
        ax.set_title(textwrap.fill(title, 40), fontsize=8)
        ax.set_xlabel("direction 1 (filter-normalized)")
        ax.set_aspect("equal")
    axes[0][0].set_ylabel("direction 2 (filter-normalized)")
    if contour is not None:
        fig.colorbar(contour, ax=list(axes[0]), label="loss − loss at the minimum", shrink=0.9,
                     format=FuncFormatter(lambda v, _: f"{v:.2g}"))
    return fig

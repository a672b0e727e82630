"""The report's tables, as plain (title, header, rows) that render to Markdown and to HTML.

Per configuration: final and best train/test loss and accuracy and the generalization gap, each as
mean ± sample std over finished trials with n; diverged and failed runs are counted in their own
columns, never dropped silently. Then one table per analysis that the study ran.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from batchlab.report.data import ReportData
from batchlab.results.summary import _pm, measurement_stats, stats


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return f"<h3>{html.escape(self.title)}</h3>{note}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(values: Any) -> str:
    return _pm(stats(values), 100.0, 1)


def _num(values: Any, digits: int = 3) -> str:
    return _pm(stats(values), 1.0, digits)


def results_table(data: ReportData) -> Table:
    runs, epochs = data.results.runs, data.results.epochs
    splits = [s for s in ("train", "val", "test") if f"final_{s}_acc" in runs]
    header = ["configuration", "finished", "diverged", "failed"]
    for s in splits:
        header += [f"final {s} acc %", f"best {s} acc %", f"final {s} loss", f"best {s} loss"]
    gap = "train" in splits and "test" in splits
    if gap:
        header += ["gap: train − test acc (points)", "gap: test − train loss"]
    trained = epochs[epochs["epoch"] > 0] if len(epochs) else epochs
    rows = []
    for c in data.configs:
        group = runs[runs["config_id"] == c.config_id]
        finished = group[group["status"] == "finished"]
        row = [c.label, str(len(finished)), str(int((group["status"] == "diverged").sum())),
               str(int((group["status"] == "failed").sum()))]
        mine = trained[trained["run_id"].isin(c.run_ids)] if len(trained) else trained
        for s in splits:
            best_acc = mine.groupby("run_id")[f"{s}_acc"].max() if len(mine) else []
            best_loss = mine.groupby("run_id")[f"{s}_loss"].min() if len(mine) else []
            row += [_pct(finished[f"final_{s}_acc"]), _pct(best_acc), _num(finished[f"final_{s}_loss"]),
                    _num(best_loss)]
        if gap:
            row += [_pct(finished["final_train_acc"] - finished["final_test_acc"]),
                    _num(finished["final_test_loss"] - finished["final_train_loss"])]
        rows.append(row)
    n = sorted({len(c.run_ids) for c in data.configs})
    return Table("Results by configuration", header, rows,
                 f"mean ± sample std over finished trials (n = {', '.join(map(str, n))}); best = over epochs 1 onwards")


def analysis_tables(data: ReportData) -> list[Table]:
    from batchlab.analysis import HEADLINES

    tables = []
    for kind, headline in HEADLINES.items():
        rows_in = measurement_stats(data.results, kind)
        if not rows_in or not headline:
            continue
        rows = [[r["configuration"], r["label"], str(r["failed"]),
                 *[_pm(r[k], 1.0, 4) + f" (n={r[k]['n']})" if r[k]["n"] else "–" for k in headline]]
                for r in rows_in]
        tables.append(Table(f"Analysis: {kind}", ["configuration", "request", "failed", *headline], rows,
                            "mean ± sample std over trials"))
    return tables


QUICK_NOTE = ("This is a recipe's quick form: a few-minute smoke test with fewer trials, batch sizes and epochs "
              "than the paper's design. Its claims are not expected to hold; run the full form to check them.")


def claim_rows(data: ReportData) -> list[dict[str, Any]]:
    """check() of every claim the study carries (results/claims.py)."""
    from batchlab.results.claims import check_all

    return check_all(data.study.get("claims") or [], data.results)


def claims_table(data: ReportData, rows: list[dict[str, Any]] | None = None) -> Table | None:
    """The recipe's published claims, each with what was measured, its 95 % interval and the verdict."""
    from batchlab.results.claims import counts_line

    rows = claim_rows(data) if rows is None else rows
    if not rows:
        return None
    cells = []
    for r in rows:
        note = r["reason"]
        if r["verdict"] in ("holds", "contradicted") and r["p_value"] is not None:
            note = f"{r['method']}, p = {r['p_value']:.2g}"
        elif r["verdict"] in ("holds", "contradicted"):
            note = r["method"]
        cells.append([r["claim"], r["published"], r["measured"], r["verdict"], note])
    note = ("each claim judged by the 95 % confidence interval of what it measures: holds when the interval lies "
            "inside the claim's band (or on the claimed side), contradicted when it lies outside, inconclusive "
            f"when it straddles an edge. {counts_line(rows)}.")
    if data.quick:
        note = QUICK_NOTE + " " + note
    return Table("Published vs measured", ["claim", "published", "measured [95 % interval]", "verdict", "why"],
                 cells, note)


def settings_table(data: ReportData) -> Table:
    """What every run shares (data, model, optimizer and its parameters, epochs, ...), and what varies."""
    runs = data.results.runs
    varying = {f for c in data.configs for f in c.fields}
    config_cols = [c for c in runs.columns if "." in c and c.split(".", 1)[0] in
                   ("data", "model", "train", "probes", "analysis", "measure", "checkpoints")]
    rows = []
    for column in config_cols:
        if column in varying:
            values = sorted({_cell(v) for v in runs[column]}, key=lambda t: (len(t), t))
            rows.append([column, "varies: " + ", ".join(values)])
            continue
        value = runs[column].dropna()
        if len(value):
            rows.append([column, _cell(value.iloc[0])])
    epochs = data.results.epochs
    if "examples" in epochs and len(epochs[epochs["epoch"] == 1]):
        first = epochs[epochs["epoch"] == 1]
        rows.append(["training examples per epoch", ", ".join(str(int(v)) for v in sorted(set(first["examples"])))])
    if "trials" not in {r[0] for r in rows}:
        trials = sorted({c.trials for c in data.configs})
        rows.append(["trials per configuration", ", ".join(map(str, trials))])
    return Table("Settings", ["setting", "value"], rows, "every resolved field of the runs' configuration; "
                 "fields that differ between configurations say so")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


def environment_table(data: ReportData) -> Table | None:
    env = data.environment
    if not env:
        return None
    names = {"batchlab": "batchlab", "python": "Python", "torch": "torch", "numpy": "numpy", "platform": "platform",
             "cpu": "CPU", "threads": "torch threads", "gpu": "GPU", "commit": "git commit"}
    rows = [[names.get(k, k), _cell(v)] for k, v in env.items() if k != "recorded"]
    train = data.study.get("train") or {}
    rows.insert(0, ["device", str(train.get("device", "cpu"))])
    note = "recorded when the study ran" if env.get("recorded", True) else \
        "not recorded with the runs: the environment this report was written in"
    return Table("Environment", ["", ""], rows, note)


def timing_table(data: ReportData) -> Table | None:
    """Per configuration: training, evaluation and wall time of a run, and runs finished per second."""
    runs = data.results.runs
    if "train_seconds" not in runs:
        return None
    rows = []
    for c in data.configs:
        group = runs[runs["config_id"] == c.config_id]
        finished = group[group["run_id"].isin(c.run_ids)]
        if len(finished) == 0:
            continue
        row = [c.label, str(len(finished)), _num(finished["train_seconds"], 3),
               _num(finished["eval_seconds"], 3) if "eval_seconds" in finished else "–"]
        if {"started", "finished"} <= set(finished.columns) and finished["started"].notna().all():
            wall = finished["finished"] - finished["started"]
            span = float(finished["finished"].max() - finished["started"].min())
            row += [_num(wall, 3), f"{len(finished) / span:.3g}" if span > 0 else "–"]
        else:
            row += ["–", "–"]
        rows.append(row)
    return Table("Time by configuration", ["configuration", "runs", "training s per run", "evaluation s per run",
                                           "wall s per run", "runs per second"], rows,
                 "mean ± sample std over finished runs; runs per second: finished runs over the span from the first "
                 "start to the last finish (trials stacked or run in parallel finish faster than one at a time)")


def memory_table(data: ReportData) -> Table | None:
    """The `memory` measurements: peak memory of a training step by batch size."""
    m = data.measurements("memory")
    if len(m) == 0 or "step_mb" not in m:
        return None
    peak = "peak_gpu_mb" if "peak_gpu_mb" in m and m["peak_gpu_mb"].notna().any() else "peak_rss_mb"
    rows = []
    for (config_id, batch), group in m.groupby(["config_id", "batch_size"], sort=False):
        rows.append([data.label_of(config_id), str(int(batch)), _num(group["step_mb"], 1),
                     _num(group[peak], 1) if peak in group else "–", str(group["method"].iloc[0])
                     if "method" in group else "–"])
    return Table("Memory of a training step", ["configuration", "batch size", "step MiB above set-up",
                                               "peak MiB" + (" (GPU)" if peak == "peak_gpu_mb" else " (process)"),
                                               "method"], rows, "mean ± sample std over repeats")


def critical_batch_table(data: ReportData) -> Table | None:
    """With a batch-size × rate sweep to a target: the best rate's steps per batch size, and the fit."""
    from batchlab.results.critical import fit_steps, tuned_steps

    runs = data.results.runs
    if "train.lr" not in runs or runs["train.lr"].nunique() < 2:
        return None
    best = tuned_steps(runs)
    if len(best) < 2:
        return None
    base = best[0]
    rows = [[str(r["batch_size"]), f"{r['lr']:g}", f"{r['steps']:.4g} ± {r['std']:.2g} (n={r['n']})",
             f"{base['steps'] * base['batch_size'] / r['batch_size']:.4g}",
             f"{base['steps'] * base['batch_size'] / (r['steps'] * r['batch_size']):.2f}"] for r in best]
    fit = fit_steps([r["batch_size"] for r in best], [r["steps"] for r in best])
    note = "rate tuned per batch size: the rate whose trials all reached the target in the fewest steps on average"
    if fit:
        note += (f"; fit S = S_min(1 + B_noise/B): S_min ≈ {fit['s_min']:.3g} steps, B_noise ≈ {fit['b_noise']:.3g} "
                 f"(the critical batch), E_min ≈ {fit['e_min']:.3g} examples")
    noise = data.measurements("noise-scale")
    if len(noise) and "b_simple" in noise:
        measured = ", ".join(f"{v:.3g} " + ("at initialization" if float(a) == 0 else f"after {float(a):g} epochs")
                             for a, v in noise.groupby("after_epochs")["b_simple"].mean().items())
        note += f"; measured noise scale B_simple: {measured}"
    return Table("Steps to the target and the critical batch size",
                 ["batch size", "best rate", "steps (mean ± std)", "perfect scaling from the smallest batch",
                  "scaling efficiency"], rows, note)

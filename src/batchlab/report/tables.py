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
    labels = {c.config_id: c.label for c in data.configs}
    for kind, headline in HEADLINES.items():
        rows_in = measurement_stats(data.results, kind)
        if not rows_in or not headline:
            continue
        rows = [[labels.get(r["config_id"], r["config_id"]), r["label"], str(r["failed"]),
                 *[_pm(r[k], 1.0, 4) + f" (n={r[k]['n']})" if r[k]["n"] else "–" for k in headline]]
                for r in rows_in]
        tables.append(Table(f"Analysis: {kind}", ["configuration", "request", "failed", *headline], rows,
                            "mean ± sample std over trials"))
    return tables


def claims_table(data: ReportData) -> Table | None:
    """The recipe's published claims, each with the measured mean ± std and whether it holds."""
    from batchlab.results.claims import Claim, check

    claims = [Claim.model_validate(c) for c in data.study.get("claims") or []]
    if not claims:
        return None
    rows = []
    for claim in claims:
        result = check(claim, data.results)
        verdict = {True: "yes", False: "no", None: "–"}[result["holds"]]
        rows.append([result["claim"], result["published"], result["measured"], verdict])
    return Table("Published vs measured", ["claim", "published", "measured (mean ± std over trials)", "holds"], rows,
                 "each claim checked on the mean over finished trials")


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
        measured = ", ".join(f"{v:.3g} after {a} epochs" for a, v in noise.groupby("after_epochs")["b_simple"].mean().items())
        note += f"; measured noise scale B_simple: {measured}"
    return Table("Steps to the target and the critical batch size",
                 ["batch size", "best rate", "steps (mean ± std)", "perfect scaling from the smallest batch",
                  "scaling efficiency"], rows, note)

"""Reports: a study's figures and tables as ``DIR/report.html`` (one self-contained file), every
figure as PNG and SVG under ``DIR/figures/``, and the tables as ``DIR/summary.md``.

A report says what was run and where: the claims' verdicts first (with a plain warning on a quick
form), the settings every run shares, the results, times and memory, the environment (versions,
device, commit) and the spec itself, so a reader can judge the numbers and rerun them.

Figures come from the registry in figures.py; each decides from the results whether it applies,
so a report shows what the study varied and recorded, nothing empty. A figure that fails to draw
is named in the report with its error instead of taking the whole report down.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import Any

from batchlab.report.data import ReportData, prepare
from batchlab.report.tables import (
    QUICK_NOTE,
    Table,
    analysis_tables,
    claim_rows,
    claims_table,
    critical_batch_table,
    environment_table,
    memory_table,
    results_table,
    settings_table,
    timing_table,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; margin-top: 0.3em; } .note { color: #666; font-size: 0.85em; }
.failed { color: #a00; } .quick { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
"""

# Marks every figure once its image has loaded with its size on the page (data-rendered="WxH"),
# and says so visibly (and on the console) if one cannot be shown: a broken figure is never blank.
SCRIPT = """
for (const img of document.querySelectorAll('figure img')) {
  const mark = () => {
    const box = img.getBoundingClientRect();
    if (img.naturalWidth > 0) { img.closest('figure').dataset.rendered = Math.round(box.width) + 'x' + Math.round(box.height); }
    else { fail(); }
  };
  const fail = () => { img.closest('figure').classList.add('failed'); console.error('figure failed to load: ' + img.alt); };
  if (img.complete) { mark(); } else { img.addEventListener('load', mark); img.addEventListener('error', fail); }
}
"""


def _render(fig: Any, name: str, directory: Path) -> bytes:
    """Save PNG and SVG under figures/ and return the PNG bytes for embedding."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # a wide legend is never clipped
    png = buffer.getvalue()
    (directory / f"{name}.png").write_bytes(png)
    fig.savefig(directory / f"{name}.svg", format="svg", bbox_inches="tight")
    plt.close(fig)
    return png


def build_figures(data: ReportData, directory: Path) -> list[tuple[str, str, bytes | None, str | None]]:
    """(name, caption, PNG bytes or None, error or None) of every figure that applies."""
    import matplotlib

    matplotlib.use("Agg")
    from batchlab.report.figures import caption as caption_of
    from batchlab.report.figures import figures

    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for name in figures.in_order():  # training, probes, analyses
        caption = caption_of(name)
        try:
            fig = figures.get(name)(data)
            if fig is not None:
                made.append((name, caption, _render(fig, name, directory), None))
        except Exception as e:  # noqa: BLE001 - one broken figure must not cost the others
            made.append((name, caption, None, f"{type(e).__name__}: {e}"))
    return made


def page(data: ReportData, tables: list[Table], made: list[tuple[str, str, bytes | None, str | None]]) -> str:
    study = data.study
    runs = data.results.runs
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    meta = (f"{len(runs)} runs ({', '.join(f'{v} {k}' for k, v in counts.items())}) in {len(data.configs)} "
            f"configurations · written {time.strftime('%Y-%m-%d %H:%M')}")
    parts = [f"<h1>{html.escape(study.get('name', 'study'))}</h1>", f"<p class='meta'>{html.escape(meta)}</p>"]
    if data.quick:
        parts.append(f"<p class='quick'><b>Quick form.</b> {html.escape(QUICK_NOTE)}</p>")
    if study.get("description"):
        parts.append(f"<p>{html.escape(study['description'])}</p>")
    parts += [t.html() for t in tables]
    parts.append("<h2>Figures</h2>")
    for name, caption, png, error in made:
        if png is None:
            parts.append(f"<p class='failed'>figure {html.escape(name)} could not be drawn: {html.escape(error or '')}</p>")
            continue
        encoded = base64.b64encode(png).decode()
        parts.append(f"<figure id='{name}'><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>"
                     f"<figcaption><b>{html.escape(name)}</b>: {html.escape(caption)}</figcaption></figure>")
    if study:
        spec = json.dumps(study, indent=2, default=str)
        parts.append(f"<h2>The spec</h2><details><summary>the study as it was run (resolved, JSON)</summary>"
                     f"<pre>{html.escape(spec)}</pre></details>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(study.get('name', ''))}"
            f" · batchlab report</title><style>{STYLE}</style></head><body>\n{body}\n<script>{SCRIPT}</script>"
            f"</body></html>\n")


def _timestamps(results: Any, rows: list[dict[str, Any]]) -> None:
    """Add each run's start and finish times (seconds since the epoch) to ``results.runs``."""
    runs = results.runs
    if len(runs) and "started" not in runs:
        times = {r["run_id"]: (r.get("started"), r.get("finished")) for r in rows}
        runs["started"] = runs["run_id"].map(lambda r: times.get(r, (None, None))[0]).astype(float)
        runs["finished"] = runs["run_id"].map(lambda r: times.get(r, (None, None))[1]).astype(float)


def write_report(directory: str | Path, quick: bool | None = None) -> Path:
    """Write report.html, figures/*.png|svg and summary.md into a results directory; returns the page.

    ``quick``: whether these are a recipe's quick form (default: the ``quick`` meta key ``batchlab
    run`` records). The environment is the ``environment`` meta key, else this process's own.
    """
    directory = Path(directory)
    results, study, recorded_quick, env = read_study(directory)
    return write_report_of(results, study, directory, recorded_quick if quick is None else quick, env)


def read_study(directory: Path) -> tuple[Any, dict[str, Any], bool, dict[str, Any]]:
    """A results directory as a report needs it: its results (with each run's start and finish
    times), its study, whether it is a quick form, and where it ran."""
    from batchlab.report.environment import environment
    from batchlab.results.store import ResultsStore, load

    results = load(directory)
    store = ResultsStore.open_read(directory)
    try:
        study = store.meta("study", {}) or {}
        quick = bool(store.meta("quick", False))
        env = store.meta("environment") or {**environment(), "recorded": False}
        _timestamps(results, store.run_rows())
    finally:
        store.close()
    return results, study, quick, env


def write_report_of(results: Any, study: dict[str, Any], directory: Path, quick: bool = False,
                    env: dict[str, Any] | None = None) -> Path:
    """The report of results already loaded (one study's, or several merged: report/compare.py),
    written into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = prepare(results, study, quick=quick, environment=env)
    claims = claims_table(data, claim_rows(data))
    optional = [critical_batch_table(data), timing_table(data), memory_table(data)]
    tables = [*([claims] if claims else []), settings_table(data), results_table(data),
              *[t for t in optional if t is not None], *analysis_tables(data)]
    env_table = environment_table(data)
    tables += [env_table] if env_table else []
    made = build_figures(data, directory / "figures")
    head = [f"# {study.get('name', 'study')}\n"]
    head += [f"> **Quick form.** {QUICK_NOTE}\n"] if quick else []
    head += [study["description"] + "\n"] if study.get("description") else []
    (directory / "summary.md").write_text("\n".join([*head, *(t.markdown() for t in tables)]))
    path = directory / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(page(data, tables, made))
    tmp.replace(path)
    return path

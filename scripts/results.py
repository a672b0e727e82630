"""Assemble docs/results.md from the recipes' stored studies, so no number is ever copied by hand.

For every built-in recipe whose study directory exists (``runs/<recipe>`` by default), this takes the
``summary.md`` that ``batchlab report`` writes (rewriting it first when it is missing, older than the
study's results, or ``--refresh`` asks), and puts around it what a reader needs to trust it: the date
and git commit the page was assembled at, the machine (CPU model, cores), how many runs the study holds
and how they ended, when they last ran and how long they took, and the recipe's deviations from the
paper it reproduces (its ``deviations`` list). The README links to the page instead of copying numbers.

    python scripts/results.py                      # every recipe with a study under runs/
    python scripts/results.py --runs runs --out docs/results.md mnist-pairs critical-batch
    python scripts/results.py --study path/to/a/study --out /tmp/results.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Timing:
    runs: int
    statuses: dict[str, int]
    wall_seconds: float | None  # first start to last finish
    run_seconds: float  # the runs' own durations, summed (the CPU time on one core per run)
    last_finished: float | None


def git_commit(root: Path = ROOT) -> str:
    """The checked-out commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """CPU model and core count (``/proc/cpuinfo`` where there is one), OS and the torch version."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.MULTILINE)
        model = found.group(1).strip() if found else model
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch

        torch_version = f", torch {torch.__version__}"
    except ImportError:
        torch_version = ""
    return f"{model}, {usable} of {os.cpu_count()} cores usable, {platform.system()} {platform.release()}" \
           f"{torch_version}"


def timing(directory: Path) -> Timing:
    """How many runs the study holds, how they ended, and how long they took, from its results store."""
    from batchlab.results.store import ResultsStore

    store = ResultsStore(directory, create=False)
    try:
        rows = store.run_rows()
    finally:
        store.close()
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    spans = [(r["started"], r["finished"]) for r in rows if r["started"] is not None and r["finished"] is not None]
    return Timing(len(rows), statuses,
                  max(f for _, f in spans) - min(s for s, _ in spans) if spans else None,
                  sum(f - s for s, f in spans), max((f for _, f in spans), default=None))


def study_meta(directory: Path) -> dict[str, Any]:
    from batchlab.results.store import ResultsStore

    store = ResultsStore(directory, create=False)
    try:
        return store.meta("study", {}) or {}
    finally:
        store.close()


def summary_markdown(directory: Path, refresh: bool) -> str:
    """The study's summary.md, rewritten by ``batchlab report`` when missing, stale or asked to."""
    summary = directory / "summary.md"
    stale = not summary.exists() or summary.stat().st_mtime < (directory / "results.db").stat().st_mtime
    if refresh or stale:
        from batchlab.report import write_report

        write_report(directory)
    return summary.read_text()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def demote(markdown: str, levels: int = 1) -> str:
    """Push every heading down, so a study's ``# name`` becomes a section of the combined page."""
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", markdown, flags=re.MULTILINE)


def study_section(directory: Path, refresh: bool = False) -> str:
    t, meta = timing(directory), study_meta(directory)
    ended = ", ".join(f"{n} {status}" for status, n in sorted(t.statuses.items()))
    when = dt.datetime.fromtimestamp(t.last_finished).strftime("%Y-%m-%d %H:%M") if t.last_finished else "–"
    unfinished = t.runs - sum(n for status, n in t.statuses.items() if status in ("finished", "diverged", "failed"))
    warning = ([f"**Incomplete:** {unfinished} of {t.runs} runs had not ended when this page was assembled; "
                "the numbers below are of the runs that had.", ""] if unfinished else [])
    heading, _, body = demote(summary_markdown(directory, refresh)).rstrip().partition("\n")
    lines = [heading, "", *warning, body.lstrip("\n"), "",
             (f"*Study directory `{directory}`: {t.runs} runs ({ended}); last run finished {when}; "
             f"wall clock {duration(t.wall_seconds)}, the runs' own times summed {duration(t.run_seconds)}.*"), ""]
    if meta.get("deviations"):
        lines += ["Deviations from the published set-up:", "", *(f"- {d}" for d in meta["deviations"]), ""]
    return "\n".join(lines)


def assemble(studies: list[Path], refresh: bool = False, missing: list[str] = ()) -> str:
    now = dt.datetime.now().astimezone()
    head = ["# Results", "",
            ("Generated by `scripts/results.py` from each recipe's stored study (the tables are `batchlab report`'s "
            "summary.md); do not edit by hand."), "",
            f"- assembled: {now:%Y-%m-%d %H:%M %Z}",
            f"- commit: `{git_commit()}`",
            f"- machine: {machine()}",
            f"- Python {platform.python_version()}", ""]
    if missing:
        head += [f"Recipes without a stored study (not run): {', '.join(missing)}.", ""]
    return "\n".join(head + [study_section(d, refresh) for d in studies])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="*", help="recipe names (default: every built-in recipe)")
    parser.add_argument("--runs", default="runs", help="where the studies live, one directory per recipe")
    parser.add_argument("--study", action="append", default=[], metavar="DIR",
                        help="a study directory to include (repeatable; replaces the recipes)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--refresh", action="store_true", help="rewrite every study's report first")
    args = parser.parse_args(argv)

    from batchlab.spec import recipe_names

    if args.study:
        studies, missing = [Path(s) for s in args.study], []
    else:
        names = args.recipes or recipe_names()
        studies = [Path(args.runs) / n for n in names if (Path(args.runs) / n / "results.db").exists()]
        missing = [n for n in names if not (Path(args.runs) / n / "results.db").exists()]
    for study in studies:
        if not (study / "results.db").exists():
            print(f"results: no study in {study} (no results.db)", file=sys.stderr)
            return 2
    if not studies:
        print(f"results: no stored studies under {args.runs}/ (run `batchlab run <recipe>` first)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(assemble(studies, args.refresh, missing))
    print(f"wrote {out} ({len(studies)} studies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

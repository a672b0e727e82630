"""Running analyses on a results directory: which runs, from which checkpoints, into the store.

Per-run analyses (sharpness, hessian, landscape) take each finished run's final checkpoint (or
``--epoch N``); pairwise ones (interpolate) take, by default, for every seed, the run with the
smallest and the one with the largest batch size. Results are stored as measurements keyed by
(analysis, configuration, seed, label), the label naming the epoch and any non-default parameter,
so the same analysis with other parameters is kept beside, not over, the first.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from batchlab.analysis import PAIRWISE, Minimum, analyses
from batchlab.sweep.workers import plugins_of, run_in_workers


def label_of(name: str, params: dict[str, Any], epoch: int) -> str:
    """'epoch 80', plus every parameter that differs from its default ('epoch 80; epsilon=0.0005')."""
    defaults = analyses.resolve({"name": name})
    changed = [f"{k}={json.dumps(v)}" for k, v in params.items() if k != "name" and defaults.get(k) != v]
    return "; ".join([f"epoch {epoch}", *changed])


def minimum_from_model(run_id: str, config_id: str, config: dict[str, Any], epoch: int, model: Any,
                       scratch: Path | None) -> Minimum:
    """A Minimum around a model already in memory (the end of a training run), with its data on the
    model's device."""
    from batchlab.data import load_data
    from batchlab.training.prepare import build, place

    data = load_data(config["data"])
    _, loss = build(config, data)
    data = place(model, data, next(model.parameters()).device)
    return Minimum(run_id, config_id, config["seed"], epoch, config["train"]["batch_size"], model, loss, data, scratch)


def minimum_from_checkpoint(directory: Path, run: dict[str, Any], checkpoints: dict[int, str], epoch: int | None
                            ) -> Minimum:
    """Rebuild a run's model from its configuration and load a checkpoint (the last one by default)."""
    from batchlab.data import load_data
    from batchlab.errors import SpecError
    from batchlab.training.checkpoints import load_checkpoint
    from batchlab.training.prepare import analysis_device, build

    if not checkpoints:
        raise SpecError(f"run {run['run_id']} has no checkpoints in {str(directory)!r}")
    chosen = max(checkpoints) if epoch is None else epoch
    if chosen not in checkpoints:
        raise SpecError(f"run {run['run_id']} has no checkpoint at epoch {epoch} (has {sorted(checkpoints)})")
    config = run["config"]
    model, _ = build(config, load_data(config["data"]))
    load_checkpoint(model, directory / checkpoints[chosen], root=directory)
    model.to(analysis_device(config["train"]))
    return minimum_from_model(run["run_id"], run["config_id"], config, chosen, model,
                              directory / "analysis" / run["run_id"])


def analyze_minimum(name: str, params: dict[str, Any], minimum: Minimum, other: Minimum | None = None
                    ) -> tuple[str, dict[str, Any]]:
    """(label, result) of one analysis; an error becomes a result with status 'failed', never a crash."""
    label = label_of(name, params, minimum.epoch)
    try:
        result = analyses.build({"name": name, **params}, *([minimum, other] if other else [minimum]))
        return label, {"status": "ok", **result}
    except Exception as e:  # noqa: BLE001 - stored with the results, like a failed run
        return label, {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def default_pairs(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """For each seed: (smallest-batch run, largest-batch run), the first in plan order among ties."""
    pairs = []
    finished = [r for r in runs if r["status"] == "finished"]
    for seed in sorted({r["seed"] for r in finished}):
        group = [r for r in finished if r["seed"] == seed]
        sizes = [r["config"]["train"]["batch_size"] for r in group]
        small = group[sizes.index(min(sizes))]
        large = group[sizes.index(max(sizes))]
        if small is not large and min(sizes) != max(sizes):
            pairs.append((small["run_id"], large["run_id"]))
    return pairs


def _label(name: str, params: dict[str, Any], run_ids: Sequence[str], epoch: int) -> str:
    """A pairwise analysis's label names its two runs: 'a-s0 -> b-s0; epoch 80'."""
    label = label_of(name, params, epoch)
    return f"{run_ids[0]} -> {run_ids[1]}; {label}" if len(run_ids) == 2 else label


Row = tuple[str, str, int, str, dict[str, Any]]  # (kind, config_id, seed, label, data), as the store keeps it


def _task(directory: str, name: str, params: dict[str, Any], runs: list[dict[str, Any]],
          checkpoints: list[dict[int, str]], epoch: int | None) -> Row:
    """One analysis of one run (or pair), loaded from checkpoints; a checkpoint that cannot be loaded
    is a failed analysis, stored like any other result."""
    config_id, seed = "~".join(r["config_id"] for r in runs), runs[0]["seed"]
    try:
        minima = [minimum_from_checkpoint(Path(directory), run, cps, epoch)
                  for run, cps in zip(runs, checkpoints, strict=True)]
    except Exception as e:  # noqa: BLE001 - recorded with the results
        chosen = epoch if epoch is not None else max(checkpoints[0], default=0)
        label = _label(name, params, [r["run_id"] for r in runs], chosen)
        return name, config_id, seed, label, {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    _, data = analyze_minimum(name, params, *minima)
    return name, config_id, seed, _label(name, params, [m.run_id for m in minima], minima[0].epoch), data


def _task_in_worker(job: tuple[Any, ...], send: Callable[[Row], None]) -> None:
    send(_task(*job))


def analyze_directory(directory: Path, name: str, params: dict[str, Any], run_ids: list[str] | None = None,
                      pairs: list[tuple[str, str]] | None = None, epoch: int | None = None, jobs: int = 1,
                      skip_done: bool = False, on_done: Callable[[Row, int, int], None] | None = None
                      ) -> list[tuple[str, str, int, str, dict[str, Any]]]:
    """Run one analysis over a results directory and store every result; returns the stored rows.
    ``on_done(row, done, total)``, when given, hears of each result as it is stored (a progress display)."""
    from batchlab.errors import SpecError
    from batchlab.results.store import DONE, ResultsStore

    store = ResultsStore.open_read(directory)
    try:
        runs = {r["run_id"]: r for r in store.run_rows()}
        cps: dict[str, dict[int, str]] = {}
        for run_id, e, path in store.checkpoint_rows():
            cps.setdefault(run_id, {})[e] = path
        done = {(k, c, s, label) for k, c, s, label, _ in store.measurement_rows()}
    finally:
        store.close()
    for run_id in [*(run_ids or []), *(i for pair in pairs or [] for i in pair)]:
        if run_id not in runs:
            raise SpecError(f"no run {run_id!r} in {str(directory)!r}")
    if name in PAIRWISE:
        groups = pairs if pairs is not None else default_pairs(list(runs.values()))
        if not groups:
            raise SpecError(f"{name}: no pair of finished runs with different batch sizes in {str(directory)!r}")
    else:
        chosen = run_ids or [i for i, r in runs.items() if r["status"] == "finished"]
        groups = [(i,) for i in chosen if runs[i]["status"] in DONE]
        if not groups:
            raise SpecError(f"{name}: no finished runs in {str(directory)!r}")
    tasks = []
    for group in groups:
        if skip_done:
            last = [max(cps[i]) if cps.get(i) else 0 for i in group]
            config_id = "~".join(runs[i]["config_id"] for i in group)
            if (name, config_id, runs[group[0]]["seed"], _label(name, params, group, epoch or last[0])) in done:
                continue
        tasks.append((str(directory), name, params, [runs[i] for i in group], [cps.get(i, {}) for i in group], epoch))
    if not tasks:
        return []
    rows: list[tuple[str, str, int, str, dict[str, Any]]] = []
    store = ResultsStore(directory)

    def keep(row: Row) -> None:  # each result as it comes: an interruption keeps the rest
        rows.append(row)
        store.add_measurement(*row)
        if on_done is not None:
            on_done(row, len(rows), len(tasks))

    try:
        if jobs > 1 and len(tasks) > 1:
            def lost(job: tuple[Any, ...], why: str) -> None:
                runs = job[3]
                keep((name, "~".join(r["config_id"] for r in runs), runs[0]["seed"],
                      _label(name, params, [r["run_id"] for r in runs], epoch or max(job[4][0], default=0)),
                      {"status": "failed", "error": why}))

            plugins = plugins_of(r["config"] for t in tasks for r in t[3])
            run_in_workers(_task_in_worker, tasks, jobs, plugins, keep, lost)
        else:
            for t in tasks:
                keep(_task(*t))
    finally:
        store.close()
    return rows

"""Results out to the tools researchers already use: CSV files, TensorBoard event files, MLflow runs.

Every format gets the same content from the store: one entry per run, named ``<label>-s<seed>`` (the
configuration's label, or a name made of the fields that vary), its configuration as parameters and
every per-epoch metric at step = epoch. Without a destination each results directory exports into
itself; with one, several directories (studies to compare) share it.

    export([Path("runs/mnist-pairs")], "tensorboard", None)   # -> runs/mnist-pairs/tensorboard/<run>/
    export([a, b], "mlflow", "sqlite:///mlflow.db")           # one MLflow experiment per study
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchlab.errors import SpecError
from batchlab.results.labels import labels_by_config

KEYS = ("run_id", "config_id", "seed", "epoch")  # columns of the epochs table that are not metrics
ARTIFACTS = ("report.html", "summary.md")  # what a study's report leaves in its directory
_SHORT = {"batch_size": "bs"}  # short names in derived labels


@dataclass
class Study:
    """One results directory as the exporters need it."""

    directory: Path
    name: str  # the study's name from its spec (the directory's name if none was stored)
    runs: Any  # pandas.DataFrame from batchlab.load, with a ``label`` column added
    epochs: Any  # pandas.DataFrame from batchlab.load
    configs: dict[str, dict[str, Any]]  # run id -> flattened configuration (dotted names), seed included
    times: dict[str, tuple[float | None, float | None]]  # run id -> (started, finished), seconds since the epoch

    def metrics(self) -> list[str]:
        return [c for c in self.epochs.columns if c not in KEYS]

    def run_name(self, run: Any) -> str:
        """What a user sees for a run: ``<label>-s<seed>``."""
        return f"{run.label}-s{run.seed}"

    def epochs_of(self, run_id: str) -> list[tuple[int, dict[str, float]]]:
        """(epoch, {metric: value}) in epoch order; metrics an epoch did not record are left out."""
        rows = self.epochs[self.epochs["run_id"] == run_id].sort_values("epoch")
        names = self.metrics()
        return [(int(row["epoch"]), {name: float(row[name]) for name in names if _present(row[name])})
                for row in rows.to_dict("records")]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _label(runs: Any) -> dict[str, str]:
    """config id -> the label ``ls``, reports and exports share (results/labels.py)."""
    return labels_by_config(runs)


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _safe(name: str) -> str:
    """A folder name from a run name: ``bs=1000 lr=0.1-s3`` -> ``bs=1000_lr=0.1-s3``."""
    return re.sub(r"[^\w.=+,-]+", "_", name).strip("._")[:150] or "run"


def read_study(directory: Path) -> Study:
    from batchlab.results.store import ResultsStore, load
    from batchlab.spec import flatten_config

    results = load(directory)
    store = ResultsStore(directory, create=False)
    try:
        rows, meta = store.run_rows(), store.meta("study", {}) or {}
    finally:
        store.close()
    runs = results.runs.copy()
    if len(runs):
        labels = runs["config_id"].map(_label(runs))
        if "label" in runs.columns:
            runs["label"] = labels
        else:
            runs.insert(runs.columns.get_loc("config_id") + 1, "label", labels)
    return Study(directory=directory, name=meta.get("name") or directory.resolve().name, runs=runs,
                 epochs=results.epochs, configs={r["run_id"]: flatten_config(r["config"]) for r in rows},
                 times={r["run_id"]: (r["started"], r["finished"]) for r in rows})


def _unique_folders(studies: list[Study]) -> list[str]:
    """One folder name per study under a shared destination: the directory's name, numbered if repeated."""
    names: list[str] = []
    for study in studies:
        base = _safe(study.directory.resolve().name)
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


# --- CSV --------------------------------------------------------------------------------------------------

def to_csv(studies: list[Study], to: str | None) -> list[str]:
    """runs.csv and epochs.csv; with several studies and one destination, stacked with a ``study`` column."""
    import pandas as pd

    if to is None or len(studies) == 1:
        return [_write_csv(s.runs, _epochs_with_labels(s), Path(to) if to else s.directory) for s in studies]
    runs = pd.concat([s.runs.assign(study=str(s.directory)) for s in studies], ignore_index=True)
    epochs = pd.concat([_epochs_with_labels(s).assign(study=str(s.directory)) for s in studies], ignore_index=True)
    return [_write_csv(_study_first(runs), _study_first(epochs), Path(to))]


def _epochs_with_labels(study: Study) -> Any:
    if not len(study.runs):
        return study.epochs
    epochs = study.epochs.merge(study.runs[["run_id", "label"]], on="run_id", how="left")
    return epochs[["run_id", "label", *[c for c in epochs.columns if c not in ("run_id", "label")]]]


def _study_first(frame: Any) -> Any:
    return frame[["study", *[c for c in frame.columns if c != "study"]]]


def _write_csv(runs: Any, epochs: Any, to: Path) -> str:
    to.mkdir(parents=True, exist_ok=True)
    runs.to_csv(to / "runs.csv", index=False)
    epochs.to_csv(to / "epochs.csv", index=False)
    return f"wrote {to / 'runs.csv'} ({len(runs)} runs) and {to / 'epochs.csv'} ({len(epochs)} rows)"


# --- TensorBoard ------------------------------------------------------------------------------------------

def to_tensorboard(studies: list[Study], to: str | None) -> list[str]:
    """One event-file folder per run (``<label>-s<seed>``): each metric a scalar at step = epoch, the
    configuration as hyperparameters (the HParams dashboard compares runs by them)."""
    folders = _unique_folders(studies)
    messages = []
    for study, folder in zip(studies, folders, strict=True):
        root = study.directory / "tensorboard" if to is None else Path(to) / folder if len(studies) > 1 else Path(to)
        written = sum(_tensorboard_run(study, run, root / _safe(study.run_name(run)))
                      for run in study.runs.itertuples(index=False))
        messages.append(f"wrote {written} runs of {study.directory} to {root} (view: tensorboard --logdir {root})")
    return messages


def _tensorboard_run(study: Study, run: Any, folder: Path) -> bool:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    epochs = study.epochs_of(run.run_id)
    if not epochs:
        return False
    for old in folder.glob("events.out.tfevents.*"):  # an earlier export of this run: replaced, not doubled
        old.unlink()
    started = study.times[run.run_id][0] or time.time()
    with SummaryWriter(log_dir=str(folder)) as writer:
        for epoch, values in epochs:
            for name, value in values.items():
                writer.add_scalar(name, value, global_step=epoch, walltime=started + epoch)
        config = {"label": run.label, "config_id": run.config_id, **study.configs[run.run_id]}
        metric_names = {name: None for _, values in epochs for name in values}
        for summary in hparams({k: _hparam(v) for k, v in config.items()}, metric_names):
            writer.file_writer.add_summary(summary, walltime=started)
    return True


def _hparam(value: Any) -> bool | int | float | str:
    return value if isinstance(value, bool | int | float | str) else "none" if value is None else str(value)


# --- MLflow -----------------------------------------------------------------------------------------------

def to_mlflow(studies: list[Study], to: str | None) -> list[str]:
    """One MLflow run per batchlab run (params: the configuration; metrics: every per-epoch value at
    step = epoch), nested under one run per study that holds its report.html and summary.md. ``to`` is
    a tracking URI, or a folder (default: ``<results>/mlflow``) for a local SQLite store."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise SpecError("--format mlflow needs MLflow: pip install 'batchlab[mlflow]'") from None
    messages = []
    with _quiet("mlflow", "alembic"):
        for study in studies:
            uri, artifacts = _tracking_uri(to if to is not None else study.directory / "mlflow")
            try:
                client = MlflowClient(tracking_uri=uri)
                written = _mlflow_study(client, study, artifacts)
            except MlflowException as e:
                raise SpecError(f"MLflow at {uri}: {str(e.message).splitlines()[0]}") from None
            messages.append(f"logged {written} runs of {study.directory} to MLflow experiment {study.name!r} at "
                            f"{uri} (view: mlflow ui --backend-store-uri {uri})")
    return messages


def _tracking_uri(to: str | Path) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment): a URI as given; a folder becomes
    ``sqlite:///<folder>/mlflow.db`` with artifacts beside it (MLflow 3 keeps plain-file stores
    read-only unless told otherwise; SQLite is its own local default)."""
    text = str(to)
    if "://" in text or text.startswith(("file:", "databricks")):
        return text, None
    folder = Path(text).resolve()
    if folder.suffix == ".db":
        folder.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder}", (folder.parent / "artifacts").as_uri()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def _mlflow_study(client: Any, study: Study, artifacts: str | None) -> int:
    from mlflow.entities import Metric, Param

    experiment = client.get_experiment_by_name(study.name)
    if experiment is None:
        experiment_id = client.create_experiment(study.name, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    directory = str(study.directory.resolve())
    for old in _mlflow_runs_of(client, experiment_id, directory):  # an earlier export: replaced, not doubled
        client.delete_run(old)
    tags = {"batchlab.directory": directory, "batchlab.study": study.name}
    parent = client.create_run(experiment_id, run_name=study.name, tags={**tags, "batchlab.kind": "study"})
    for name in ARTIFACTS:
        if (study.directory / name).exists():
            client.log_artifact(parent.info.run_id, str(study.directory / name))
    written = 0
    for run in study.runs.itertuples(index=False):
        epochs = study.epochs_of(run.run_id)
        if not epochs:
            continue
        started, finished = study.times[run.run_id]
        created = client.create_run(
            experiment_id, run_name=study.run_name(run), start_time=_ms(started),
            tags={**tags, "mlflow.parentRunId": parent.info.run_id, "batchlab.run_id": run.run_id,
                  "batchlab.config_id": run.config_id, "batchlab.label": run.label, "batchlab.status": run.status})
        run_id = created.info.run_id
        params = [Param(_key(k), str(v)) for k, v in study.configs[run.run_id].items()]
        metrics = [Metric(_key(name), value, _ms(started) or 0, epoch)
                   for epoch, values in epochs for name, value in values.items()]
        for chunk in _chunks(params, 100):  # MLflow's limits per call
            client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metrics, 1000):
            client.log_batch(run_id, metrics=chunk)
        status = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED"}.get(run.status, "KILLED")
        client.set_terminated(run_id, status=status, end_time=_ms(finished))
        written += 1
    client.set_terminated(parent.info.run_id)
    return written


def _mlflow_runs_of(client: Any, experiment_id: str, directory: str) -> list[str]:
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        found += [r.info.run_id for r in page if r.data.tags.get("batchlab.directory") == directory]
        token = page.token
        if not token:
            return found


def _key(name: str) -> str:
    """MLflow allows letters, digits, ``_ - . / `` and spaces in names."""
    return re.sub(r"[^\w\-. /]", "_", name)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """MLflow and its database migrations log INFO lines on first use; the export prints its own."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# --- the entry point --------------------------------------------------------------------------------------

FORMATS: dict[str, Callable[[list[Study], str | None], list[str]]] = {
    "csv": to_csv, "tensorboard": to_tensorboard, "mlflow": to_mlflow}


def export(directories: list[Path], fmt: str, to: str | Path | None = None) -> list[str]:
    """Export results directories in one format; returns the lines to print. ``to``: a folder, or for
    MLflow a tracking URI (pass it as the user wrote it: ``Path`` would fold ``sqlite:///`` to one slash)."""
    if fmt not in FORMATS:
        raise SpecError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not directories:
        raise SpecError("export: name at least one results directory")
    studies = [read_study(Path(d)) for d in directories]
    for study in studies:
        if not len(study.runs):
            raise SpecError(f"no runs in {str(study.directory)!r}")
    return FORMATS[fmt](studies, None if to is None else str(to))

"""Running a study's runs and storing what they report.

- tasks.py        a task: one run, or stacked trials; events out, never store writes
- events.py       the events (dataclasses) and the one store writer
- workers.py      worker set-up and the local pool of worker processes
- local.py        tasks in this process or in local workers
- torchrun.py     tasks under torchrun (every process a shard of every batch)
- ray_cluster.py  tasks on a Ray cluster
- preflight.py    checks that need the data, before anything runs
- progress.py     the live progress display
"""

from __future__ import annotations

from batchlab.results.store import DONE, ResultsStore
from batchlab.spec import RunSpec
from batchlab.sweep.events import Reporter, StoreWriter


def execute(runs: list[RunSpec], store: ResultsStore, jobs: int, reporter: Reporter, vectorize: str = "off",
            executor: str = "local", address: str | None = None) -> list[str]:
    """Run every run not yet finished or diverged (so re-running a directory resumes it).

    ``vectorize`` (off | on | auto) stacks the trials of a configuration where it can
    (tasks.plan_tasks); returns the notes on configurations that could not be stacked. ``executor =
    "ray"`` sends the tasks to a Ray cluster (``address``; a local one by default) instead of local
    worker processes; either way only this process writes the store.
    """
    from batchlab.sweep.local import execute_locally
    from batchlab.sweep.tasks import plan_tasks, run_group, task_cost

    todo = [r for r in runs if store.status(r.run_id) not in DONE]
    if not todo:
        return []
    writer = StoreWriter(store, reporter, todo)
    tasks, notes = plan_tasks(todo, vectorize)
    tasks.sort(key=task_cost, reverse=True)
    parallel = [t for t in tasks if t[0].config["train"]["processes"] > 1]  # each spans processes itself
    tasks = [t for t in tasks if t not in parallel]
    directory = str(store.directory)
    if executor == "ray":
        from batchlab.sweep.ray_cluster import execute_on_ray

        execute_on_ray(tasks, writer, address)
    else:
        execute_locally(tasks, jobs, writer, directory)
    for task in parallel:
        run_group(task, writer, directory)
    return notes

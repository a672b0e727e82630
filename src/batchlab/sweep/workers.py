"""Worker processes: how every process that trains or analyses is set up, and a small pool of them.

Every worker computes on one thread and imports the study's plug-ins first
(``training.prepare.setup_worker``).

``run_in_workers`` runs tasks in freshly spawned processes (no forked torch thread pools) and
streams what they send back to this process, which alone writes results. It owns its processes,
so Ctrl-C (SIGINT, which the workers ignore) or SIGTERM in the driver stops every worker within a
second and the interrupt goes on up to the command, and a worker that dies is noticed and its
task reported lost while the others go on.

A terminal sends Ctrl-C to every process of the foreground group, workers included, and a spawned
worker spends its first seconds importing torch before any code of ours runs. So workers are born
with SIGINT blocked (``children_deaf_to_sigint``): a Ctrl-C then can never print a worker's
KeyboardInterrupt traceback beside the driver's one line.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from batchlab.training.prepare import children_deaf_to_sigint, setup_worker


def default_jobs() -> int:
    """Every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def plugins_of(configs: Iterable[dict[str, Any]]) -> list[str]:
    """The plug-in modules a set of run configurations needs, each once."""
    return sorted({p for config in configs for p in config.get("plugins", [])})


@contextmanager
def single_thread() -> Iterator[None]:
    """Compute on one thread in this process for a while (a sweep run without workers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Send = Callable[[Any], None]
Task = Callable[[Any, Send], None]  # task(item, send): does its work, sending messages home


def _worker(task: Task, plugins: list[str], inbox: Any, messages: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what an interrupt stops
    setup_worker(plugins)
    pid = os.getpid()
    while (item := inbox.get()) is not None:
        try:
            task(item, lambda message: messages.put(("message", pid, message)))
        except Exception as e:  # noqa: BLE001 - a task should report its own failures; this is the backstop
            messages.put(("failed", pid, f"{type(e).__name__}: {e}"))
        messages.put(("done", pid, None))


def run_in_workers(task: Task, items: list[Any], workers: int, plugins: list[str], receive: Callable[[Any], None],
                   lost: Callable[[Any, str], None]) -> None:
    """Run ``task(item, send)`` for every item in ``workers`` processes; each message sent reaches
    ``receive`` here, as it arrives. Items are handed out in the order given, one at a time, so this
    process always knows which item each worker holds: a worker that dies mid-task (killed, out of
    memory) is reported as ``lost(item, why)`` and a fresh worker takes its place."""
    context = mp.get_context("spawn")
    messages = context.Queue()
    pending = list(reversed(items))
    running: dict[int, tuple[Any, Any, Any]] = {}  # pid -> (process, inbox, item)

    def hand_out(process: Any, inbox: Any) -> None:
        if pending:
            item = pending.pop()
            inbox.put(item)
            running[process.pid] = (process, inbox, item)
        else:
            inbox.put(None)
            running.pop(process.pid, None)

    def start() -> None:
        inbox = context.Queue()
        process = context.Process(target=_worker, args=(task, plugins, inbox, messages), daemon=True)
        with children_deaf_to_sigint():
            process.start()
        hand_out(process, inbox)

    for _ in range(min(workers, len(items))):
        start()
    stopped: list[Any] = []
    try:
        while running:
            try:
                kind, pid, payload = messages.get(timeout=0.5)
            except queue_module.Empty:
                for pid, (process, _, item) in list(running.items()):
                    if process.exitcode is not None:  # died with its item unfinished
                        del running[pid]
                        lost(item, f"worker died (exit code {process.exitcode})")
                        if pending:
                            start()
                continue
            if kind == "failed" and pid in running:
                lost(running[pid][2], payload)
            elif kind == "done" and pid in running:
                process, inbox, _ = running[pid]
                hand_out(process, inbox)
                if pid not in running:
                    stopped.append(process)
            elif kind == "message":
                receive(payload)
        for process in stopped:
            process.join(timeout=10)
    finally:
        for process in [*stopped, *(p for p, _, _ in running.values())]:
            if process.is_alive():
                process.terminate()
            process.join(timeout=5)
        messages.cancel_join_thread()

"""One writer per results directory: an OS file lock on ``DIR/.batchlab.lock`` holding the writer's pid.

Two processes training into one directory would each start the same runs, and starting a run
deletes its rows whichever process started it, so a run could end marked finished with half its
epochs. The lock is ``flock``: the kernel releases it when its holder dies, however it dies, so a
lock left by a killed process never blocks anyone. Readers (``ls``, ``report``, ``export``) never
take it; SQLite's WAL mode lets them read beside the writer.

The lock is re-entrant within a process (``run`` takes it, then the analyses after the sweep take
it again), and it is taken without waiting: a second writer is told at once who holds it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchlab.errors import SpecError, os_failure

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one writer is then the user's care
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".batchlab.lock"

_held: dict[str, tuple[int, int]] = {}  # realpath of the lock file -> (fd, depth) in this process
_guard = threading.Lock()


def holder(directory: str | Path) -> int | None:
    """The pid written in a directory's lock file (whether or not it still holds it), if any."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


@contextmanager
def writer_lock(directory: str | Path) -> Iterator[Path]:
    """Hold the directory's writer lock for the block; SpecError naming the holder's pid if another
    process has it. The directory must exist (``check_output_dir`` creates it)."""
    path = Path(directory) / LOCK_NAME
    key = os.path.realpath(path)
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
        else:
            _held[key] = (_acquire(path, Path(directory)), 1)
    try:
        yield path
    finally:
        with _guard:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
            else:
                del _held[key]
                os.close(fd)  # closing the descriptor releases the flock


def _acquire(path: Path, directory: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise os_failure(e, f"cannot lock {str(directory)!r} for writing") from None
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = holder(directory)
        who = f"pid {pid}" if pid is not None else "another process"
        raise SpecError(f"{str(directory)!r} is being written by batchlab ({who}); wait for it or use another "
                        "--out") from None
    except OSError as e:
        os.close(fd)
        raise os_failure(e, f"cannot lock {str(directory)!r} for writing") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is a courtesy to the second writer; the lock itself is held
    return fd

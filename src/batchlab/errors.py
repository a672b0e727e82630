"""The exceptions users should see, each told in one line: bad input (exit 2) or a machine that
cannot do the work right now (exit 1), and how an operating-system error becomes one of them."""

from __future__ import annotations

import errno
import os
import sqlite3


class SpecError(ValueError):
    """Bad input (spec file, CLI option, data path). The CLI prints it as one line and exits with code 2."""

    exit_code = 2


class EnvironmentFailure(RuntimeError):
    """The input is fine but the machine is not: a full disk, a quota, an I/O error, no memory.
    The CLI prints it as one line and exits with code 1; what was stored so far stays resumable."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: workers stopped, what finished kept, exit 143."""


class BatchlabWarning(UserWarning):
    """A set-up that runs but may not mean what its author thinks (the CLI reports each once per study)."""


# Errors of the machine, not of the path the user gave: running again later (more space, a
# remounted disk) can succeed with the same arguments.
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EFBIG,
                errno.EAGAIN, errno.EBUSY, errno.ETXTBSY}


def describe_os_error(e: OSError, what: str) -> str:
    """``what`` (e.g. "--out runs/x") and the reason, without Python's ``[Errno 28]`` noise: one line."""
    path = e.filename if e.filename is not None else ""
    reason = e.strerror or (os.strerror(e.errno) if e.errno else str(e)) or type(e).__name__
    where = f" ({os.fsdecode(path)!r})" if path and os.fsdecode(path) not in what else ""
    hint = "; free some space and run again (finished runs are kept)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{what}{where}: {reason[:1].lower() + reason[1:]}{hint}"


def os_failure(e: OSError, what: str) -> SpecError | EnvironmentFailure:
    """The exception to raise for an OSError on a path: an environment failure for a full disk or an
    I/O error (exit 1), a SpecError for a path that cannot be used (exit 2)."""
    message = describe_os_error(e, what)
    return EnvironmentFailure(message) if e.errno in _ENVIRONMENT else SpecError(message)


def sqlite_failure(e: sqlite3.Error, path: os.PathLike[str] | str) -> SpecError | EnvironmentFailure:
    """The exception for an SQLite error on a results store: full disk and I/O errors are the
    machine's (exit 1); anything else means the file is not a store batchlab can use (exit 2)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    code = getattr(e, "sqlite_errorcode", None)
    full = "full" in text or code == 13  # SQLITE_FULL
    io = "disk i/o error" in text.lower() or code in (10, 7)  # SQLITE_IOERR, SQLITE_NOMEM
    if full:
        return EnvironmentFailure(f"{os.fspath(path)}: the disk is full ({text}); the store is intact: free some "
                                  "space and run again with --resume")
    if io:
        return EnvironmentFailure(f"{os.fspath(path)}: {text}")
    return SpecError(f"{os.fspath(path)}: {text}")

"""Paths batchlab writes to or reads from a user: checked before any work, and opened safely.

An output directory is checked whole before a sweep starts (a file in its way, a read-only
parent, a name the file system or SQLite cannot hold), so a bad ``--out`` is one line instead of a
traceback after an hour of training. Files read from a user's folder are opened only when they are
regular files inside that folder, never FIFOs (which block forever), devices (endless) or links to
elsewhere, and never larger than the reader expects.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from batchlab.errors import SpecError, os_failure

NAME_MAX = 255  # bytes in one path component (ext4, xfs, btrfs, tmpfs, APFS)
# SQLite's unix VFS refuses paths of 512 bytes and more, its "-journal" and "-wal" files included.
DIR_MAX = 480
RUNS = Path("runs")


def default_output_dir(name: str, quick: bool = False) -> Path:
    """``runs/<name>`` (``-quick`` for a quick form); the schema keeps names to one safe component,
    and this checks it again so no name ever leads outside ``runs/``."""
    out = RUNS / (name + ("-quick" if quick else ""))
    if out.parent != RUNS or name in ("", ".", "..") or os.sep in name or "\0" in name:
        raise SpecError(f"name {name!r}: a study name must be one file name (it names the folder under runs/)")
    return out


def check_output_dir(path: str | Path, what: str = "--out", create: bool = True) -> Path:
    """The directory results will go to, checked (and created) before any work; SpecError if unusable."""
    text = os.fspath(path)
    if "\0" in text:
        raise SpecError(f"{what} {text!r}: a path cannot hold a NUL character")
    if not text.strip():
        raise SpecError(f"{what}: empty path")
    out = Path(text)
    for part in out.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise SpecError(f"{what}: the path component {part[:40]!r}... is {len(os.fsencode(part))} bytes long; "
                            f"file systems hold at most {NAME_MAX}")
    absolute = Path(os.path.abspath(out))
    if len(os.fsencode(str(absolute))) > DIR_MAX:
        raise SpecError(f"{what} {text[:60]!r}...: the absolute path is {len(os.fsencode(str(absolute)))} bytes; "
                        f"SQLite opens no file whose path is longer than {DIR_MAX} bytes here")
    existing = absolute
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        kind = "a file" if existing.is_file() else "not a directory"
        place = "" if existing == absolute else f" (its part {str(existing)!r} is {kind})"
        raise SpecError(f"{what} {text!r} is not a usable directory{place or f': it is {kind}'}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"{what} {text!r}: cannot write in {str(existing)!r} (permission denied or read-only)")
    if create:
        try:
            absolute.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_failure(e, f"{what} {text!r}") from None
    return out


def within(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` (links resolved) lies inside ``root`` (links resolved)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def read_regular_file(path: str | Path, what: str, limit: int, root: str | Path | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (inside ``root`` when given); a
    SpecError naming ``what`` otherwise. Opened without blocking, so a FIFO never hangs the reader."""
    path = Path(path)
    if root is not None and not within(path, root):
        raise SpecError(f"{what} {str(path)!r} lies outside {str(root)!r}; refusing to read it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise os_failure(e, f"{what} {str(path)!r}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{what} {str(path)!r} is not a regular file")
        if info.st_size > limit:
            raise SpecError(f"{what} {str(path)!r} is {info.st_size} bytes, more than the {limit} expected")
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 24, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise SpecError(f"{what} {str(path)!r} grew beyond the {limit} bytes expected while being read")
        return b"".join(chunks)
    except OSError as e:
        raise os_failure(e, f"{what} {str(path)!r}") from None
    finally:
        os.close(fd)

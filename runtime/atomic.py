"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A crash leaves either the old file or the new one, never half of one. Used by every stage
(training checkpoints, exported graphs, manifests, images). A symbolic link is followed: its target
is what gets replaced, and the link stays. `write_bytes_atomic` writes to an existing file that is
not a regular one (a device such as /dev/null, a FIFO, /dev/stdout on a pipe) straight through,
since renaming over it would replace the device or pipe with a plain file. Temporary files are named
.NAME.PID.RANDOM.tmp, so a later writer can tell those of a killed process from those of a live one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces `path` (a link's target), on error it is removed."""
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; keep the mode of the file being replaced, else rw-r--r--.
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    sync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically; to an existing non-regular file (device, FIFO), straight through."""
    if is_special_file(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    with open_atomic(path) as f:
        f.write(data)


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """True when `path` (links followed) exists and is not a regular file or a folder: a device, a FIFO,
    a socket, or /dev/stdout bound to a pipe or a terminal."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, or a dangling link: a new regular file will be written
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def remove_stale_temps(folder: str | os.PathLike[str], names: list[str], dead_only: bool = False) -> list[Path]:
    """Remove the temporary files `open_atomic` leaves when a process is killed mid-write
    (.NAME.*.tmp beside each of `names`). Without `dead_only`, every one: call it where no other
    writer can be running (under a lock). With it, only those whose writer's PID is no longer alive."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            if dead_only and not writer_is_dead(tmp.name[len(name) + 2 :].split(".", 1)[0]):
                continue
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def writer_is_dead(pid_text: str) -> bool:
    """True when `pid_text` names a process that no longer exists (False when unknown or alive)."""
    if not pid_text.isdigit() or int(pid_text) in (0, os.getpid()):
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


def sync_dir(folder: Path) -> None:
    """fsync a directory so a rename inside it survives power loss (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

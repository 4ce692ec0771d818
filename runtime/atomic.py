"""Atomic file writes: write a temporary file beside the target, fsync, then rename over it.

A crash leaves either the old file or the new one, never half of one. Used by every stage
(training checkpoints, exported graphs, manifests, images).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
    """Write `data` to `path` atomically."""
    with open_atomic(path) as f:
        f.write(data)


def write_with_atomic(path: str | os.PathLike[str], writer: Callable[[BinaryIO], object]) -> None:
    """Call `writer(file)` on a temporary file, then move it onto `path`."""
    with open_atomic(path) as f:
        writer(f)


def remove_stale_temps(folder: str | os.PathLike[str], names: list[str]) -> list[Path]:
    """Remove the temporary files `open_atomic` leaves when a process is killed mid-write
    (.NAME.*.tmp beside each of `names`). Call it where no other writer can be running."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


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

"""Progress of long work: the callback `log_likelihood` and `score` take, and the CLI's progress line.

    vae.log_likelihood(x, k=1000, progress=lambda done, total: print(f"{done}/{total} images"))

A callback is called with (images done, images in all) after each block of images is finished, the
last call with done == total; an exception it raises stops the work and reaches the caller. The CLI
passes a `ProgressLine`: on a terminal it shows one line on stderr, rewritten in place, once a job
has run for `DELAY_S` seconds; when stderr is not a terminal it writes nothing. As a context manager
it ends its line on the way out, error or not.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[int, int], None]  # (images done, images in all)
DELAY_S = 2.0  # a job shorter than this shows no line


def check_progress(progress: object) -> Progress | None:
    """`progress` as given (None or a callable); a TypeError naming what arrived otherwise."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable (done, total), got {type(progress).__name__}")
    return progress


class ProgressLine:
    """A `Progress` that draws "label: done/total images (pct%), rate, ETA" on a terminal's stderr.

    Nothing is written before `delay` seconds have passed, nor when the stream is not a terminal (a
    pipe, a file, CI logs); `close()` ends the line, so the next output starts on a fresh one.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        delay: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.stream, self.clock = label, stream or sys.stderr, clock
        self.delay = DELAY_S if delay is None else delay
        self.start = clock()
        self.drawn = False
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = self.clock() - self.start
        if elapsed < self.delay:
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f", {(total - done) / rate:.0f} s left" if 0 < rate and done < total else ""
        pct = 100 * done // total if total else 100  # floored: 999 of 1000 is 99%, not 100%
        self.stream.write(f"\r{self.label}: {done:,}/{total:,} images ({pct}%), {rate:,.1f} images/s{eta}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the line if one was drawn."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

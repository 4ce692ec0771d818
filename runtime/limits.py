"""Argument checks and bounds: one validator for counts and seeds, one memory budget for every amount.

Every option that sets an amount of work held in memory (images to sample, interpolation steps,
importance samples k, rows per run, images read from one file) is bounded by one budget in bytes:
the bound is `budget // bytes_per_unit`, refused before anything is allocated, with one line that
names the option, the bound and how to raise it. The budget is `DEFAULT_MEMORY_BUDGET` (2 GiB),
else the environment variable EDGEVAE_MEMORY_BUDGET, else an argument (`VAE(memory_budget=...)`,
`edgevae --memory-budget`), in bytes or with a K/M/G/T suffix ("8G").

Counts are ints: Python ints and numpy integers are accepted, bools and floats refused. Seeds are
ints in [0, 2**128), for every seeded operation.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

MEMORY_BUDGET_ENV = "EDGEVAE_MEMORY_BUDGET"
DEFAULT_MEMORY_BUDGET = 2 * 2**30
SEED_LIMIT = 2**128  # seeds are in [0, SEED_LIMIT): Philox's 128-bit key
# The largest file the runtime reads whole beside the graphs (manifest, statistics, golden vectors):
# a forged or damaged file is refused from its size before a byte is read.
MAX_SIDE_FILE_BYTES = 256 * 2**20
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_GRAPH_BYTES = 2**31  # protobuf's own limit: no valid .onnx file is larger
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def check_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int within [minimum, maximum]; bools, floats and strings are a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        limit = f"from {minimum} to {maximum:,}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an int {limit}; got {number:,}")
    return number


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an int in [0, 2**128) (numpy integers accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int in [0, 2**128); got {value!r} ({type(value).__name__})")
    number = int(value)
    if not 0 <= number < SEED_LIMIT:
        raise ValueError(f"{name} must be an int in [0, 2**128); got {number}")
    return number


def parse_size(text: str, name: str = MEMORY_BUDGET_ENV) -> int:
    """Bytes from "2147483648", "512M" or "8G" (powers of 1024); ValueError naming `name` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"{name}: expected a size in bytes such as 2147483648, 512M or 8G; got {text!r}")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 2**20:
        raise ValueError(f"{name}: the memory budget must be at least 1M; got {text!r}")
    return size


def memory_budget(value: int | str | None = None) -> int:
    """The budget in bytes: `value` (an int or a size string), else $EDGEVAE_MEMORY_BUDGET, else 2 GiB."""
    if value is not None:
        if isinstance(value, str):
            return parse_size(value, "memory_budget")
        return check_int(value, "memory_budget", minimum=2**20)
    env = os.environ.get(MEMORY_BUDGET_ENV)
    return parse_size(env) if env else DEFAULT_MEMORY_BUDGET


def check_amount(name: str, value: int, per_unit: int, budget: int, unit: str = "") -> None:
    """ValueError unless value * per_unit bytes fit the budget: one line with the option, its bound
    under this budget and how to raise the budget."""
    bound = max(1, budget // max(1, per_unit))
    if value > bound:
        raise ValueError(
            f"{name}={value:,} is over its bound of {bound:,}{unit} under the memory budget of "
            f"{format_bytes(budget)} ({format_bytes(per_unit)} each); ask for less at a time, or raise the "
            f"budget with ${MEMORY_BUDGET_ENV} or --memory-budget (e.g. 8G)"
        )


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} GiB"  # unreachable: the loop returns at GiB

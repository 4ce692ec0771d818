""".npy and .npz reading that checks each header before allocating: no pickle, no forged sizes.

numpy's own loaders trust the header: a 100-byte .npz member claiming 10**10 floats asks for 40 GB,
and a 1 GiB .npy of the wrong shape is read whole before anyone looks at its shape. Here the shape
and dtype are read first and checked against the bytes that are really there, a size limit and an
optional shape rule; only then is the data read, exactly as many bytes as the header promised.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

ShapeRule = Callable[[tuple[int, ...], np.dtype], None]  # raises ValueError for arrays the caller cannot use


def read_header(
    f: IO[bytes], available: int, name: str, max_bytes: int, remedy: str = "the file is damaged or forged"
) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran_order) of the .npy stream at `f`, whose data may span `available` bytes
    after the header; ValueError naming `name` for objects, a short file or data over `max_bytes`
    (with `remedy`, what to do about that)."""
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{name} is not a readable .npy array ({available:,} bytes): {exc}") from exc
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects, not numbers; refused (no pickle is ever loaded)")
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
    if need > max_bytes:
        raise ValueError(
            f"{name}: header says shape {shape} of {dtype} ({need / 2**30:.2f} GiB); over the limit of "
            f"{max_bytes / 2**30:.2f} GiB: {remedy}"
        )
    have = available - (f.tell() - start)
    if have < need:
        raise ValueError(
            f"{name} is truncated: header says shape {shape} of {dtype} ({need:,} bytes of data), "
            f"the file holds {max(have, 0):,} (or the header is forged)"
        )
    return tuple(int(d) for d in shape), dtype, bool(fortran)


def read_data(f: IO[bytes], shape: tuple[int, ...], dtype: np.dtype, fortran: bool, name: str) -> np.ndarray:
    """The array whose header `read_header` just read: exactly its bytes, nothing more."""
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = f.read(need)
    if len(data) != need:
        raise ValueError(f"{name} is truncated: expected {need:,} bytes of data, read {len(data):,}")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def read_npy_file(path: str | os.PathLike[str], max_bytes: int, rule: ShapeRule | None = None) -> np.ndarray:
    """A .npy file, its header checked (size, limit, and `rule` for its shape and dtype) before the data is read."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        remedy = "split it into several files, or raise the memory budget"
        shape, dtype, fortran = read_header(f, size, str(path), max_bytes, remedy)
        if rule is not None:
            rule(shape, dtype)
        return read_data(f, shape, dtype, fortran, str(path)).copy()  # writable, owning its memory


def read_npz_bytes(blob: bytes, name: str, max_bytes: int) -> dict[str, np.ndarray]:
    """Every array of an .npz file's bytes, each member's header checked against its real size and
    `max_bytes` (all members together) before its data is read."""
    arrays: dict[str, np.ndarray] = {}
    budget = max_bytes
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not an .npy array")
                key = info.filename[: -len(".npy")]
                with zf.open(info) as f:
                    member = f"{name}[{key}]"
                    shape, dtype, fortran = read_header(f, info.file_size, member, budget)
                    arrays[key] = read_data(f, shape, dtype, fortran, member)
                budget -= arrays[key].nbytes
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise ValueError(f"{name} is not a valid .npz file: {exc}") from exc
    return arrays

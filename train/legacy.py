"""Format 1 checkpoints (encoder.pt, decoder.pt, train_state.pt: torch zip files), read for one more
release (0.2.x) so a run trained before safetensors still exports; `python -m edgevae.train.convert
FOLDER` rewrites them as format 2 (checkpoint.py). Nothing here writes.

The read is the checked path of format 1: the file is read once, every zip member's CRC-32 and
every byte of the zip layout is checked (torch.load checks neither, so a flipped byte in a tensor
would load as a changed weight), then torch.load(weights_only=True) refuses pickled code without
running it (also when TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: it only overrides calls that do not
pass weights_only).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError

logger = logging.getLogger(__name__)

FORMAT = "edgevae-checkpoint"
VERSION = 1
ENCODER_FILE = "encoder.pt"
DECODER_FILE = "decoder.pt"
STATE_FILE = "train_state.pt"
FILES = (ENCODER_FILE, DECODER_FILE, STATE_FILE)


def holds_legacy(folder: Path) -> bool:
    """True when FOLDER holds a format-1 encoder or decoder."""
    return any((folder / name).exists() or (folder / name).is_symlink() for name in (ENCODER_FILE, DECODER_FILE))


def note(folder: Path) -> None:
    """The one-line note that a format-1 folder was read and how to convert it."""
    logger.warning(
        "note: %s holds format-1 .pt checkpoints, read through the checked legacy reader for this release "
        "only; convert them: python -m edgevae.train.convert %s",
        folder,
        folder,
    )


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """torch.load(weights_only=True) of verified bytes, with missing and corrupt files named as such;
    returns the payload and the sha256 of exactly the bytes it was loaded from.

    The file is read once. Its zip members' CRC-32s are checked first (torch.load does not check
    them, so a flipped byte in a tensor would load as a changed weight); then the bytes are loaded
    with weights_only=True, which refuses pickled code without running it (also when
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: it only overrides calls that do not pass weights_only).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        bad = archive.testzip() or check_zip_layout(raw, archive)
    except (
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        OSError,
        NotImplementedError,
        RuntimeError,
        KeyError,
        IndexError,
        OverflowError,
        UnicodeDecodeError,
        struct.error,
        zlib.error,
    ) as exc:
        raise CheckpointError(
            f"corrupt checkpoint {path}: not a readable checkpoint archive ({type(exc).__name__}: {exc})"
        ) from exc
    if bad is not None:
        raise CheckpointError(
            f"corrupt checkpoint {path}: member {bad} fails its CRC-32 check "
            "(the file was modified or damaged after it was written)"
        )
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next(
            (line.strip() for line in str(exc).splitlines() if "Unsupported" in line or "GLOBAL" in line),
            str(exc).splitlines()[0][:160],
        )
        raise CheckpointError(
            f"refused checkpoint {path}: it holds pickled code or objects that are not tensors, "
            f"which were not run ({reason}). edgevae checkpoints hold only tensors and plain "
            "values; re-create it with python -m edgevae.train"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an edgevae checkpoint (no format={FORMAT!r} field)")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')}, the .pt reader reads {VERSION}")
    return obj, digest


ZIP_LOCAL, ZIP_DESCRIPTOR, ZIP_END = b"PK\x03\x04", b"PK\x07\x08", b"PK\x05\x06"


def check_zip_layout(raw: bytes, archive: zipfile.ZipFile) -> str | None:
    """The first place where the archive departs from the layout torch.save writes, or None.

    zipfile checks each member's data against its CRC-32 but reads nothing else of the local
    headers, data descriptors and padding, and tolerates a damaged end record; a flipped byte
    there would go unnoticed. Here every local header must repeat the central directory (flags,
    method, time, name), the padding is torch's ("FB" then "Z"s), each data descriptor repeats
    the CRC and sizes, the central records carry torch's zero attributes, and nothing follows the
    end record.
    """
    infos = archive.infolist()
    end = struct.unpack("<4sHHHHIIH", raw[-22:])
    cd_size = sum(46 + len(i.filename.encode()) + len(i.extra) for i in infos)
    cd_start = len(raw) - 22 - (76 if raw[-42:-38] == b"PK\x06\x07" else 0) - cd_size
    if end != (ZIP_END, 0, 0, len(infos), len(infos), cd_size, cd_start, 0):
        return "end record"
    if raw[-42:-38] == b"PK\x06\x07":  # zip64 end record and locator, which torch also writes
        z64 = len(raw) - 22 - 20 - 56
        if struct.unpack("<4sIQI", raw[-42:-22]) != (b"PK\x06\x07", 0, z64, 1):
            return "zip64 locator"
        record = struct.unpack("<4sQHHIIQQQQ", raw[z64 : z64 + 56])
        # versions as torch's writer (miniz) sets them: made by 3.0 on Unix (0x031E), needed 4.5
        if record != (b"PK\x06\x06", 44, 0x031E, 45, 0, 0, len(infos), len(infos), cd_size, cd_start):
            return "zip64 end record"
    for info in archive.infolist():
        o = info.header_offset
        sig, version, flag, method, mtime, mdate, crc, csize, usize, nlen, elen = struct.unpack(
            "<4sHHHHHIIIHH", raw[o : o + 30]
        )
        dos_time = (info.date_time[3] << 11) | (info.date_time[4] << 5) | (info.date_time[5] // 2)
        dos_date = ((info.date_time[0] - 1980) << 9) | (info.date_time[1] << 5) | info.date_time[2]
        name = raw[o + 30 : o + 30 + nlen]
        extra = raw[o + 30 + nlen : o + 30 + nlen + elen]
        if (sig, version, flag, method, mtime, mdate, name) != (
            ZIP_LOCAL,
            info.extract_version,
            info.flag_bits,
            info.compress_type,
            dos_time,
            dos_date,
            info.filename.encode(),
        ):
            return f"{info.filename} (local header)"
        if extra != info.extra and not (
            extra[:2] == b"FB" and int.from_bytes(extra[2:4], "little") == elen - 4 and extra[4:] == b"Z" * (elen - 4)
        ):
            return f"{info.filename} (padding)"
        if (
            info.create_version,
            info.create_system,
            info.extract_version,
            info.reserved,
            info.internal_attr,
            info.external_attr,
            info.comment,
            info.volume,
        ) != (0, 0, 0, 0, 0, 0, b"", 0):
            return f"{info.filename} (central record)"
        end = o + 30 + nlen + elen + info.compress_size
        if flag & 0x08:
            if (crc, csize, usize) != (0, 0, 0):
                return f"{info.filename} (local header sizes)"
            if raw[end : end + 4] != ZIP_DESCRIPTOR:
                return f"{info.filename} (data descriptor)"
            fmt = "<IQQ" if raw[end + 16 : end + 20] not in (ZIP_LOCAL, b"PK\x01\x02") else "<III"
            got = struct.unpack(fmt, raw[end + 4 : end + 4 + struct.calcsize(fmt)])
            if got != (info.CRC, info.compress_size, info.file_size):
                return f"{info.filename} (data descriptor)"
        elif (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
            return f"{info.filename} (local header sizes)"
    return None


def read_pair(folder: Path) -> list[tuple[dict[str, Any], str, Path]]:
    """[(payload, sha256 of its bytes, path)] of a format-1 folder's encoder and decoder; after a kill
    between the two renames of a format-1 pair commit, the decoder is the whole pending one."""
    enc_path, dec_path = folder / ENCODER_FILE, folder / DECODER_FILE
    enc, enc_sha = read_checkpoint(enc_path)
    dec, dec_sha = read_checkpoint(dec_path)
    pending = dec_path.with_name(f".{dec_path.name}.pending")
    if pending.is_file() and (enc.get("run"), enc.get("epoch")) != (dec.get("run"), dec.get("epoch")):
        dec_path = pending
        dec, dec_sha = read_checkpoint(dec_path)
    return [(enc, enc_sha, enc_path), (dec, dec_sha, dec_path)]

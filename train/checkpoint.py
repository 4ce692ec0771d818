"""The only place that saves and loads checkpoints.

Files (all plain dicts of tensors and Python types, so a literal
`torch.load(path, weights_only=True)` reads them):
  encoder.pt / decoder.pt   {"format", "version", "kind", "config", "train_config", "epoch", "state_dict"}
  train_state.pt            resume state: both state dicts, optimizer, epoch, metrics history
Every write is atomic (temporary file, fsync, rename); every load is weights_only and reports a
missing or corrupt file by name.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevae.runtime.atomic import sync_dir, write_bytes_atomic
from edgevae.runtime.errors import EdgeVAEError

from .config import TrainConfig, VAEConfig
from .model import Decoder, Encoder, make_decoder, make_encoder

FORMAT = "edgevae-checkpoint"
VERSION = 1
ENCODER_FILE = "encoder.pt"
DECODER_FILE = "decoder.pt"
STATE_FILE = "train_state.pt"
KINDS = {"encoder": make_encoder, "decoder": make_decoder}  # the module `config.block` asks for


class CheckpointError(EdgeVAEError):
    """A checkpoint is missing, corrupt, or not what the caller asked for."""


def serialize(obj: Any) -> bytes:
    """torch.save into memory (so the file write itself can be atomic)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the module's parameters and buffers."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def pending_path(path: Path) -> Path:
    """Where the new half of a pair waits, whole, until both halves are written: .NAME.pending."""
    return path.with_name(f".{path.name}.pending")


def save_pair(
    folder: str | os.PathLike[str],
    encoder: nn.Module,
    decoder: nn.Module,
    train_config: TrainConfig,
    epoch: int,
    run: str | None,
) -> None:
    """Replace FOLDER/encoder.pt and decoder.pt as one unit.

    Both new files are first written whole (atomically) as .encoder.pt.pending and
    .decoder.pt.pending; only then are they renamed into place. A kill before the first rename
    leaves the old pair; a kill between the renames leaves a new encoder.pt and the new decoder
    still pending, which `load_pair` picks up (same run and epoch), and `finish_pair` completes.
    """
    folder = Path(folder)
    halves = ((folder / ENCODER_FILE, "encoder", encoder), (folder / DECODER_FILE, "decoder", decoder))
    for path, kind, module in halves:
        save_module(pending_path(path), kind, module, train_config, epoch, run)
    for path, _, _ in halves:
        os.replace(pending_path(path), path)
    sync_dir(folder)


def finish_pair(folder: str | os.PathLike[str]) -> None:
    """Complete a pair commit a kill interrupted (rename a pending half that matches the other
    half's run and epoch), and drop pending files of a commit that never started renaming."""
    folder = Path(folder)
    enc, dec = folder / ENCODER_FILE, folder / DECODER_FILE
    for path, other in ((dec, enc), (enc, dec)):
        pending = pending_path(path)
        if not pending.exists():
            continue
        if other.exists() and not pending_path(other).exists() and same_unit(read_file(pending), read_file(other)):
            os.replace(pending, path)
        else:
            pending.unlink()
    sync_dir(folder)


def same_unit(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("run"), a.get("epoch")) == (b.get("run"), b.get("epoch"))


def save_module(
    path: str | os.PathLike[str],
    kind: str,
    module: nn.Module,
    train_config: TrainConfig,
    epoch: int,
    run: str | None = None,
) -> None:
    """Write one encoder or decoder checkpoint atomically; `run` and `epoch` tie a pair together."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": module.config.to_dict(),
        "train_config": train_config.to_dict(),
        "epoch": int(epoch),
        "run": run,
        "state_dict": cpu_state_dict(module),
    }
    write_bytes_atomic(path, serialize(payload))


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of a checkpoint file (see `read_checkpoint`)."""
    return read_checkpoint(path)[0]


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
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')}, this code reads {VERSION}")
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


def build_module(obj: dict[str, Any], path: str | os.PathLike[str], kind: str) -> nn.Module:
    """The Encoder or Decoder (eval mode) a checkpoint payload read from `path` describes."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if obj.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {obj.get('kind')!r} checkpoint, expected {kind!r}")
    try:
        config = VAEConfig.from_dict(obj["config"])
        module = KINDS[kind](config)
        module.load_state_dict(obj["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: cannot rebuild the {kind}: {exc}") from exc
    return module.eval()


@dataclass(frozen=True)
class CheckpointPair:
    """A verified encoder/decoder pair and the sha256 of exactly the bytes each was loaded from."""

    encoder: Encoder
    decoder: Decoder
    sha256: dict[str, str]  # "encoder" / "decoder" -> sha256 of the file's bytes as read
    paths: dict[str, Path]  # the files read (decoder: the pending half when a commit was interrupted)


def load_checkpoints(folder: str | os.PathLike[str]) -> CheckpointPair:
    """Encoder and decoder from FOLDER/encoder.pt and FOLDER/decoder.pt, each file read once and
    checked to be one pair (config, run and epoch)."""
    folder = Path(folder)
    enc_path, dec_path = folder / ENCODER_FILE, folder / DECODER_FILE
    enc, enc_sha = read_checkpoint(enc_path)
    encoder = build_module(enc, enc_path, "encoder")
    dec, dec_sha = read_checkpoint(dec_path)
    if pending_path(dec_path).is_file() and not same_unit(enc, dec):
        # a kill between the two renames of save_pair: the new decoder is whole, still pending
        dec_path = pending_path(dec_path)
        dec, dec_sha = read_checkpoint(dec_path)
    decoder = build_module(dec, dec_path, "decoder")
    if enc["config"] != dec["config"]:
        raise CheckpointError(
            f"encoder and decoder in {folder} have different configs: {enc['config']} vs {dec['config']}"
        )
    if (enc.get("run"), enc.get("epoch")) != (dec.get("run"), dec.get("epoch")):
        raise CheckpointError(
            f"encoder.pt (run {enc.get('run')}, epoch {enc.get('epoch')}) and decoder.pt "
            f"(run {dec.get('run')}, epoch {dec.get('epoch')}) in {folder} are not one pair: a "
            "write was interrupted or files were mixed; resume the training run (--resume) to "
            "write both again, or restore both files"
        )
    return CheckpointPair(
        encoder,
        decoder,
        {"encoder": enc_sha, "decoder": dec_sha},  # type: ignore[arg-type]
        {"encoder": enc_path, "decoder": dec_path},
    )


def load_pair(folder: str | os.PathLike[str]) -> tuple[Encoder, Decoder]:
    """Encoder and decoder from FOLDER/encoder.pt and FOLDER/decoder.pt, checked to match."""
    pair = load_checkpoints(folder)
    return pair.encoder, pair.decoder


def save_train_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the resume state atomically."""
    write_bytes_atomic(path, serialize({"format": FORMAT, "version": VERSION, "kind": "train_state", **state}))


def load_train_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the resume state written by `save_train_state`."""
    obj = read_file(path)
    if obj.get("kind") != "train_state":
        raise CheckpointError(f"{path} is not a training state file")
    return obj

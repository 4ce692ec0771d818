"""The only place that saves and loads checkpoints (format 2: safetensors, no pickle anywhere).

A checkpoint folder holds
  encoder.safetensors, decoder.safetensors   the weights; metadata key "edgevae": JSON with format,
                                             version, kind, config, train_config, epoch and run
  prior.safetensors                          a learned prior's own weights (the VampPrior's pseudo-
                                             inputs, "pseudo_inputs"), same metadata; only for such models
  train_state.safetensors                    resume state: both networks ("encoder.*", "decoder.*"),
                                             the optimizer's tensors ("optimizer.ID.SLOT"); its
                                             metadata adds the optimizer's other values and the history
  checkpoint.sha256                          the sha256 of each of them, in `sha256sum -c` format
Any safetensors reader opens the files; `sha256sum -c checkpoint.sha256` checks them. A load reads
each file once, checks its bytes against the record before parsing them, and names a missing,
damaged or mixed file. A save is one commit (`commit`): the new files are written whole beside the
old ones (.NAME.pending), the record is replaced atomically (the commit point), then the files are
renamed into place; a kill at any moment leaves a folder that loads as the old set or the new one.
Folders of format 1 (.pt) are read through legacy.py for one release; convert.py converts them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from edgevae.runtime.atomic import sync_dir, write_bytes_atomic
from edgevae.runtime.errors import EdgeVAEError

from .config import TrainConfig, VAEConfig
from .model import Decoder, Encoder, make_decoder, make_encoder

FORMAT = "edgevae-checkpoint"
VERSION = 2
ENCODER_FILE = "encoder.safetensors"
DECODER_FILE = "decoder.safetensors"
PRIOR_FILE = "prior.safetensors"
STATE_FILE = "train_state.safetensors"
RECORD_FILE = "checkpoint.sha256"
FILES = (ENCODER_FILE, DECODER_FILE, STATE_FILE)  # every run's
ALL_FILES = (*FILES, PRIOR_FILE)  # and a learned prior's
PRIOR_TENSORS = ("pseudo_inputs",)  # encoder parameters that belong to the prior: saved in PRIOR_FILE
META_KEY = "edgevae"  # one metadata entry of canonical JSON: safetensors writes several in random order
KINDS = {"encoder": make_encoder, "decoder": make_decoder}  # the module `config.block` asks for
RECORD_LINE = re.compile(rb"([0-9a-f]{64})  ([A-Za-z0-9_.-]+)")
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # a torch zip checkpoint, a bare pickle (protocol 2 and up)


class CheckpointError(EdgeVAEError):
    """A checkpoint is missing, corrupt, or not what the caller asked for."""


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the module's parameters and buffers."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def pending_path(path: Path) -> Path:
    """Where a file of a commit waits, whole, until the record names it: .NAME.pending."""
    return path.with_name(f".{path.name}.pending")


def committed_path(path: Path) -> Path:
    """NAME for .NAME.pending: the name the record knows a file by (a load reports the pending path
    when it read the file there, after a kill between a commit's record and its renames)."""
    name = path.name
    if name.startswith(".") and name.endswith(".pending"):
        return path.with_name(name[1 : -len(".pending")])
    return path


def sha256_of(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def encode(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    """A safetensors file: `tensors` and `meta` as canonical JSON (same content, same bytes)."""
    text = json.dumps({"format": FORMAT, "version": VERSION, **meta}, sort_keys=True, separators=(",", ":"))
    return safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {META_KEY: text})


def decode(raw: bytes, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of safetensors bytes. Only safetensors is parsed, never a pickle: bytes that
    are not safetensors but start like a pickle or a torch zip are refused as such."""
    try:
        tensors = safetensors.torch.load(raw)
        size = int.from_bytes(raw[:8], "little")  # the header safetensors just checked: length, then JSON
        meta = json.loads(json.loads(raw[8 : 8 + size])["__metadata__"][META_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError) as exc:
        if raw.startswith(PICKLE_MAGIC):
            raise CheckpointError(
                f"refused checkpoint {path}: it is a pickle or torch .pt file, not safetensors; edgevae reads no "
                "pickle, so nothing in it was run (a format-1 edgevae checkpoint keeps its .pt name: "
                "python -m edgevae.train.convert converts it)"
            ) from None
        raise CheckpointError(
            f"corrupt checkpoint {path}: not an edgevae safetensors file ({type(exc).__name__}: {str(exc)[:160]})"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an edgevae checkpoint (no format={FORMAT!r} in its metadata)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, this code reads {VERSION}")
    return meta, tensors


def render_record(entries: dict[str, str]) -> bytes:
    return b"".join(f"{sha}  {name}\n".encode() for name, sha in sorted(entries.items()))


def read_record(folder: Path) -> dict[str, str]:
    """{file name: sha256} from FOLDER/checkpoint.sha256, which must be exactly as `render_record` writes it."""
    path = folder / RECORD_FILE
    if path.is_dir():
        raise CheckpointError(f"sha256 record {path} is a directory, not a file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"sha256 record {path} not found: the checkpoints beside it cannot be verified") from None
    matches = [RECORD_LINE.fullmatch(line) for line in raw.split(b"\n")[:-1]]
    entries = {m[2].decode(): m[1].decode() for m in matches if m}
    if not raw or None in matches or render_record(entries) != raw:
        raise CheckpointError(
            f"corrupt sha256 record {path}: each line must be '<64 lowercase hex digits>  <file name>', "
            "sorted by name (it was modified or damaged after it was written)"
        )
    return entries


def read_verified(path: str | os.PathLike[str]) -> tuple[bytes, str, Path]:
    """(bytes, their sha256, the file read) of a checkpoint whose bytes match its line in the record.

    After a kill between a commit's record and its renames, the whole new file still waits as
    .NAME.pending; it is read when it, and not NAME, has the recorded sha256 (either path may be given)."""
    path = committed_path(Path(path))
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file() and not pending_path(path).is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    want = read_record(path.parent).get(path.name)
    if want is None:
        raise CheckpointError(f"{path.parent / RECORD_FILE} has no sha256 for {path.name}: it cannot be verified")
    for candidate in (path, pending_path(path)):
        raw = candidate.read_bytes() if candidate.is_file() else None
        if raw is not None and hashlib.sha256(raw).hexdigest() == want:
            return raw, want, candidate
    raise CheckpointError(
        f"corrupt checkpoint {path}: its sha256 is not the {want[:16]}... recorded in {RECORD_FILE} "
        "(the file or the record was modified or damaged after it was written)"
    )


def commit(folder: str | os.PathLike[str], files: dict[str, bytes], drop: tuple[str, ...] = ()) -> None:
    """Replace FOLDER's `files` (name -> bytes), and remove the files named in `drop`, as one unit.

    Each file is first written whole (atomically) as .NAME.pending; then the record, with the new
    sha256s, replaces the old one atomically: the commit point; then the files are renamed into
    place. A kill before the commit point leaves the old set (its pending files are dropped by
    `finish_commit`); a kill after it leaves the new set, read from NAME or .NAME.pending,
    whichever matches the record, until `finish_commit` renames the rest.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_bytes_atomic(pending_path(folder / name), data)
    try:
        entries = read_record(folder) if (folder / RECORD_FILE).exists() else {}
    except CheckpointError:  # a damaged record: the files it named are refused until written again
        entries = {}
    entries.update({name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    for name in drop:
        entries.pop(name, None)
    write_bytes_atomic(folder / RECORD_FILE, render_record(entries))
    for name in files:
        os.replace(pending_path(folder / name), folder / name)
    for name in drop:  # out of the record already: a kill here leaves a file nothing reads
        (folder / name).unlink(missing_ok=True)
    sync_dir(folder)


def finish_commit(folder: str | os.PathLike[str]) -> None:
    """Rename the pending files of a commit a kill interrupted after its commit point; drop those of
    a commit that never reached it. With an unreadable record, pending files are left alone."""
    folder = Path(folder)
    try:
        entries = read_record(folder) if (folder / RECORD_FILE).exists() else {}
    except CheckpointError:
        return
    for name in ALL_FILES:
        pending = pending_path(folder / name)
        if not pending.is_file():
            continue
        want = entries.get(name)
        if want is not None and sha256_of(pending) == want and sha256_of(folder / name) != want:
            os.replace(pending, folder / name)
        else:
            pending.unlink()
    sync_dir(folder)


def module_bytes(kind: str, module: nn.Module, train_config: TrainConfig, epoch: int, run: str | None) -> bytes:
    """An encoder, decoder or prior file; `run` and `epoch` tie them together. An encoder's file leaves out
    the prior's tensors; kind "prior" holds only them."""
    meta = {
        "kind": kind,
        "config": module.config.to_dict(),
        "train_config": train_config.to_dict(),
        "epoch": int(epoch),
        "run": run,
    }
    tensors = cpu_state_dict(module)
    if kind == "prior":
        return encode({k: v for k, v in tensors.items() if k in PRIOR_TENSORS}, meta)
    return encode({k: v for k, v in tensors.items() if k not in PRIOR_TENSORS}, meta)


def module_files(
    kind: str, module: nn.Module, train_config: TrainConfig, epoch: int, run: str | None
) -> dict[str, bytes]:
    """{file name: bytes} for one module: an encoder with a learned prior is two files (encoder, prior)."""
    files = {f"{kind}.safetensors": module_bytes(kind, module, train_config, epoch, run)}
    if kind == "encoder" and any(hasattr(module, name) for name in PRIOR_TENSORS):
        files[PRIOR_FILE] = module_bytes("prior", module, train_config, epoch, run)
    return files


def state_bytes(state: dict[str, Any]) -> bytes:
    """The resume state file: keys epoch, train_config, encoder, decoder (state dicts), optimizer
    (torch's optimizer state dict), history, run."""
    tensors = {f"{net}.{k}": v for net in ("encoder", "decoder") for k, v in state[net].items()}
    values: dict[str, dict[str, Any]] = {}
    for pid, slots in state["optimizer"]["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{slot}"] = value
            else:
                values.setdefault(str(pid), {})[slot] = value
    meta = {k: state.get(k) for k in ("epoch", "train_config", "history", "run")}
    meta.update(kind="train_state", param_groups=state["optimizer"]["param_groups"], optimizer_values=values)
    return encode(tensors, meta)


def unpack_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The dict `state_bytes` was given, from a decoded resume state file (KeyError/ValueError when malformed)."""
    state = {k: meta[k] for k in ("epoch", "train_config", "history", "run")}
    state.update(kind=meta["kind"], encoder={}, decoder={})
    opt: dict[int, dict[str, Any]] = {int(p): dict(v) for p, v in meta["optimizer_values"].items()}
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        if head == "optimizer":
            pid, _, slot = rest.partition(".")
            opt.setdefault(int(pid), {})[slot] = value
        else:
            state[head][rest] = value
    state["optimizer"] = {"state": dict(sorted(opt.items())), "param_groups": meta["param_groups"]}
    return state


def save_module(
    path: str | os.PathLike[str],
    kind: str,
    module: nn.Module,
    train_config: TrainConfig,
    epoch: int,
    run: str | None = None,
) -> None:
    """Write one encoder (with its prior file, if it has a learned prior) or decoder checkpoint, and
    their lines in the record, as one commit."""
    path = Path(path)
    if path.name != f"{kind}.safetensors":
        raise ValueError(f"a {kind} checkpoint is named {kind}.safetensors, got {path.name}")
    commit(path.parent, module_files(kind, module, train_config, epoch, run))


def save_pair(
    folder: str | os.PathLike[str],
    encoder: nn.Module,
    decoder: nn.Module,
    train_config: TrainConfig,
    epoch: int,
    run: str | None,
    state: dict[str, Any] | None = None,
) -> None:
    """Replace FOLDER's encoder (and its prior file) and decoder, and with `state` the resume state too,
    as one commit; a prior file of an earlier run goes with it when this encoder has none (--overwrite)."""
    files = module_files("encoder", encoder, train_config, epoch, run)
    files.update(module_files("decoder", decoder, train_config, epoch, run))
    if state is not None:
        files[STATE_FILE] = state_bytes(state)
    commit(folder, files, drop=() if PRIOR_FILE in files else (PRIOR_FILE,))


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified payload of one file: the metadata plus "state_dict" (encoder, decoder), or the
    resume state (see `state_bytes`). A .pt path is read through the format-1 reader."""
    path = Path(path)
    if path.suffix == ".pt":
        from . import legacy

        return legacy.read_checkpoint(path)[0]
    raw, _, read = read_verified(path)
    meta, tensors = decode(raw, read)
    if meta.get("kind") == "train_state":
        try:
            return unpack_state(meta, tensors)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"corrupt checkpoint {read}: malformed resume state ({exc!r})") from exc
    return {**meta, "state_dict": tensors}


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
    sha256: dict[str, str]  # "encoder" / "decoder" (/ "prior") -> sha256 of the file's bytes as read (its record line)
    paths: dict[str, Path]  # the files read (a pending one when a commit was interrupted)


def read_pair(folder: Path) -> list[tuple[dict[str, Any], str, Path]]:
    """[(payload, sha256, path)] of FOLDER's encoder and decoder, and of its prior file when the
    encoder's config has a learned prior, each file read once; a folder holding only format-1 files
    goes through the .pt reader, with a note to convert it."""
    from . import legacy

    if not (folder / RECORD_FILE).exists() and not (folder / ENCODER_FILE).exists() and legacy.holds_legacy(folder):
        legacy.note(folder)
        return legacy.read_pair(folder)
    read = [read_payload(folder / ENCODER_FILE), read_payload(folder / DECODER_FILE)]
    if read[0][0].get("config", {}).get("prior", "standard") != "standard":
        read.append(read_payload(folder / PRIOR_FILE))
    return read


def read_payload(path: Path) -> tuple[dict[str, Any], str, Path]:
    """(metadata plus "state_dict", sha256, the file read) of one verified checkpoint file."""
    raw, digest, read = read_verified(path)
    meta, tensors = decode(raw, read)
    return {**meta, "state_dict": tensors}, digest, read


def same_run(folder: Path, first: tuple[dict[str, Any], str, Path], other: tuple[dict[str, Any], str, Path]) -> None:
    """CheckpointError unless two files of FOLDER have one config, run and epoch."""
    (a, _, a_path), (b, _, b_path) = first, other
    if a["config"] != b["config"]:
        raise CheckpointError(
            f"{a_path.name} and {b_path.name} in {folder} have different configs: {a['config']} vs {b['config']}"
        )
    if (a.get("run"), a.get("epoch")) != (b.get("run"), b.get("epoch")):
        raise CheckpointError(
            f"{a_path.name} (run {a.get('run')}, epoch {a.get('epoch')}) and {b_path.name} "
            f"(run {b.get('run')}, epoch {b.get('epoch')}) in {folder} are not one pair: files were "
            "mixed; resume the training run (--resume) to write them again, or restore them together"
        )


def check_one_pair(folder: Path, read: list[tuple[dict[str, Any], str, Path]]) -> tuple[nn.Module, nn.Module]:
    """The encoder (with its prior file's tensors) and decoder `read_pair` read, rebuilt; CheckpointError
    unless they are one pair: each the kind its name says, one config, one run and epoch."""
    enc, enc_sha, enc_path = read[0]
    for other in read[1:]:
        same_run(folder, read[0], other)
    if len(read) > 2:
        prior, _, prior_path = read[2]
        if prior.get("kind") != "prior":
            raise CheckpointError(f"{prior_path} holds a {prior.get('kind')!r} checkpoint, expected 'prior'")
        if sorted(prior["state_dict"]) != sorted(PRIOR_TENSORS):
            raise CheckpointError(
                f"corrupt checkpoint {prior_path}: it holds {sorted(prior['state_dict'])}, "
                f"expected {list(PRIOR_TENSORS)}"
            )
        enc = {**enc, "state_dict": {**enc["state_dict"], **prior["state_dict"]}}
    return build_module(enc, enc_path, "encoder"), build_module(read[1][0], read[1][2], "decoder")


def load_checkpoints(folder: str | os.PathLike[str]) -> CheckpointPair:
    """Encoder (with its prior) and decoder from FOLDER, verified and checked to be one pair (config, run
    and epoch)."""
    folder = Path(folder)
    read = read_pair(folder)
    encoder, decoder = check_one_pair(folder, read)
    kinds = ("encoder", "decoder", "prior")[: len(read)]
    return CheckpointPair(
        encoder,
        decoder,
        {kind: sha for kind, (_, sha, _) in zip(kinds, read, strict=True)},
        {kind: path for kind, (_, _, path) in zip(kinds, read, strict=True)},
    )


def load_pair(folder: str | os.PathLike[str]) -> tuple[Encoder, Decoder]:
    """Encoder and decoder from FOLDER, verified and checked to match."""
    pair = load_checkpoints(folder)
    return pair.encoder, pair.decoder


def load_train_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the resume state written by `save_pair(..., state=...)` (a .pt path: the format-1 reader)."""
    obj = read_file(path)
    if obj.get("kind") != "train_state":
        raise CheckpointError(f"{path} is not a training state file")
    return obj

"""Convert format-1 checkpoints (.pt, torch zip) to format 2 (safetensors and a sha256 record).

    python -m edgevae.train.convert artifacts/checkpoints          # in place; the .pt files go
    python -m edgevae.train.convert OLD_DIR --out NEW_DIR          # OLD_DIR stays as it is
    python -m edgevae.train.convert OLD_DIR --keep                 # in place, keeping the .pt files

Reads encoder.pt and decoder.pt, and train_state.pt when present, through the checked format-1
reader (CRC-32 and zip layout, then weights_only: no pickled code runs), checks they are one pair,
writes encoder.safetensors, decoder.safetensors, train_state.safetensors and checkpoint.sha256 as one
commit, reads them back through the format-2 reader, checks every tensor and value equal to what the
.pt files held, and only then removes the .pt files (in place, without --keep). The same .pt files
always give the same bytes. This release still reads .pt folders (with a note); the next one will not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgevae.runtime import __version__
from edgevae.runtime.devices import add_device_argument
from edgevae.runtime.errors import run_cli

from . import require_torch


def same(a: Any, b: Any) -> bool:
    """Equal values: tensors by dtype, shape and every element; containers item by item (a tuple
    equals the list JSON makes of it); numbers and strings as they are."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return json.dumps(a) == json.dumps(b)


def module_meta(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload.get(k) for k in ("kind", "config", "train_config", "epoch", "run")}


def convert_folder(folder: str | Path, out: str | Path | None = None, keep: bool = False) -> list[str]:
    """Convert FOLDER's format-1 checkpoints into OUT (default: FOLDER); returns the files written.
    CheckpointError when FOLDER holds none, when they are damaged or not one pair, or when the
    written files do not read back equal (then no .pt file is removed)."""
    from . import checkpoint, legacy

    src = Path(folder)
    dst = Path(out) if out is not None else src
    if not legacy.holds_legacy(src):
        raise checkpoint.CheckpointError(f"{src} holds no format-1 checkpoints ({', '.join(legacy.FILES[:2])})")
    read = legacy.read_pair(src)
    checkpoint.check_one_pair(src, read)
    payloads: dict[str, dict[str, Any]] = {}
    files: dict[str, bytes] = {}
    for (payload, _, _), name in zip(read, (checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE), strict=True):
        payloads[name] = {**module_meta(payload), "state_dict": payload["state_dict"]}
        files[name] = checkpoint.encode(payload["state_dict"], module_meta(payload))
    if (src / legacy.STATE_FILE).exists():
        state = legacy.read_checkpoint(src / legacy.STATE_FILE)[0]
        payloads[checkpoint.STATE_FILE] = state
        files[checkpoint.STATE_FILE] = checkpoint.state_bytes(state)
    checkpoint.commit(dst, files)
    for name, payload in payloads.items():
        back = checkpoint.read_file(dst / name)
        if not same(without_format(payload), without_format(back)):
            raise checkpoint.CheckpointError(f"{dst / name} does not read back equal to the .pt it came from")
    if dst.resolve() == src.resolve() and not keep:
        for name in legacy.FILES:
            (src / name).unlink(missing_ok=True)
            checkpoint.pending_path(src / name).unlink(missing_ok=True)
    return [*files, checkpoint.RECORD_FILE]


def without_format(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("format", "version")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgevae.train.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"edgevae {__version__}")
    p.add_argument("folder", help="a folder holding encoder.pt and decoder.pt (and train_state.pt)")
    p.add_argument("--out", default=None, help="write the converted files here (default: FOLDER)")
    p.add_argument("--keep", action="store_true", help="converting in place, keep the .pt files")
    add_device_argument(p, "accepted like every edgevae CLI; conversion copies tensors on the CPU (default: auto)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def run(args: argparse.Namespace) -> int:
    require_torch("checkpoint conversion", ("torch", "safetensors"))
    written = convert_folder(args.folder, args.out, args.keep)
    out = args.out or args.folder
    kept = "kept" if args.keep or args.out else "removed"
    print(f"wrote {', '.join(written)} in {out}: every tensor and value equal to the .pt files ({kept})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), "python -m edgevae.train.convert", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())

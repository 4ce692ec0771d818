"""The manifest of a model folder: reading it, checking its format and config, and sealing it.

manifest.json lists every file of a model folder with its sha256 and size, the model config, the
variants and their costs. It carries its own sha256 (`manifest_sha256`) over its canonical JSON,
so a changed byte that still parses is detected like a damaged graph. Export writes it with
`seal_manifest`; the runtime reads it with `read_manifest` (files.py checks the files it lists).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import contract
from .errors import ModelError
from .limits import MAX_MANIFEST_BYTES

MANIFEST_CHECKSUM = "manifest_sha256"


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces), its own checksum left out."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def manifest_is_intact(manifest: dict[str, Any], raw: bytes | None = None) -> bool:
    """True when the manifest carries no checksum or matches it; with `raw` (the file's bytes), those
    bytes must also be exactly what export writes for these values: a changed byte can still parse
    to the same values (a float's 17th digit), which the checksum of the values cannot see."""
    if MANIFEST_CHECKSUM not in manifest:
        return True
    body = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    return manifest[MANIFEST_CHECKSUM] == manifest_digest(manifest) and (raw is None or raw == seal_manifest(body))


def seal_manifest(manifest: dict[str, Any]) -> bytes:
    """The manifest as written: indented JSON carrying its own checksum, so a damaged manifest (a
    changed byte that still parses) is detected like any other file. It guards against damage, not
    against someone who rewrites the checksum too; the self-test guards the graphs' behaviour."""
    sealed = {**manifest, MANIFEST_CHECKSUM: manifest_digest(manifest)}
    return (json.dumps(sealed, indent=2, sort_keys=True) + "\n").encode()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / contract.MANIFEST_FILE
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"model folder {folder} is a file, not a folder; give the folder that holds {path.name}")
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    check_inside(folder, path)
    if path.is_dir():
        raise ModelError(f"model file {path} is a directory, expected the manifest")
    if not path.is_file():
        raise ModelError(f"model folder {folder} has no {contract.MANIFEST_FILE}; export one with `make export`")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ModelError(
            f"corrupt manifest {path}: {size:,} bytes, where a manifest is at most {MAX_MANIFEST_BYTES:,}; "
            "refused before reading it"
        )
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"corrupt manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != contract.MANIFEST_FORMAT:
        raise ModelError(f"{path} is not an edgevae manifest (format != {contract.MANIFEST_FORMAT!r})")
    if not manifest_is_intact(manifest, raw):
        raise ModelError(
            f"corrupt manifest {path}: its content does not match its own sha256 "
            "(the file was modified or damaged after export)"
        )
    if manifest.get("version") != contract.MANIFEST_VERSION:
        raise ModelError(
            f"{path} has manifest version {manifest.get('version')}; this runtime reads {contract.MANIFEST_VERSION}"
        )
    for key in ("config", "files"):
        if not isinstance(manifest.get(key), dict):
            raise ModelError(f"corrupt manifest {path}: no {key!r} section")
    check_config(manifest["config"], path)
    return manifest


def check_config(config: dict[str, Any], path: Path) -> None:
    """ModelError unless the manifest's model config has what the runtime reads, well-formed."""
    shape = config.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ModelError(
            f"corrupt manifest {path}: config.image_shape must be [height, width] (positive ints); got {shape!r}"
        )
    latent = config.get("latent")
    if not (isinstance(latent, int) and not isinstance(latent, bool) and latent > 0):
        raise ModelError(f"corrupt manifest {path}: config.latent must be a positive int; got {latent!r}")
    if config.get("likelihood", "bernoulli") not in contract.LIKELIHOODS:
        raise ModelError(
            f"corrupt manifest {path}: config.likelihood must be one of {', '.join(contract.LIKELIHOODS)}; "
            f"got {config.get('likelihood')!r}"
        )
    channels = config.get("channels", contract.CHANNELS_DEFAULT)
    if not (isinstance(channels, int) and not isinstance(channels, bool) and channels in (1, 3)):
        raise ModelError(f"corrupt manifest {path}: config.channels must be 1 (grey) or 3 (RGB); got {channels!r}")


def check_inside(folder: Path, path: Path) -> None:
    """ModelError when `path` is a link that leads out of the model folder."""
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise ModelError(f"model file {path} is a link to {path.resolve()}, outside the model folder; refused")

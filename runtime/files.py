"""Finding and verifying a model folder: every file it lists, checked against the manifest's sha256.

A model folder holds the graphs of one or more variants, their manifest and side files (golden
vectors, score statistics). It is found from the folder argument, else a packaged model's name
(argument, else $EDGEVAE_MODEL), else $EDGEVAE_MODEL_DIR, else the `default` model shipped inside
this package. Every file's bytes are checked against the manifest's sha256 and size before
onnxruntime sees them, so a missing, truncated or tampered file is reported by name. The variant
asked for is looked up here, once, and travels on as the contract's `Variant` (ModelFiles.spec).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import contract
from .devices import AUTO, CPU_DEVICE, CUDA_DEVICE, check_device
from .errors import DeviceError, ModelError
from .limits import MAX_GRAPH_BYTES, MAX_SIDE_FILE_BYTES
from .manifest import check_inside, manifest_is_intact, read_manifest

MODEL_DIR_ENV = "EDGEVAE_MODEL_DIR"
MODEL_NAME_ENV = "EDGEVAE_MODEL"
DEFAULT_MODEL = "default"


def packaged_models_dir() -> Path:
    return Path(str(resources.files("edgevae.runtime") / "models"))


def list_packaged_models() -> list[str]:
    """Names of the models shipped inside this package (folders with a manifest), sorted."""
    root = packaged_models_dir()
    return sorted(p.name for p in root.iterdir() if (p / contract.MANIFEST_FILE).is_file()) if root.is_dir() else []


def find_model_dir(model_dir: str | os.PathLike[str] | None = None, name: str | None = None) -> Path:
    """The folder argument, else the packaged model `name` (else $EDGEVAE_MODEL), else
    $EDGEVAE_MODEL_DIR, else the packaged `default` model."""
    if model_dir is not None and name is not None:
        raise ValueError(f"give a model folder or a packaged model's name, not both (got {model_dir!r} and {name!r})")
    if model_dir is not None:
        return Path(model_dir).expanduser()
    name = name if name is not None else os.environ.get(MODEL_NAME_ENV) or None
    if name is None:
        env = os.environ.get(MODEL_DIR_ENV)
        if env:
            return Path(env).expanduser()
        name = DEFAULT_MODEL
    available = list_packaged_models()
    if name not in available:
        raise ModelError(
            f"no packaged model named {name!r}; this edgevae ships {', '.join(available) or 'none'} "
            "(a model folder of your own goes to --model / model_dir)"
        )
    return packaged_models_dir() / name


def manifest_variants(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's variants (name -> files, batch, size, cost); an older manifest has fp32 only."""
    found = manifest.get("variants")
    return found if isinstance(found, dict) and found else {contract.DEFAULT_VARIANT: {}}


def lookup_variant(name: str, folder: Path) -> contract.Variant:
    """The contract's Variant called `name`; a ModelError when this runtime does not know it."""
    if name not in contract.VARIANTS:
        raise ModelError(
            f"variant {name!r} in {folder} is unknown to this runtime (it knows {', '.join(contract.VARIANTS)}); "
            "upgrade edgevae"
        )
    return contract.VARIANTS[name]


@dataclass(frozen=True)
class ModelFiles:
    """A verified model folder: the manifest, the graphs of one variant, the other listed files."""

    folder: Path
    manifest: dict[str, Any]
    graphs: dict[str, bytes] = field(repr=False)  # graph name ("encoder", "decoder") -> verified bytes
    extras: dict[str, bytes] = field(default_factory=dict, repr=False)  # other listed file -> verified bytes
    variant: str = contract.DEFAULT_VARIANT  # the name of the variant `graphs` holds
    spec: contract.Variant = field(init=False, repr=False)  # ... and its description, looked up once

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", lookup_variant(self.variant, self.folder))

    @property
    def blobs(self) -> dict[str, bytes]:
        """The graphs' bytes under their 0.1.0 name (`graphs`)."""
        return self.graphs

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        """The manifest's variants (name -> files, batch, size, cost); an older manifest has fp32 only."""
        return manifest_variants(self.manifest)

    @property
    def fixed_batch(self) -> int | None:
        """The graphs' fixed batch size, or None for the dynamic batch axis."""
        return self.spec.batch

    @property
    def devices(self) -> tuple[str, ...]:
        """The devices the loaded variant is for: the manifest's record, else the contract's (an
        export older than that record)."""
        found = self.variants.get(self.variant, {}).get("devices")
        if found is None:
            return self.spec.devices
        known = (CPU_DEVICE, CUDA_DEVICE)
        if not (isinstance(found, list) and found and all(d in known for d in found)):
            raise ModelError(
                f"corrupt manifest in {self.folder}: variants.{self.variant}.devices must be a non-empty "
                f"list of {', '.join(known)}; got {found!r}"
            )
        return tuple(found)

    def session_device(self, device: str) -> str:
        """`device` ("auto", "cpu" or "cuda") kept within the variant's devices, before any session
        starts: "auto" without CUDA among them is "cpu"; a device left out is a DeviceError saying why."""
        device = check_device(device)
        allowed = self.devices
        if device == AUTO:
            return AUTO if CUDA_DEVICE in allowed else allowed[0]
        if device not in allowed:
            why = self.variants.get(self.variant, {}).get("not_for") or self.spec.not_for
            raise DeviceError(
                f"variant {self.variant!r} is not for device {device!r} (it runs on {', '.join(allowed)})"
                + (f": {why}" if why else "")
            )
        return device

    def extra(self, name: str, purpose: str) -> bytes:
        """The verified bytes of a listed non-graph file, or a ModelError saying how to get it."""
        if name not in self.extras:
            raise ModelError(
                f"model folder {self.folder} has no {name} (needed for {purpose}); "
                "re-export it with this version: make export"
            )
        return self.extras[name]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def latent(self) -> int:
        return int(self.config["latent"])

    @property
    def image_shape(self) -> tuple[int, int]:
        h, w = self.config["image_shape"]
        return int(h), int(w)


def read_verified(folder: Path, name: str, entry: Any) -> bytes:
    """The bytes of a manifest-listed file, checked against its sha256 and size."""
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise ModelError(f"manifest in {folder} has no sha256 for {name}")
    if Path(name).name != name or name in (".", ".."):
        raise ModelError(f"manifest in {folder} lists {name!r}, which is not a plain file name in the folder")
    path = folder / name
    check_inside(folder, path)
    if path.is_dir():
        raise ModelError(f"model file {path} is a directory, expected a file")
    if not path.is_file():
        raise ModelError(f"model file {path} is missing")
    want = entry.get("size")
    limit = MAX_GRAPH_BYTES if "graph" in entry else MAX_SIDE_FILE_BYTES
    if isinstance(want, bool) or not isinstance(want, int) or not 0 <= want <= limit:
        raise ModelError(f"manifest in {folder} gives {name} a size of {want!r}; expected an int from 0 to {limit:,}")
    size = path.stat().st_size
    if size != want:  # checked before reading: a forged or damaged file costs no memory
        what = "truncated" if size < want else "larger than exported"
        raise ModelError(f"model file {path} is corrupt ({what}): {size:,} bytes; manifest expects {want:,}")
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != entry["sha256"]:
        raise ModelError(
            f"model file {path} is corrupt (modified): sha256 {digest[:16]}..., "
            f"size {len(blob)}; manifest expects {entry['sha256'][:16]}..., size {want}"
        )
    return blob


def load_model_files(
    model_dir: str | os.PathLike[str] | None = None, variant: str = contract.DEFAULT_VARIANT, name: str | None = None
) -> ModelFiles:
    """Read and verify a model folder (see `find_model_dir`): sha256 and size of the variant's graphs
    and of every other (non-graph) file the manifest lists, and the graphs' signatures against the
    contract."""
    folder = find_model_dir(model_dir, name)
    manifest = read_manifest(folder)
    present = manifest_variants(manifest)
    if variant not in present:
        raise ValueError(f"variant {variant!r} is not in {folder}; variants there: {', '.join(sorted(present))}")
    spec = lookup_variant(variant, folder)
    graphs = {
        graph: read_graph(folder, manifest, spec.file(graph), graph_spec)
        for graph, graph_spec in contract.graphs_for(manifest["config"].get("likelihood")).items()
    }
    extras = {
        name: read_verified(folder, name, entry)
        for name, entry in manifest["files"].items()
        if not (isinstance(entry, dict) and "graph" in entry)
    }
    return ModelFiles(folder, manifest, graphs, extras, variant)


def read_graph(folder: Path, manifest: dict[str, Any], name: str, spec: contract.GraphSpec) -> bytes:
    """The verified bytes of graph file `name`, whose manifest entry must name the contract's tensors."""
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict):
        raise ModelError(f"manifest in {folder} does not list {name}")
    blob = read_verified(folder, name, entry)
    names = ([t["name"] for t in entry.get("inputs", [])], [t["name"] for t in entry.get("outputs", [])])
    if names != (spec.input_names, spec.output_names):
        raise ModelError(
            f"{folder / name}: manifest signature {names} differs from this runtime's "
            f"contract {(spec.input_names, spec.output_names)}"
        )
    return blob


def verify_model_files(files: ModelFiles) -> None:
    """ModelError unless in-memory model files still match their manifest: the manifest's own
    sha256, and every file's (used when a pickled VAE is rebuilt in another process)."""
    manifest = files.manifest
    if not manifest_is_intact(manifest):
        raise ModelError(f"the manifest of {files.folder} carried with this VAE does not match its own sha256")
    named = {files.spec.file(g): b for g, b in files.graphs.items()} | dict(files.extras)
    for name, blob in named.items():
        entry = manifest.get("files", {}).get(name)
        if not isinstance(entry, dict) or hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
            raise ModelError(
                f"{name} carried with this VAE does not match the sha256 in its manifest "
                f"({files.folder}); it was modified in transit"
            )

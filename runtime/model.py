"""Loading a model folder: manifest check, metadata, one ONNX Runtime session per graph.

A model folder holds encoder.onnx, decoder.onnx and manifest.json. It is found from the
folder argument, else a packaged model's name (argument, else $EDGEVAE_MODEL), else
$EDGEVAE_MODEL_DIR, else the `default` model shipped inside this package. Every
file's bytes are checked against the manifest's sha256 before onnxruntime sees them, so a
missing, truncated or tampered file is reported by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import onnxruntime as ort

from . import contract
from .devices import AUTO, CPU_DEVICE, CUDA_DEVICE, PROVIDERS, check_device, resolve_device
from .errors import DeviceError, ModelError, RunError
from .limits import MAX_GRAPH_BYTES, MAX_MANIFEST_BYTES, MAX_SIDE_FILE_BYTES, check_int

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "EDGEVAE_MODEL_DIR"
MODEL_NAME_ENV = "EDGEVAE_MODEL"
DEFAULT_MODEL = "default"
_state = ort.capi.onnxruntime_pybind11_state
# onnxruntime's own errors (Fail, RuntimeException, EPFail, InvalidGraph, ...) are plain Exception
# subclasses defined in its pybind module, not RuntimeError: every one of them, whatever the release.
ORT_ERRORS: tuple[type[BaseException], ...] = (RuntimeError,) + tuple(
    v for v in vars(_state).values() if isinstance(v, type) and issubclass(v, Exception)
)
CPU, CUDA = PROVIDERS[CPU_DEVICE], PROVIDERS[CUDA_DEVICE]
# onnxruntime's CUDA provider runs float GEMMs in TF32 by default (10-bit mantissa), which breaks
# fp32 parity with PyTorch by ~1e-3; the graphs are tiny, so exact fp32 costs nothing noticeable.
# (The option exists from onnxruntime-gpu 1.17 on, hence the gpu extra's floor.)
CUDA_OPTIONS = {"use_tf32": "0"}
# More intra-op threads than this only slows these graphs and can exhaust memory (1000 threads took
# 43 s to start); the bound is generous for machines with SMT.
MAX_THREADS = 4 * (os.cpu_count() or 1)


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


@dataclass(frozen=True)
class ModelFiles:
    """A verified model folder: the manifest, each graph's bytes, and the model config."""

    folder: Path
    manifest: dict[str, Any]
    blobs: dict[str, bytes] = field(repr=False)  # graph name ("encoder", "decoder") -> verified bytes
    extras: dict[str, bytes] = field(default_factory=dict, repr=False)  # other listed file -> verified bytes
    variant: str = contract.DEFAULT_VARIANT  # which build of the graphs `blobs` holds

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        """The manifest's variants (name -> files, batch, size, cost); an older manifest has fp32 only."""
        found = self.manifest.get("variants")
        return found if isinstance(found, dict) and found else {contract.DEFAULT_VARIANT: {}}

    @property
    def spec(self) -> contract.Variant:
        """The contract's description of the loaded variant."""
        return contract.VARIANTS[self.variant]

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
    present = ModelFiles(folder, manifest, {}).variants
    if variant not in present:
        raise ValueError(f"variant {variant!r} is not in {folder}; variants there: {', '.join(sorted(present))}")
    if variant not in contract.VARIANTS:
        raise ModelError(
            f"variant {variant!r} in {folder} is unknown to this runtime "
            f"(it knows {', '.join(contract.VARIANTS)}); upgrade edgevae"
        )
    blobs = {}
    for graph, spec in contract.graphs_for(manifest["config"].get("likelihood")).items():
        name = contract.VARIANTS[variant].file(graph)
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
        blobs[graph] = blob
    extras = {
        name: read_verified(folder, name, entry)
        for name, entry in manifest["files"].items()
        if not (isinstance(entry, dict) and "graph" in entry)
    }
    return ModelFiles(folder, manifest, blobs, extras, variant)


def verify_model_files(files: ModelFiles) -> None:
    """ModelError unless in-memory model files still match their manifest: the manifest's own
    sha256, and every blob's (used when a pickled VAE is rebuilt in another process)."""
    manifest = files.manifest
    if not manifest_is_intact(manifest):
        raise ModelError(f"the manifest of {files.folder} carried with this VAE does not match its own sha256")
    named = {contract.VARIANTS[files.variant].file(g): b for g, b in files.blobs.items()} | dict(files.extras)
    for name, blob in named.items():
        entry = manifest.get("files", {}).get(name)
        if not isinstance(entry, dict) or hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
            raise ModelError(
                f"{name} carried with this VAE does not match the sha256 in its manifest "
                f"({files.folder}); it was modified in transit"
            )


def resolve_providers(device: str) -> list[str]:
    """Providers to ask for: 'auto' = CUDA when available else CPU; 'cuda' must be available."""
    available = ort.get_available_providers()
    missing = f"onnxruntime {ort.__version__} has no {CUDA} (it lists {', '.join(available)})"
    if resolve_device(device, CUDA in available, missing, "install edgevae[gpu] on a machine with CUDA") == CUDA_DEVICE:
        return [CUDA, CPU]
    return [CPU]


def make_session_options(
    threads: int | None = None, optimization_level: str | None = None, options: ort.SessionOptions | None = None
) -> ort.SessionOptions:
    """SessionOptions with intra-op threads and graph optimization level ('disable', 'basic',
    'extended', 'all') applied on top of `options`."""
    opts = options or ort.SessionOptions()
    if threads is not None:  # 0: onnxruntime's default; at most 4 per core
        opts.intra_op_num_threads = check_int(threads, "threads", minimum=0, maximum=MAX_THREADS)
    if optimization_level is not None:
        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if optimization_level not in levels:
            raise ValueError(f"optimization_level must be one of {sorted(levels)}, got {optimization_level!r}")
        opts.graph_optimization_level = levels[optimization_level]
    return opts


Runner = Callable[[list[str], dict[str, Any]], list[Any]]


def make_runner(session: ort.InferenceSession, name: str = "graph") -> Runner:
    """A fast `session.run(names, feeds)` whose onnxruntime failures are `RunError`s naming the graph
    (`name`), the provider and the cause.

    InferenceSession.run re-validates the feed's names against the graph through several pybind
    property reads on every call, which costs about as much as running these small graphs at batch 1
    (15 us of 30 on this CPU). The runtime checks every feed itself, and the session's inputs
    against the contract at load, so it calls the session's compiled `run` directly when this
    onnxruntime has it (all 1.x releases), else the public method.
    """
    inner = getattr(session, "_sess", None)
    if inner is not None and callable(getattr(inner, "run", None)):
        call: Runner = lambda names, feeds: inner.run(names, feeds, None)  # noqa: E731
    else:
        call = session.run
    provider = session.get_providers()[0]

    def run(names: list[str], feeds: dict[str, Any]) -> list[Any]:
        try:
            return call(names, feeds)
        except ORT_ERRORS as exc:
            raise run_error(name, provider, exc) from exc

    return run


def run_error(name: str, provider: str, exc: BaseException) -> RunError:
    """One line naming the graph, the provider and onnxruntime's cause; after a CUDA failure, that the
    process's CUDA context may be unusable (every later CUDA session in it can fail to start)."""
    cause = " ".join(str(exc).split())[:300] or type(exc).__name__
    message = f"onnxruntime failed running {name} on {provider}: {cause}"
    if provider == CUDA:
        message += "; this process's CUDA context may now be unusable: start a new process"
    return RunError(message)


def check_session_signature(
    session: ort.InferenceSession, spec: contract.GraphSpec, sizes: dict[str, int], batch: int | None, name: str
) -> None:
    """ModelError unless the session's inputs and outputs are the contract's: names, dtypes, ranks,
    fixed axes (from the manifest config) and the batch axis (dynamic, or the variant's fixed size)."""
    dtypes = {v: k for k, v in contract.ORT_TYPES.items()}
    for kind, got in (("input", session.get_inputs()), ("output", session.get_outputs())):
        found = [
            (t.name, dtypes.get(t.type, t.type), [None if isinstance(d, str) or d is None else int(d) for d in t.shape])
            for t in got
        ]
        expected = spec.signature(kind, sizes, batch)
        if found != expected:
            raise ModelError(
                f"{name}: graph {kind}s {found} do not match this runtime's contract and the "
                f"manifest's config {expected} (None = the dynamic batch axis)"
            )


def start_session(blob: bytes, name: str, device: str, options: ort.SessionOptions) -> ort.InferenceSession:
    """A session on the resolved providers, re-checked after start (CUDA may fail to load)."""
    providers = resolve_providers(device)
    try:
        with_options = [(p, CUDA_OPTIONS) if p == CUDA else p for p in providers]
        session = ort.InferenceSession(blob, sess_options=options, providers=with_options)
    except ORT_ERRORS as exc:
        raise ModelError(f"onnxruntime could not load {name}: {str(exc)[:300]}") from exc
    active = session.get_providers()
    if providers[0] == CUDA and active[0] != CUDA:
        if device == CUDA_DEVICE:
            raise DeviceError(
                f"device='cuda': {CUDA} is listed by onnxruntime but did not load for {name} "
                f"(session runs on {active}); check the CUDA and cuDNN libraries "
                "(onnxruntime.preload_dlls())"
            )
        logger.warning("CUDA provider failed to load for %s; using %s", name, active)
    return session

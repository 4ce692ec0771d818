"""torch.onnx.export of the encoder and decoder, with metadata, checks and a manifest.

`build_graphs` traces both checkpoints into checked, serialized graphs in memory; `build_manifest`
records files, checksums, signatures, variants and parity figures; `export_model` builds and checks
everything, then writes every file atomically under a folder lock, the manifest last. Validation
against PyTorch lives in validate.py; export_model runs it between building and writing, so a graph
that fails it is never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from edgevae.runtime import contract
from edgevae.runtime.atomic import remove_stale_temps, write_bytes_atomic
from edgevae.runtime.errors import EdgeVAEError
from edgevae.train import checkpoint
from edgevae.train.config import VAEConfig

from .graphs import DecoderGraph, EncoderGraph
from .variants import has_convolutions, nll_budget


class ExportError(EdgeVAEError):
    """An exported graph breaks the contract (names, random ops, checker, IR version)."""


def project_versions() -> dict[str, str]:
    try:
        edgevae_version = importlib.metadata.version("edgevae")
    except importlib.metadata.PackageNotFoundError:
        edgevae_version = "unknown"
    return {"edgevae": edgevae_version, "torch": torch.__version__, "onnx": onnx.__version__}


def axis_sizes(config: VAEConfig) -> dict[str, int]:
    return {contract.PIXELS: config.input_dim, contract.LATENT: config.latent}


def graph_specs(config: VAEConfig) -> dict[str, contract.GraphSpec]:
    """The contract's graphs for this model's likelihood (a third decoder output for the discretized logistic)."""
    return contract.graphs_for(config.likelihood)


def trace_to_onnx(module: nn.Module, spec: contract.GraphSpec, config: VAEConfig, opset: int) -> onnx.ModelProto:
    """Trace `module` (CPU, eval mode) into an ONNX model with the contract's names and axes."""
    sizes = axis_sizes(config)
    example = tuple(torch.zeros([2 if a == contract.BATCH else sizes[a] for a in t.shape]) for t in spec.inputs)
    buf = io.BytesIO()
    # Exporter choice: the TorchScript-based exporter (dynamo=False). For a two-layer MLP it
    # emits a minimal Gemm/Relu graph with exactly our names and a dynamic batch axis, writes
    # IR 8 (loadable by onnxruntime 1.14+; the dynamo path writes the newest IR through the
    # onnx helpers, which older runtimes refuse), needs no onnxscript, and its output is
    # byte-identical across runs, which the release process relies on. Its deprecation warning
    # is expected and silenced here only.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            module.eval(),
            example,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            do_constant_folding=True,
            export_params=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    declare_fixed_axes(model, spec, sizes)
    return model


def declare_fixed_axes(model: onnx.ModelProto, spec: contract.GraphSpec, sizes: dict[str, int]) -> None:
    """Write the contract's fixed sizes into graph inputs and outputs that the exporter left symbolic
    (a convolutional graph's Reshape/Concat chain hides them from its shape tracking). The ONNX
    checker's strict shape inference (`check_graph`) and the parity gate's shape checks confirm them;
    the MLP graphs already carry them and are left untouched."""
    for values, tensors in ((model.graph.input, spec.inputs), (model.graph.output, spec.outputs)):
        for value, tensor in zip(values, tensors, strict=True):
            for dim, axis in zip(value.type.tensor_type.shape.dim, tensor.shape, strict=True):
                if axis == contract.BATCH:
                    if not dim.HasField("dim_param") or dim.dim_param != contract.BATCH:
                        dim.Clear()
                        dim.dim_param = contract.BATCH
                elif not dim.HasField("dim_value"):
                    dim.Clear()
                    dim.dim_value = sizes[axis]


def add_metadata(model: onnx.ModelProto, graph: str, config: VAEConfig, checkpoint_sha256: str, opset: int) -> None:
    """Attach the contract's metadata_props (config, source checkpoint, versions, opset)."""
    meta = {
        contract.META_GRAPH: graph,
        contract.META_CONFIG: json.dumps(config.to_dict(), sort_keys=True),
        contract.META_CHECKPOINT_SHA256: checkpoint_sha256,
        contract.META_VERSIONS: json.dumps(project_versions(), sort_keys=True),
        contract.META_OPSET: str(opset),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = f"edgevae {graph}: see {contract.MANIFEST_FILE} and edgevae.runtime.contract"


def graph_signature(values: Any) -> contract.Signature:
    """(name, dtype, shape) of ONNX ValueInfos, with None for a symbolic axis."""
    dtypes = {v: k for k, v in contract.ONNX_ELEM_TYPES.items()}
    found = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        found.append((v.name, dtypes.get(t.elem_type, f"elem_type {t.elem_type}"), shape))
    return found


def check_graph(
    model: onnx.ModelProto, spec: contract.GraphSpec, graph: str, sizes: dict[str, int], batch: int | None = None
) -> None:
    """Raise ExportError unless the graph matches the contract (names, dtypes, ranks, fixed axes and
    the batch axis) and passes the ONNX checks."""
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        found, expected = graph_signature(values), spec.signature(kind, sizes, batch)
        if found != expected:
            raise ExportError(
                f"{graph}: graph {kind}s {found} differ from the contract {expected} "
                "(name, dtype, shape; None = the dynamic batch axis)"
            )
    random_ops = sorted({n.op_type for n in model.graph.node} & contract.RANDOM_OPS)
    if random_ops:
        raise ExportError(f"{graph}: random operators {random_ops} in the graph; noise must be an input")
    if model.ir_version > contract.MAX_IR_VERSION:
        raise ExportError(
            f"{graph}: IR version {model.ir_version} > {contract.MAX_IR_VERSION}, "
            f"which onnxruntime {contract.MIN_ONNXRUNTIME} cannot read"
        )
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{graph}: ONNX check failed: {exc}") from exc


def build_graphs(
    checkpoints: str | os.PathLike[str] | checkpoint.CheckpointPair, opset: int = contract.OPSET
) -> tuple[VAEConfig, dict[str, bytes]]:
    """Trace a loaded pair (or a checkpoint folder) into serialized, checked ONNX models; each graph
    records the sha256 of the checkpoint file its weights came from (its line in checkpoint.sha256).
    Nothing is written."""
    pair = (
        checkpoints if isinstance(checkpoints, checkpoint.CheckpointPair) else checkpoint.load_checkpoints(checkpoints)
    )
    return pair.encoder.config, trace_pair(pair.encoder, pair.decoder, pair.sha256, opset)


def trace_pair(encoder: nn.Module, decoder: nn.Module, sha256: dict[str, str], opset: int) -> dict[str, bytes]:
    """Serialized, checked ONNX graphs of an encoder/decoder pair (each with a `config`: VAEConfig or
    the like), wrapped to the contract's signatures; `sha256`: of the weights each came from."""
    config = encoder.config
    modules = {"encoder": EncoderGraph(encoder), "decoder": DecoderGraph(decoder)}
    fp32_graphs: dict[str, bytes] = {}
    for graph, spec in graph_specs(config).items():
        model = trace_to_onnx(modules[graph], spec, config, opset)
        add_metadata(model, graph, config, sha256[graph], opset)
        check_graph(model, spec, graph, axis_sizes(config))
        fp32_graphs[graph] = model.SerializeToString(deterministic=True)
    return fp32_graphs


def describe_tensors(specs: tuple[contract.TensorSpec, ...], config: VAEConfig) -> list[dict[str, Any]]:
    sizes = axis_sizes(config)
    return [{"name": t.name, "dtype": t.dtype, "shape": t.concrete_shape(sizes)} for t in specs]


EXTRA_ROLES = {
    contract.GOLDEN_DATA_FILE: "golden vectors: fixed inputs and PyTorch outputs, float32 LE (edgevae selftest)",
    contract.GOLDEN_SPEC_FILE: "golden vectors' index into golden.bin, tolerances and how to check them",
    contract.SCORE_STATS_FILE: "statistics of normal images for the unusual-input scores (edgevae score)",
    contract.SCORE_DENSITY_FILE: "Gaussian mixture over normal images' score features: "
    "the density score (edgevae score)",
    contract.REQUIRED_OPERATORS_FILE: "operators of the .ort graphs, for a minimal onnxruntime build",
    contract.LIKELIHOOD_FILE: "likelihood graph: (x, mu, logvar, eps) -> log_w (export/likelihood_graph.py)",
    contract.PRIOR_FILE: "the learned prior p(z): mixture means and log-variances, float32 LE (runtime/prior.py)",
}


def describe_graph(graph: str, blob: bytes, config: VAEConfig, variant: contract.Variant) -> dict[str, Any]:
    """A graph's manifest entry: sha256, size, signature (fixed axes filled in) and IR version."""
    spec = graph_specs(config)[graph]
    entry: dict[str, Any] = {
        "graph": graph,
        "variant": variant.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
    }
    for key, tensors in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        described = describe_tensors(tensors, config)
        if variant.batch is not None:
            for t in described:
                t["shape"] = [variant.batch if a == contract.BATCH else a for a in t["shape"]]
        entry[key] = described
    if variant.file(graph).endswith(".onnx"):
        entry["ir_version"] = onnx.load_from_string(blob).ir_version
    return entry


CONV_DESCRIPTIONS = {
    "int8": "convolutions: int8 weights per output channel, float arithmetic (weight-only, DequantizeLinear; "
    "onnxruntime has no CPU ConvInteger for uint8 activations); dense layers: dynamic int8 (MatMulInteger)",
    "b1": "float32, batch fixed at 1 (what NNAPI and CoreML take: mobile_usability)",
}


def describe_variant(variant: contract.Variant, fp32_graphs: dict[str, bytes]) -> str:
    """The contract's description, or for a convolutional pair what its int8 and b1 builds are."""
    if variant.name in CONV_DESCRIPTIONS and any(
        has_convolutions(onnx.load_from_string(b)) for b in fp32_graphs.values()
    ):
        return CONV_DESCRIPTIONS[variant.name]
    return variant.description


def shape_budget(variant: contract.Variant, pixels: int) -> tuple[tuple[str, float], ...]:
    """The variant's per-output budgets for images of `pixels` values (`Variant.tolerance`)."""
    return variant.other_budget if pixels != contract.MNIST_PIXELS and variant.other_budget else variant.budget


def build_manifest(
    out: str | os.PathLike[str],
    config: VAEConfig,
    fp32_graphs: dict[str, bytes],
    opset: int,
    parity: dict[str, Any],
    checkpoint_sha256: dict[str, str],
    extras: dict[str, bytes] | None = None,
    variants: dict[str, dict[str, bytes]] | None = None,
    variant_figures: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest: every file's sha256 and size (graphs also signature, variant and source
    checkpoint), the other files' roles, each variant's files, size and cost, and the parity figures."""
    all_variants = {contract.DEFAULT_VARIANT: fp32_graphs, **(variants or {})}
    files: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    fp32_size = sum(len(b) for b in fp32_graphs.values())
    for name, graphs in all_variants.items():
        variant = contract.VARIANTS[name]
        for graph, blob in graphs.items():
            files[variant.file(graph)] = describe_graph(graph, blob, config, variant)
            files[variant.file(graph)]["source_checkpoint_sha256"] = checkpoint_sha256[graph]
        size = sum(len(b) for b in graphs.values())
        summary[name] = {
            "description": describe_variant(variant, fp32_graphs),
            "files": {g: variant.file(g) for g in graphs},
            "batch": variant.batch,
            "format": "ort" if variant.suffix.endswith(".ort") else "onnx",
            "devices": list(variant.devices),
            **({"not_for": variant.not_for} if variant.not_for else {}),
            "size": size,
            "size_vs_fp32": size / fp32_size,
            "budget": {
                "max_abs_diff_vs_fp32": dict(shape_budget(variant, config.input_dim))
                or {"all outputs": contract.TOLERANCE["cpu"]},
                "log_likelihood_change_nats": nll_budget(variant, config.input_dim),
                **(
                    {}
                    if config.input_dim == contract.MNIST_PIXELS
                    else {"log_likelihood_change_bits_per_dim": variant.bpd_budget}
                ),
            },
            **(variant_figures or {}).get(name, {}),
        }
    for name, blob in (extras or {}).items():
        files[name] = {"role": EXTRA_ROLES[name], "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    if contract.PRIOR_FILE in files and "prior" in checkpoint_sha256:  # the checkpoint the mixture came from
        files[contract.PRIOR_FILE]["source_checkpoint_sha256"] = checkpoint_sha256["prior"]
    return {
        "format": contract.MANIFEST_FORMAT,
        "version": contract.MANIFEST_VERSION,
        "opset": opset,
        "min_onnxruntime": contract.MIN_ONNXRUNTIME,
        "config": config.to_dict(),
        "versions": project_versions(),
        "files": files,
        "variants": summary,
        "parity": parity,
    }


def export_model(
    checkpoints: str | os.PathLike[str],
    out: str | os.PathLike[str],
    opset: int = contract.OPSET,
    devices: tuple[str, ...] = ("cpu",),
    score_images: Any = None,
    score_source: str | None = None,
    score_labels: Any = None,
) -> tuple[list[Path], dict[str, Any]]:
    """Build, validate on each device's provider, then write graphs, golden vectors, score
    statistics and manifest.

    score_images: normal images for the score statistics and the density score's mixture (default:
    the training images saved beside the checkpoints by a folder/npy run, else the 2000 MNIST training
    digits shipped with the exporter), described by score_source; score_labels: their classes (N,),
    one mixture per class (default: one mixture for all).
    Returns (paths written, parity summary per device). Raises CheckpointError,
    ExportError or ValidationError (ParityError with the max difference) before anything is written.
    """
    pair = checkpoint.load_checkpoints(checkpoints)  # read once: traced, validated and hashed from these bytes
    real, real_source = validation_images(Path(checkpoints), pair.encoder.config)
    if score_images is None and real_source is not None:
        score_images, score_source = real, f"{real_source} (training images)"
    config, fp32_graphs = build_graphs(pair, opset)
    return export_traced(
        pair.encoder,
        pair.decoder,
        fp32_graphs,
        pair.sha256,
        out,
        opset,
        devices,
        real,
        score_images,
        score_source,
        score_labels,
    )


def validation_images(folder: Path, config: VAEConfig) -> tuple[Any, str | None]:
    """uint8 rows (N, pixels) that export validates on, and their source: the training images a
    folder/npy run saved beside its checkpoints, else (MNIST-shaped models) the 256 MNIST test
    digits shipped with the exporter; ExportError when neither fits."""
    import numpy as np

    from edgevae.train.imagedata import SAMPLE_FILE

    from .validate import load_real_images

    sample = folder / SAMPLE_FILE
    if sample.is_file():
        from edgevae.runtime.images import read_npy

        images = read_npy(sample)
        if images.dtype != np.uint8 or images[0].size != config.input_dim:
            raise ExportError(f"{sample} does not hold this model's images (uint8, {config.input_dim} values each)")
        return images.reshape(len(images), -1), f"{len(images)} images of {sample}"
    if config.input_dim == 28 * 28:
        return load_real_images(), None
    raise ExportError(
        f"no images to validate this {config.image_shape[0]}x{config.image_shape[1]}x{config.channels} model on: "
        f"{sample} is missing (training on --dataset folder or npy writes it)"
    )


def export_traced(
    encoder: nn.Module,
    decoder: nn.Module,
    fp32_graphs: dict[str, bytes],
    sha256: dict[str, str],
    out: str | os.PathLike[str],
    opset: int,
    devices: tuple[str, ...],
    real: Any,
    score_images: Any = None,
    score_source: str | None = None,
    score_labels: Any = None,
) -> tuple[list[Path], dict[str, Any]]:
    """The gates every pair goes through after tracing, then the writes: parity on each device,
    golden vectors, variants with their cost, score statistics, the manifest (written last)."""
    from edgevae.runtime.files import ModelFiles
    from edgevae.runtime.manifest import seal_manifest
    from edgevae.runtime.vae import VAE

    from .calibrate import calibrate_scores
    from .golden import build_golden
    from .latents import MANIFEST_KEY, activity_entry
    from .likelihood_graph import likelihood_extra
    from .prior_file import prior_extra
    from .validate import check_golden, measure_parity, validate_parity
    from .variants import build_variants, check_mobile_usability, check_variant, measure_variant, staged_files

    config = encoder.config
    parity = {
        device: validate_parity(measure_parity(encoder, decoder, fp32_graphs, device, real=real), device)
        for device in devices
    }
    golden_data, golden_spec = build_golden(encoder, decoder, real)
    prior = prior_extra(encoder)  # a learned prior's mixture, checked against PyTorch; None for N(0, I)
    staged = ModelFiles(
        Path(out),
        {"config": config.to_dict(), "files": {}},
        fp32_graphs,
        {contract.GOLDEN_DATA_FILE: golden_data, contract.GOLDEN_SPEC_FILE: golden_spec}
        | ({contract.PRIOR_FILE: prior[0]} if prior else {}),
    )
    check_golden(staged, devices)
    variants, variant_extras = build_variants(fp32_graphs)
    fp32 = VAE(staged, device="cpu")
    figures = {contract.DEFAULT_VARIANT: measure_variant(fp32, fp32, real)}
    for name, graphs in variants.items():
        candidate = staged_files(staged, name, graphs)
        figures[name] = measure_variant(fp32, VAE(candidate, device="cpu"), real)
        check_variant(name, figures[name], config.input_dim)
        check_golden(candidate, ["cpu"])
    figures["b1"]["mobile_usability"] = check_mobile_usability(variants["b1"])
    stats, density = calibrate_scores(staged, score_images, score_source, score_labels)
    extras = {**staged.extras, contract.SCORE_STATS_FILE: stats.to_json(), contract.SCORE_DENSITY_FILE: density}
    extras.update(variant_extras)
    likelihood = likelihood_extra(staged)  # checked against the numpy formulas; None: not for this likelihood
    if likelihood is not None:
        extras[contract.LIKELIHOOD_FILE] = likelihood[0]
    files = {contract.GRAPHS[g].file: b for g, b in fp32_graphs.items()}
    files.update({contract.VARIANTS[n].file(g): b for n, graphs in variants.items() for g, b in graphs.items()})
    files.update(extras)
    manifest = build_manifest(out, config, fp32_graphs, opset, parity, sha256, extras, variants, figures)
    if likelihood is not None:
        manifest["files"][contract.LIKELIHOOD_FILE] = likelihood[1]
    manifest[MANIFEST_KEY] = activity_entry(fp32, real, f"the export's {len(real)} validation images")
    if prior is not None:
        manifest["prior"] = {"kind": config.prior, "components": config.prior_components, "max_abs_diff": prior[1]}
    files[contract.MANIFEST_FILE] = seal_manifest(manifest)
    paths = []
    with export_lock(out, list(files)):  # everything is built and checked: now write, the manifest last
        for name, blob in files.items():
            write_bytes_atomic(Path(out) / name, blob)
            paths.append(Path(out) / name)
    return paths, parity


@contextlib.contextmanager
def export_lock(out: str | os.PathLike[str], names: list[str]) -> Iterator[None]:
    """Hold OUT/.export.lock for the whole export, so two exports into one folder cannot interleave
    their files: the second fails at once, saying so. Stale temporary files are removed under it."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".export.lock", "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            yield
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ExportError(
                f"another export is writing to {folder} (it holds {folder / '.export.lock'}); "
                "wait for it or choose another --out"
            ) from exc
        try:
            remove_stale_temps(folder, names)
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

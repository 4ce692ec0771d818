"""Edge variants of the fp32 graph pair: int8, fp16, fixed batch 1, and ORT format.

Each builder takes the validated fp32 graphs (bytes) and returns the variant's graphs (bytes);
`measure_variant` runs a variant against fp32 on real test digits (max |diff| per output and the
change in importance-weighted log-likelihood, nats) and `check_variant` raises VariantError when a
figure is over the contract's budget. Nothing here writes into the model folder.

int8: dynamic quantization (weights int8 per channel, MatMulInteger) was kept over static QDQ
calibrated on training digits: on the released model QDQ cost 0.35 nat against 0.08 and ran the
batch-1024 decoder 3x slower on this CPU (docs/export.md, "Variants"). Convolutional graphs: onnxruntime has
no CPU kernel for ConvInteger with uint8 activations, so quantize_dynamic would break them; their
convolutions keep float arithmetic with int8 weights per output channel (DequantizeLinear in front,
weight-only), and their Gemms (the dense layers) are quantized dynamically as in the MLPs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import pathlib
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed
from onnxruntime.transformers.float16 import convert_float_to_float16

from edgevae.runtime import contract
from edgevae.runtime.files import ModelFiles
from edgevae.runtime.noise import NOISE_SCHEME
from edgevae.runtime.selftest import max_excess, run_rows
from edgevae.runtime.vae import VAE

from .validate import ValidationError

Graphs = dict[str, bytes]


class VariantError(ValidationError):
    """A variant is over its budget against fp32 (figure, budget and what was measured)."""


@contextlib.contextmanager
def quiet_tools() -> Iterator[None]:
    """Silence onnxruntime's tools, which print and log advice on the root logger."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def build_int8(fp32: Graphs) -> Graphs:
    """Per-channel int8 weights, activations quantized at run time (MatMulInteger), except the
    encoder's layers after its first: they keep float16 weights (cast to float32 once, at load).
    Quantizing their activations per tensor moved the large model's mu by 0.38 and cost 0.32 nat;
    kept in float16 they cost 0.07 nat, and the encoder's first layer (most of its bytes) is int8."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp, quiet_tools():
        for graph, blob in fp32.items():
            model = onnx.load_from_string(blob)
            target = pathlib.Path(tmp) / f"{graph}.onnx"
            if has_convolutions(model):
                quantize_conv_weights(model)
                quantize_dynamic(
                    model,
                    target,
                    per_channel=True,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Gemm", "MatMul"],
                )
            else:
                if graph == "encoder":
                    keep_float16_after_first_layer(model)
                quantize_dynamic(model, target, per_channel=True, weight_type=QuantType.QInt8)
            out[graph] = target.read_bytes()
    return out


CONV_OPS = ("Conv", "ConvTranspose")


def has_convolutions(model: onnx.ModelProto) -> bool:
    return any(node.op_type in CONV_OPS for node in model.graph.node)


def quantize_conv_weights(model: onnx.ModelProto) -> None:
    """Store each Conv/ConvTranspose weight as int8 with one float scale per output channel (symmetric,
    scale = max |w| / 127), dequantized by a DequantizeLinear node in front of the convolution, which
    then runs in float (in place). ConvTranspose weights are (in, out, kh, kw): their axis is 1."""
    initializers = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type not in CONV_OPS or node.input[1] not in initializers:
            continue
        weight = initializers.pop(node.input[1])
        w = numpy_helper.to_array(weight).astype(np.float32)
        axis = 1 if node.op_type == "ConvTranspose" else 0
        reduce = tuple(a for a in range(w.ndim) if a != axis)
        scale = np.maximum(np.abs(w).max(axis=reduce), 1e-12) / 127.0
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        model.graph.initializer.remove(weight)
        names = (weight.name + "_int8", weight.name + "_scale", weight.name + "_zero")
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(q, names[0]),
                numpy_helper.from_array(scale.astype(np.float32), names[1]),
                numpy_helper.from_array(np.zeros(len(scale), np.int8), names[2]),
            ]
        )
        nodes.append(onnx.helper.make_node("DequantizeLinear", list(names), [weight.name], axis=axis))
    for node in reversed(nodes):
        model.graph.node.insert(0, node)


def keep_float16_after_first_layer(model: onnx.ModelProto) -> None:
    """Store the weights of every Gemm not fed by a graph input as float16 behind a Cast: dynamic
    quantization only takes constant weights, so these layers stay float (in place)."""
    inputs = {i.name for i in model.graph.input}
    initializers = {i.name: i for i in model.graph.initializer}
    casts = []
    for node in model.graph.node:
        if node.op_type != "Gemm" or node.input[0] in inputs or node.input[1] not in initializers:
            continue
        weight = initializers.pop(node.input[1])
        half = numpy_helper.from_array(numpy_helper.to_array(weight).astype(np.float16), weight.name + "_fp16")
        model.graph.initializer.remove(weight)
        model.graph.initializer.append(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [weight.name], to=onnx.TensorProto.FLOAT))
    for cast in reversed(casts):
        model.graph.node.insert(0, cast)


def build_fp16(fp32: Graphs) -> Graphs:
    """float16 weights and arithmetic; inputs and outputs stay float32 (the contract's dtypes)."""
    return {
        graph: convert_float_to_float16(onnx.load_from_string(blob), keep_io_types=True).SerializeToString(
            deterministic=True
        )
        for graph, blob in fp32.items()
    }


def build_fixed_batch(fp32: Graphs, batch: int = 1) -> Graphs:
    """The same graphs with the batch axis fixed, which NNAPI and CoreML need to take the nodes."""
    out = {}
    for graph, blob in fp32.items():
        model = onnx.load_from_string(blob)
        make_dim_param_fixed(model.graph, contract.BATCH, batch)
        fix_output_shapes(model)
        out[graph] = model.SerializeToString(deterministic=True)
    return out


def build_ort_format(fp32: Graphs) -> tuple[Graphs, bytes]:
    """ORT-format graphs (optimized once, at conversion) and the required_operators.config that a
    minimal onnxruntime build needs (--include_ops_by_config)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = pathlib.Path(tmp) / "onnx", pathlib.Path(tmp) / "ort"
        src.mkdir()
        for graph, blob in fp32.items():
            (src / f"{graph}.onnx").write_bytes(blob)
        with quiet_tools():
            convert_onnx_models_to_ort(src, dst, [OptimizationStyle.Fixed])
        graphs = {graph: (dst / f"{graph}.ort").read_bytes() for graph in fp32}
        lines = (dst / contract.REQUIRED_OPERATORS_FILE).read_text().splitlines()
    config = [
        "# Operators of encoder.ort and decoder.ort (edgevae); build onnxruntime with",
        "# --minimal_build --include_ops_by_config required_operators.config",
    ]
    config += [line for line in lines if not line.startswith("#")]
    return graphs, ("\n".join(config) + "\n").encode()


BUILDERS: dict[str, Callable[[Graphs], Graphs]] = {"int8": build_int8, "fp16": build_fp16, "b1": build_fixed_batch}


def build_variants(fp32: Graphs) -> tuple[dict[str, Graphs], dict[str, bytes]]:
    """Every non-fp32 variant in the contract: ({name: graphs}, extra files such as the operator config)."""
    variants = {name: build(fp32) for name, build in BUILDERS.items()}
    variants["ort"], config = build_ort_format(fp32)
    missing = set(contract.VARIANTS) - {contract.DEFAULT_VARIANT} - set(variants)
    if missing:
        raise ValueError(f"no builder for variants {sorted(missing)}")
    return variants, {contract.REQUIRED_OPERATORS_FILE: config}


def staged_files(base: ModelFiles, variant: str, graphs: Graphs) -> ModelFiles:
    """An in-memory model folder that holds `graphs` as `variant` (for measuring before writing)."""
    manifest = {**base.manifest, "variants": {variant: {"batch": contract.VARIANTS[variant].batch}}}
    return ModelFiles(base.folder, manifest, graphs, base.extras, variant)


def nll_eval_images(real: np.ndarray, binarize: bool = True) -> np.ndarray:
    """The contract's variant-cost images: real images (MNIST: test digits binarized with a fixed numpy
    seed; your own images for a non-bernoulli model: their 8-bit levels as they are)."""
    n = contract.VARIANT_NLL_EVAL["images"]
    x = real[:n].astype(np.float32) / 255.0
    if not binarize:
        return x
    return (np.random.default_rng(contract.VARIANT_NLL_EVAL["seed"]).random(x.shape) < x).astype(np.float32)


def nll_budget(variant: contract.Variant, pixels: int) -> float:
    """A variant's budget on the change of log p(x), nats per image: the contract's nll_budget for
    MNIST-shaped models (784 values), else its bits-per-dimension budget times the values per image."""
    return variant.nll_budget if pixels == contract.MNIST_PIXELS else variant.bpd_budget * pixels * math.log(2)


def measure_variant(fp32: VAE, other: VAE, real: np.ndarray) -> dict[str, Any]:
    """max |other - fp32| per output on real digits (encoder with fixed eps, decoder on the encoder's z,
    and the reconstruct path), and the change in mean IW log-likelihood (nats; images, k, seed)."""
    x = real.astype(np.float32) / 255.0
    eps = np.random.default_rng(1).standard_normal((len(x), fp32.latent), dtype=np.float32)
    diffs: dict[str, float] = {}
    names = fp32.graphs["encoder"].output_names
    names_d = fp32.graphs["decoder"].output_names
    want_e = dict(zip(names, _run_rows(fp32, "encoder", {contract.X: x, contract.EPS: eps}), strict=True))
    got_e = dict(zip(names, _run_rows(other, "encoder", {contract.X: x, contract.EPS: eps}), strict=True))
    feeds_d = {contract.Z: want_e[contract.Z]}
    want_d = dict(zip(names_d, _run_rows(fp32, "decoder", feeds_d), strict=True))
    got_d = dict(zip(names_d, _run_rows(other, "decoder", feeds_d), strict=True))
    for graph, want, got in (("encoder", want_e, got_e), ("decoder", want_d, got_d)):
        for name in want:
            diffs[f"{graph}.{name}"] = max_excess(got[name], want[name], contract.RELATIVE_TOLERANCE.get(name, 0.0))
    diffs[f"reconstruct.{contract.MEAN}"] = max_excess(other.reconstruct(x), fp32.reconstruct(x))
    mnist = fp32.pixels == 784 and fp32.channels == 1  # as before colour: binarized digits, every likelihood
    xb = nll_eval_images(real, binarize=mnist or fp32.likelihood == "bernoulli")
    ev = contract.VARIANT_NLL_EVAL
    ll_ref = float(fp32.log_likelihood(xb, k=ev["k"], seed=ev["seed"]).mean())
    ll = float(other.log_likelihood(xb, k=ev["k"], seed=ev["seed"]).mean())
    data = (
        "real MNIST test digits shipped with the exporter, binarized by numpy seed "
        f"{ev['seed']}; the same noise for both builds"
        if mnist
        else f"the first {len(xb)} validation images (your training images); the same noise for both builds"
    )
    per_dim = (ll - ll_ref) / (fp32.pixels * math.log(2))
    return {
        "max_abs_diff_vs_fp32": diffs,
        "log_likelihood_change": {
            "nats": ll - ll_ref,
            "fp32_log_likelihood": ll_ref,
            "images": len(xb),
            "k": ev["k"],
            "seed": ev["seed"],
            "noise": NOISE_SCHEME,  # the importance noise the seed keys (runtime/noise.py)
            "data": data,
            **({} if mnist else {"bits_per_dim": per_dim}),
        },
    }


def _run_rows(vae: VAE, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a graph on `feeds`, row by row when the variant's batch is fixed."""
    return run_rows(
        lambda names, f: vae.run_graph(graph, names, f), vae.graphs[graph].output_names, feeds, vae.fixed_batch
    )


def check_variant(name: str, figures: dict[str, Any], pixels: int = 784) -> None:
    """VariantError naming every figure over the variant's budget (the worst first); the likelihood
    budget scales with the values per image (`nll_budget`)."""
    variant = contract.VARIANTS[name]
    budget_nats = nll_budget(variant, pixels)
    over = []
    for key, diff in figures["max_abs_diff_vs_fp32"].items():
        budget = variant.tolerance(key.split(".")[1], pixels)
        if budget is not None and not diff <= budget:
            over.append((diff / budget, f"{key} max |diff| {diff:.3e} > budget {budget:.0e}"))
    change = figures["log_likelihood_change"]["nats"]
    if not abs(change) <= budget_nats:
        over.append(
            (abs(change) / budget_nats, f"log-likelihood change {change:+.4f} nats > budget {budget_nats:.4g} nats")
        )
    if over:
        raise VariantError(f"variant {name!r} against fp32: " + "; ".join(m for _, m in sorted(over, reverse=True)))


def check_mobile_usability(graphs: Graphs) -> dict[str, dict[str, Any]]:
    """onnxruntime's mobile usability checker on each graph (optimized to the basic level first, as
    the checker's CLI does): nodes NNAPI and CoreML (MLProgram) would take. VariantError unless all, for
    the MLP graphs; a convolutional pair's figures are recorded only."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    report: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for graph, blob in graphs.items():
            src, opt = pathlib.Path(tmp) / f"{graph}.onnx", pathlib.Path(tmp) / f"{graph}.opt.onnx"
            src.write_bytes(blob)
            with quiet_tools():
                uc.optimize_model(src, opt, use_external_initializers=True)
            model = uc.ModelProtoWithShapeInfo(opt).model_with_shape_info
            infos = {
                "nnapi": uc.check_nnapi_partitions(model, require_fixed_input_sizes=True),
                "coreml_mlprogram": uc.check_coreml_partitions(model, True, "coreml_supported_mlprogram_ops.md"),
            }
            report[graph] = {
                ep: {"supported_nodes": i.num_supported_nodes, "nodes": i.num_nodes, "partitions": i.num_partitions}
                for ep, i in infos.items()
            }
    bad = [
        f"{g} {ep}: {r['supported_nodes']}/{r['nodes']} nodes in {r['partitions']} partitions"
        for g, eps in report.items()
        for ep, r in eps.items()
        if r["supported_nodes"] != r["nodes"] or r["partitions"] != 1
    ]
    if bad and not any(has_convolutions(onnx.load_from_string(b)) for b in graphs.values()):
        raise VariantError("fixed-shape graphs are not fully usable by the mobile providers: " + "; ".join(bad))
    # convolutional graphs: recorded as measured (which nodes NNAPI and CoreML take), not a gate
    return report

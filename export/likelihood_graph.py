"""The likelihood graph: the fp32 decoder graph with the importance-sampling arithmetic around it.

    python -m edgevae.export.likelihood_graph --model runtime/models/default   # add it to a model folder

(x, mu, logvar, eps) -> log_w, where for each sample k and image n (runtime/contract.py):
    z = mu + exp(logvar / 2) * eps                               (Kingma & Welling 2014, section 2.4)
    log_w = log p(x|z) + log p(z) - log q(z|x)                   (Burda et al. 2015, eq. 8)
          = log p(x|z) + 1/2 sum (logvar + eps^2 - z^2)          (the normal densities' difference)
    bernoulli log p(x|z) = sum x * l - softplus(l), softplus(l) = relu(l) + log(1 + exp(-min(|l|, 80)))
    gaussian  log p(x|z) = -sum (x - mean)^2 - D/2 log(pi)       (as runtime/likelihood.py)
so the per-pixel work stays inside onnxruntime and only K x N numbers leave the execution provider
(on CUDA, the logits never cross to the host). It is built from the decoder graph's own nodes and
weights, so it cannot drift from it; export checks it against the runtime's numpy formulas on real
images (within contract.LIKELIHOOD_GRAPH_NATS) before it is written, and lists it in the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevae.runtime import contract
from edgevae.runtime.errors import EdgeVAEError, run_cli

from .validate import ValidationError

SOFTPLUS_CLAMP = 80.0  # as runtime/likelihood.py: exp(-80) is still a normal float32
MIN_OPSET = 13  # ReduceSum takes its axes as an input from opset 13; older decoders get no likelihood graph


def graph_opset(blob: bytes) -> int:
    """The default-domain opset of an ONNX graph."""
    return max((o.version for o in onnx.load_from_string(blob).opset_import if o.domain in ("", "ai.onnx")), default=0)


class LikelihoodGraphError(ValidationError):
    """The likelihood graph disagrees with the numpy formulas by more than the gate allows."""


def needed_nodes(graph: onnx.GraphProto, outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes `outputs` depend on, in the graph's order (the rest, such as an unused Sigmoid, dropped)."""
    wanted, keep = set(outputs), []
    for node in reversed(graph.node):
        if wanted & set(node.output):
            keep.append(node)
            wanted |= set(node.input)
    return keep[::-1]


def build_likelihood_graph(decoder_blob: bytes, likelihood: str, latent: int, pixels: int) -> bytes:
    """The likelihood graph's bytes from the fp32 decoder graph's (deterministic: same input, same bytes)."""
    if likelihood not in contract.GRAPH_LIKELIHOODS:
        raise ValueError(f"a likelihood graph is built for {contract.GRAPH_LIKELIHOODS}; got {likelihood!r}")
    decoder = onnx.load_from_string(decoder_blob)
    if graph_opset(decoder_blob) < MIN_OPSET:
        raise ValueError(
            f"a likelihood graph needs a decoder of opset {MIN_OPSET} or newer; got {graph_opset(decoder_blob)}"
        )
    nodes: list[onnx.NodeProto] = []
    consts: list[onnx.TensorProto] = []

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def const(name: str, value: Any) -> str:
        consts.append(numpy_helper.from_array(np.asarray(value), f"lik.{name}"))
        return f"lik.{name}"

    last = const("last_axis", np.array([-1], np.int64))
    # z = mu + exp(logvar / 2) * eps, flattened to the decoder's (K * N, latent) input "z"
    sd = node("Exp", [node("Mul", [contract.LOGVAR, const("half", np.float32(0.5))], "lik.half_logvar")], "lik.sd")
    z3 = node("Add", [contract.MU, node("Mul", [sd, contract.EPS], "lik.sd_eps")], "lik.z3")
    node("Reshape", [z3, const("flat", np.array([-1, latent], np.int64))], contract.Z)
    wanted = contract.LOGITS if likelihood == "bernoulli" else contract.MEAN
    nodes.extend(needed_nodes(decoder.graph, {wanted}))
    kn = node("Slice", [node("Shape", [contract.EPS], "lik.eps_shape"), const("0", [0]), const("2", [2])], "lik.kn")
    shape = node("Concat", [kn, const("pixels", np.array([pixels], np.int64))], "lik.out_shape", axis=0)
    out = node("Reshape", [wanted, shape], "lik.out3")  # (K, N, pixels)
    if likelihood == "bernoulli":
        clamped = node("Min", [node("Abs", [out], "lik.abs"), const("clamp", np.float32(SOFTPLUS_CLAMP))], "lik.min")
        tail = node("Exp", [node("Neg", [clamped], "lik.neg")], "lik.exp")
        log1p = node("Log", [node("Add", [tail, const("one", np.float32(1.0))], "lik.one_plus")], "lik.log1p")
        softplus = node("Add", [node("Relu", [out], "lik.relu"), log1p], "lik.softplus")
        term = node("Sub", [node("Mul", [contract.X, out], "lik.x_l"), softplus], "lik.term")
        term64 = node("Cast", [term], "lik.term64", to=TensorProto.DOUBLE)  # summed in float64, as numpy does
        log_px = node("ReduceSum", [term64, last], "lik.log_px", keepdims=0)
    else:
        diff = node("Sub", [contract.X, out], "lik.diff")
        sq64 = node("Cast", [node("Mul", [diff, diff], "lik.sq")], "lik.sq64", to=TensorProto.DOUBLE)
        sq = node("ReduceSum", [sq64, last], "lik.sum_sq", keepdims=0)
        norm = const("gauss_norm", np.float64(0.5 * pixels * math.log(math.pi)))
        log_px = node("Sub", [node("Neg", [sq], "lik.neg_sq"), norm], "lik.log_px")
    eps_sq = node("Mul", [contract.EPS, contract.EPS], "lik.eps_sq")
    z_sq = node("Mul", [z3, z3], "lik.z_sq")
    ratio = node("Sub", [node("Add", [eps_sq, contract.LOGVAR], "lik.eps_sq_lv"), z_sq], "lik.ratio_terms")
    half_ratio = node(
        "Mul", [node("ReduceSum", [ratio, last], "lik.ratio_sum", keepdims=0), "lik.half"], "lik.log_ratio"
    )
    node("Add", [log_px, node("Cast", [half_ratio], "lik.log_ratio64", to=TensorProto.DOUBLE)], contract.LOG_W)
    used = {i for n in nodes for i in n.input}
    weights = [t for t in decoder.graph.initializer if t.name in used]
    vi = helper.make_tensor_value_info
    inputs = [
        vi(contract.X, TensorProto.FLOAT, ["batch", pixels]),
        vi(contract.MU, TensorProto.FLOAT, ["batch", latent]),
        vi(contract.LOGVAR, TensorProto.FLOAT, ["batch", latent]),
        vi(contract.EPS, TensorProto.FLOAT, ["samples", "batch", latent]),
    ]
    graph = helper.make_graph(
        nodes, "likelihood", inputs, [vi(contract.LOG_W, TensorProto.DOUBLE, ["samples", "batch"])], weights + consts
    )
    model = helper.make_model(graph, opset_imports=list(decoder.opset_import), producer_name="edgevae")
    model.ir_version = decoder.ir_version
    for prop in decoder.metadata_props:
        value = "likelihood" if prop.key == contract.META_GRAPH else prop.value
        model.metadata_props.add(key=prop.key, value=value)
    model.doc_string = f"edgevae likelihood graph: see {contract.MANIFEST_FILE} and edgevae.runtime.contract"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_likelihood_graph(files: Any, blob: bytes, images: np.ndarray, k: int = 64, seed: int = 0) -> float:
    """Max |log p(x)| difference per image between the graph and the numpy formulas on `images`
    (the same noise); a LikelihoodGraphError over contract.LIKELIHOOD_GRAPH_NATS. files: the fp32 model's."""
    from edgevae.runtime.files import ModelFiles
    from edgevae.runtime.vae import VAE

    listed = {n: e for n, e in files.manifest.get("files", {}).items() if n != contract.LIKELIHOOD_FILE}
    manifest = {**files.manifest, "files": listed}  # the candidate is not listed yet: the runtime takes it as is
    extras = {n: b for n, b in files.extras.items() if n != contract.LIKELIHOOD_FILE}
    without = VAE(ModelFiles(files.folder, manifest, files.graphs, extras, files.variant), device="cpu")
    with_blob = {**extras, contract.LIKELIHOOD_FILE: blob}
    candidate = ModelFiles(files.folder, manifest, files.graphs, with_blob, files.variant)
    with_graph = VAE(candidate, device="cpu", threads=0)  # more than one thread: the path that runs the graph
    if with_graph.loaded.likelihood_graph is None or without.loaded.likelihood_graph is not None:
        raise LikelihoodGraphError("the likelihood graph could not be checked: the runtime would not run it here")
    want = without.log_likelihood(images, k=k, seed=seed)
    got = with_graph.log_likelihood(images, k=k, seed=seed)
    worst = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
    if not worst <= contract.LIKELIHOOD_GRAPH_NATS:
        raise LikelihoodGraphError(
            f"the likelihood graph differs from the numpy formulas by {worst:.3g} nats "
            f"(max over {len(images)} images, k={k}); allowed {contract.LIKELIHOOD_GRAPH_NATS}"
        )
    return worst


def describe(blob: bytes, worst: float, likelihood: str) -> dict[str, Any]:
    """Its manifest entry: role, the likelihood it computes, sha256, size, signature, and the gate's figure."""
    return {
        "role": "likelihood graph: (x, mu, logvar, eps) -> log_w, importance weights inside onnxruntime",
        "likelihood": likelihood,  # the runtime runs it only for a model of this likelihood
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        "inputs": list(contract.LIKELIHOOD_INPUTS),
        "outputs": [contract.LOG_W],
        "max_abs_diff_vs_numpy_nats": worst,
    }


def check_images(pixels: int, n: int = 64) -> np.ndarray:
    """Images to check the graph on: real test digits for 28x28 grey models, else seeded uniform noise."""
    if pixels == contract.MNIST_PIXELS:
        return np.load(Path(__file__).parent / "fixtures" / "mnist_test_256.npy")[:n]
    return np.random.default_rng(0).random((n, pixels), dtype=np.float32)


def likelihood_extra(files: Any) -> tuple[bytes, dict[str, Any]] | None:
    """(bytes, manifest entry) of the likelihood graph for fp32 model files, checked; None for a
    likelihood without one (discretized logistic)."""
    likelihood = str(files.config.get("likelihood", "bernoulli"))
    if likelihood not in contract.GRAPH_LIKELIHOODS or graph_opset(files.graphs["decoder"]) < MIN_OPSET:
        return None  # the runtime then uses the numpy formulas
    if files.config.get("prior", "standard") != "standard":
        return None  # its log p(z) is N(0, I)'s: a learned prior's goes through numpy (runtime/prior.py)
    from edgevae.runtime.layout import ImageLayout

    pixels = ImageLayout.from_config(files.config).pixels
    blob = build_likelihood_graph(files.graphs["decoder"], likelihood, files.latent, pixels)
    return blob, describe(blob, check_likelihood_graph(files, blob, check_images(pixels)), likelihood)


def add_to_folder(folder: Path) -> Path:
    """Build, check and write FOLDER/likelihood.onnx, then list it in the manifest (written last)."""
    from edgevae.runtime.atomic import write_bytes_atomic
    from edgevae.runtime.files import load_model_files
    from edgevae.runtime.manifest import seal_manifest

    files = load_model_files(folder)
    made = likelihood_extra(files)
    if made is None:
        raise EdgeVAEError(f"{folder}: a {files.config.get('likelihood')} model has no likelihood graph")
    blob, entry = made
    manifest = dict(files.manifest)
    manifest["files"] = {**manifest["files"], contract.LIKELIHOOD_FILE: entry}
    write_bytes_atomic(folder / contract.LIKELIHOOD_FILE, blob)
    write_bytes_atomic(folder / contract.MANIFEST_FILE, seal_manifest(manifest))
    return folder / contract.LIKELIHOOD_FILE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model folder from make export (no default)")
    args = p.parse_args(argv)
    return run_cli(lambda: print(f"wrote {add_to_folder(Path(args.model))}") or 0, "edgevae.export.likelihood_graph")


if __name__ == "__main__":
    sys.exit(main())

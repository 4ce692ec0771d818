"""Golden vectors: fixed inputs, the PyTorch outputs for them, and the tolerance each must meet.

Written by export beside the graphs, both listed in the manifest with their sha256:
golden.bin, every array "<graph>.<tensor>" as little-endian float32, concatenated in sorted name
order; golden.json, the index into it (dtype, shape, byte offset and length per array), the
tolerances and the rule. Any language reads them without numpy: `edgevae selftest`
(runtime/selftest.py) and the JavaScript package (web/golden.js) replay them on a device.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from edgevae.runtime import contract
from edgevae.train.model import Decoder, Encoder, reparameterize, split_output

GOLDEN_SEED = 7


def pack_tensors(arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """(data, index): the arrays as little-endian float32 concatenated in sorted name order, and per
    name its dtype, shape, byte offset and byte length in data."""
    chunks, index, offset = [], {}, 0
    for name in sorted(arrays):
        blob = np.ascontiguousarray(arrays[name], dtype=contract.GOLDEN_NUMPY_DTYPE).tobytes()
        shape = [int(d) for d in np.shape(arrays[name])]
        index[name] = {"dtype": contract.GOLDEN_DTYPE, "shape": shape, "offset": offset, "bytes": len(blob)}
        chunks.append(blob)
        offset += len(blob)
    return b"".join(chunks), index


@torch.no_grad()
def golden_arrays(encoder: Encoder, decoder: Decoder, real: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays "<graph>.<tensor>" from PyTorch on fixed inputs: six real digits, a blank and a
    uniform-noise image for the encoder; six draws of N(0, I) and two far-out latents (|z| = 4) for
    the decoder."""
    rng = np.random.default_rng(GOLDEN_SEED)
    latent, pixels = encoder.config.latent, encoder.config.input_dim
    x = np.concatenate(
        [
            real[:6].astype(np.float32) / 255.0,
            np.zeros((1, pixels), np.float32),
            rng.random((1, pixels), dtype=np.float32),
        ]
    )
    eps = rng.standard_normal((len(x), latent), dtype=np.float32)
    z_in = np.concatenate(
        [
            rng.standard_normal((6, latent), dtype=np.float32),
            np.full((1, latent), 4.0, np.float32),
            np.full((1, latent), -4.0, np.float32),
        ]
    )
    enc, dec = encoder.eval().cpu(), decoder.eval().cpu()
    mu, logvar = enc(torch.from_numpy(x))
    z = reparameterize(mu, logvar, torch.from_numpy(eps))
    logits, log_scale = split_output(dec(torch.from_numpy(z_in)), pixels, encoder.config.likelihood)
    return {
        f"encoder.{contract.X}": x,
        f"encoder.{contract.EPS}": eps,
        f"encoder.{contract.MU}": mu.numpy(),
        f"encoder.{contract.LOGVAR}": logvar.numpy(),
        f"encoder.{contract.Z}": z.numpy(),
        f"decoder.{contract.Z}": z_in,
        f"decoder.{contract.MEAN}": torch.sigmoid(logits).numpy(),
        f"decoder.{contract.LOGITS}": logits.numpy(),
        **({} if log_scale is None else {f"decoder.{contract.LOG_SCALE}": log_scale.numpy()}),
    }


def golden_spec(
    index: dict[str, dict[str, Any]], likelihood: str = "bernoulli", pixels: int = contract.MNIST_PIXELS
) -> dict[str, Any]:
    """golden.json: the index into golden.bin, the graphs' inputs and outputs, the tolerances, each
    variant's budgets against fp32, and the rule in words for a runtime written in any language."""
    return {
        "format": contract.GOLDEN_FORMAT,
        "data": contract.GOLDEN_DATA_FILE,
        "tensors": index,
        "graphs": {
            graph: {"file": s.file, "inputs": s.input_names, "outputs": s.output_names}
            for graph, s in contract.graphs_for(likelihood).items()
        },
        "tolerance": dict(contract.TOLERANCE),
        "relative_tolerance": dict(contract.RELATIVE_TOLERANCE),
        "variants": {
            v.name: {
                "files": {g: v.file(g) for g in contract.GRAPHS},  # the same two graphs for every likelihood
                "batch": v.batch,
                "budget_vs_fp32": {
                    o: (0.0 if v.exact else v.tolerance(o, pixels))
                    for s in contract.graphs_for(likelihood).values()
                    for o in s.output_names
                },
            }
            for v in contract.VARIANTS.values()
        },
        "check": (
            f"read array '<graph>.<tensor>' as tensors[name].bytes bytes of {contract.GOLDEN_DATA_FILE} from byte "
            "tensors[name].offset: little-endian float32, row-major, shaped tensors[name].shape. "
            "For each graph of a variant, feed arrays '<graph>.<input>' (one row at a time when the "
            "variant's batch is fixed) and compare each output with '<graph>.<output>': "
            "max(|got - want| - relative_tolerance.get(output, 0) * |want|) must be <= "
            "tolerance[device] + budget_vs_fp32[output] (device: cpu or cuda); an output whose budget "
            "is null is not compared for that variant (lossy builds: judged by their cost in nats)"
        ),
        "source": "PyTorch float32 on the CPU, from the checkpoints the graphs were traced from",
    }


def build_golden(encoder: Encoder, decoder: Decoder, real: np.ndarray) -> tuple[bytes, bytes]:
    """(golden.bin bytes, golden.json bytes) for the pair: `golden_arrays`, packed and indexed."""
    data, index = pack_tensors(golden_arrays(encoder, decoder, real))
    spec = golden_spec(index, encoder.config.likelihood, encoder.config.input_dim)
    return data, (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode()

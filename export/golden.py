"""Golden vectors: fixed inputs, the PyTorch outputs for them, and the tolerance each must meet.

Written by export beside the graphs as golden.npz (arrays "<graph>.<tensor>") and golden.json,
both listed in the manifest. `edgevae selftest` (runtime/selftest.py) replays them on a device.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import torch

from edgevae.runtime import contract
from edgevae.train.model import Decoder, Encoder, reparameterize, split_output

GOLDEN_SEED = 7


def save_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz (what np.savez writes), byte-identical from run to run (fixed timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


@torch.no_grad()
def build_golden(encoder: Encoder, decoder: Decoder, real: np.ndarray) -> tuple[bytes, bytes]:
    """(golden.npz bytes, golden.json bytes) from PyTorch on fixed inputs: six real digits, a blank
    and a uniform-noise image for the encoder; six draws of N(0, I) and two far-out latents (|z| = 4)
    for the decoder."""
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
    graphs = contract.graphs_for(encoder.config.likelihood)
    arrays = {
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
    spec = {
        "format": contract.GOLDEN_FORMAT,
        "arrays": contract.GOLDEN_FILE,
        "graphs": {
            graph: {"file": s.file, "inputs": s.input_names, "outputs": s.output_names} for graph, s in graphs.items()
        },
        "tolerance": dict(contract.TOLERANCE),
        "relative_tolerance": dict(contract.RELATIVE_TOLERANCE),
        "variants": {
            v.name: {
                "files": {g: v.file(g) for g in graphs},
                "batch": v.batch,
                "budget_vs_fp32": {
                    o: (0.0 if v.exact else v.tolerance(o, pixels)) for s in graphs.values() for o in s.output_names
                },
            }
            for v in contract.VARIANTS.values()
        },
        "check": (
            "for each graph of a variant, feed arrays '<graph>.<input>' (one row at a time when the "
            "variant's batch is fixed) and compare each output with '<graph>.<output>': "
            "max(|got - want| - relative_tolerance.get(output, 0) * |want|) must be <= "
            "tolerance[device] + budget_vs_fp32[output] (device: cpu or cuda); an output whose budget "
            "is null is not compared for that variant (lossy builds: judged by their cost in nats)"
        ),
        "source": "PyTorch float32 on the CPU, from the checkpoints the graphs were traced from",
    }
    return save_npz(arrays), (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode()

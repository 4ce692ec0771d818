"""ONNX Runtime vs PyTorch on the same inputs; a typed error with the max difference on failure.

`measure_parity` runs both graphs (and the reconstruct path: encoder z fed to decoder) for random
and real inputs at several batch sizes and returns the max absolute difference per output;
`validate_parity` raises `ParityError` when any exceeds the contract's tolerance. Logits are
reported as max(|diff| - rtol * |reference|), the contract's allclose-style measure for them.

Each output's allowance is the contract's tolerance plus twice its float32 rounding at those inputs
(`float32_rounding`: how far PyTorch's own float32 result is from the same modules run in float64;
ONNX Runtime may be as far off on the other side). On real
digits that is a few 1e-6; off the data, where an encoder's sigma reaches tens, z = mu + sigma * eps
multiplies logvar's rounding by sigma * |eps| / 2 and the decoder's input grows with z, so float32
itself differs from float64 by more than the tolerance there (the VampPrior `large`: the manifest's
parity.cpu.float32_rounding). A wrong graph differs by far more.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from edgevae.runtime import contract
from edgevae.runtime.devices import PROVIDERS
from edgevae.runtime.errors import DeviceError, EdgeVAEError, ModelError, SelftestError
from edgevae.runtime.files import ModelFiles
from edgevae.runtime.selftest import max_excess, run_selftest
from edgevae.runtime.sessions import make_session_options, start_session
from edgevae.train.model import Decoder, Encoder, reparameterize

from .graphs import DecoderGraph

BATCH_SIZES = (1, 7, 64, 4096)


class ValidationError(EdgeVAEError):
    """An exported graph does not compute what PyTorch computes."""


class ShapeError(ValidationError):
    """An exported graph's output has another shape than PyTorch's for the same inputs."""


@dataclass
class ParityError(ValidationError):
    """The worst of the outputs over tolerance (every failure is counted in `failures`)."""

    graph: str
    output: str
    inputs: str
    batch: int
    max_abs_diff: float
    tolerance: float
    provider: str
    failures: tuple[str, ...] = ()  # every "graph.output (inputs, batch): diff" over tolerance, worst first
    rounding: float = 0.0  # the output's float32 rounding there; twice it is allowed on top of the tolerance

    def __str__(self) -> str:
        others = len(self.failures) - 1
        more = (
            (
                f"; {others} other failure{'s' if others > 1 else ''}: {', '.join(self.failures[1:4])}"
                f"{', ...' if others > 3 else ''}"
            )
            if others > 0
            else ""
        )
        return (
            f"{self.graph} output {self.output!r} differs from PyTorch by max |diff| = {self.max_abs_diff:.3e} "
            f"> tolerance {self.tolerance:.0e} + 2 x float32 rounding {self.rounding:.1e} "
            f"({self.inputs} inputs, batch {self.batch}, {self.provider})"
            f"{more}"
        )


def load_real_images() -> np.ndarray:
    """256 real MNIST test digits (uint8, (256, 784)) shipped with the exporter for validation."""
    ref = resources.files("edgevae.export") / "fixtures" / "mnist_test_256.npy"
    with resources.as_file(ref) as path:
        return np.load(path, allow_pickle=False)


def make_session(blob: bytes, device: str) -> ort.InferenceSession:
    """A session on `device` via the runtime's own start-up checks; ValidationError when the
    provider is missing or did not load."""
    opts = make_session_options()
    opts.log_severity_level = 3
    try:
        return start_session(blob, f"{device} validation session", device, opts)
    except (DeviceError, ModelError) as exc:
        raise ValidationError(str(exc)) from exc


def make_inputs(
    kind: str, batch: int, latent: int, pixels: int, seed: int, real: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(x, eps) float32: 'random' uniform pixels or 'real' images (uint8 rows, default the shipped MNIST
    test digits), tiled to `batch`."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.random((batch, pixels), dtype=np.float32)
    else:
        real = load_real_images() if real is None else real
        x = (np.resize(real, (batch, real.shape[1])) / 255.0).astype(np.float32)
    eps = rng.standard_normal((batch, latent), dtype=np.float32)
    return x, eps


def max_diff(got: np.ndarray, want: np.ndarray, output: str = "") -> float:
    """max |got - want|, less the contract's relative allowance for `output` (0 for most outputs).
    ShapeError when the shapes differ: numpy would broadcast them, or fail with an unclear message."""
    if np.shape(got) != np.shape(want):
        raise ShapeError(f"output {output!r}: ONNX Runtime gave shape {np.shape(got)}, PyTorch {np.shape(want)}")
    return max_excess(got, want, contract.RELATIVE_TOLERANCE.get(output, 0.0))


def check_golden(files: ModelFiles, devices: tuple[str, ...] | list[str]) -> None:
    """Replay the golden vectors with the runtime's self-test on each device; the runtime's
    SelftestError (CLIs exit 1, as `edgevae selftest` does) if any fails."""
    from edgevae.runtime.vae import VAE

    for device in devices:
        report = run_selftest(VAE(files, device=device))
        if not report.passed:
            bad = [c.line() for c in report.checks if not c.passed]
            raise SelftestError(f"golden vectors fail on {report.provider}: {'; '.join(bad)}")


def parity_batches(pixels: int) -> tuple[int, ...]:
    """Batch sizes of the parity gate: up to 4096 for MNIST-sized images, 512 above 1024 values per image
    (a conv graph at 4096 colour images would take minutes on a small CPU, twice per device)."""
    return BATCH_SIZES if pixels <= 1024 else BATCH_SIZES[:-1] + (512,)


def float64_twins(encoder: nn.Module, decoder: nn.Module) -> tuple[nn.Module, DecoderGraph]:
    """Copies of both modules in float64: the reference that tells float32 rounding from a wrong graph."""
    return copy.deepcopy(encoder).double(), DecoderGraph(copy.deepcopy(decoder).double())


def largest_gap(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


@torch.no_grad()
def measure_parity(
    encoder: Encoder,
    decoder: Decoder,
    graphs: dict[str, bytes],
    device: str = "cpu",
    batch_sizes: tuple[int, ...] | None = None,
    seed: int = 0,
    real: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Per (inputs, batch): max |ORT - torch| for every output and the reconstruct path, and each
    output's float32 rounding there (max |torch float32 - torch float64|)."""
    encoder = encoder.eval().cpu()
    decoder = decoder.eval().cpu()
    enc = make_session(graphs["encoder"], device)
    dec = make_session(graphs["decoder"], device)
    specs = contract.graphs_for(encoder.config.likelihood)
    names_e, names_d = specs["encoder"].output_names, specs["decoder"].output_names
    decoder_graph = DecoderGraph(decoder)
    encoder64, decoder64 = float64_twins(encoder, decoder)
    rows = []
    for kind in ("random", "real"):
        for batch in batch_sizes or parity_batches(encoder.config.input_dim):
            x, eps = make_inputs(kind, batch, encoder.config.latent, encoder.config.input_dim, seed + batch, real)
            mu, logvar = encoder(torch.from_numpy(x))
            z = reparameterize(mu, logvar, torch.from_numpy(eps))
            want = {contract.MU: mu, contract.LOGVAR: logvar, contract.Z: z}
            want.update(zip(names_d, decoder_graph(z), strict=True))
            got_e = dict(zip(names_e, enc.run(None, {contract.X: x, contract.EPS: eps}), strict=True))
            got_d = dict(zip(names_d, dec.run(None, {contract.Z: z.numpy()}), strict=True))
            # The whole reconstruct path through ORT alone: encoder z fed to the decoder.
            got_r = dict(zip(names_d, dec.run(None, {contract.Z: got_e[contract.Z]}), strict=True))
            diffs = {f"encoder.{k}": max_diff(got_e[k], want[k].numpy(), k) for k in names_e}
            diffs.update({f"decoder.{k}": max_diff(got_d[k], want[k].numpy(), k) for k in names_d})
            diffs[f"reconstruct.{contract.MEAN}"] = max_diff(got_r[contract.MEAN], want[contract.MEAN].numpy())
            mu64, logvar64 = encoder64(torch.from_numpy(x).double())
            z64 = reparameterize(mu64, logvar64, torch.from_numpy(eps).double())
            want64 = dict(zip(names_e, (mu64, logvar64, z64), strict=True))
            rounding = {f"encoder.{k}": largest_gap(want[k], want64[k]) for k in names_e}
            same_z = decoder64(z.double())  # the decoder's own rounding, on the very z it was given
            rounding.update({f"decoder.{k}": largest_gap(want[k], v) for k, v in zip(names_d, same_z, strict=True)})
            rounding[f"reconstruct.{contract.MEAN}"] = largest_gap(want[contract.MEAN], decoder64(z64)[0])
            rows.append({"inputs": kind, "batch": batch, "max_abs_diff": diffs, "float32_rounding": rounding})
    return rows


def validate_parity(rows: list[dict[str, Any]], device: str = "cpu") -> dict[str, Any]:
    """Every row is checked against the tolerance plus twice its float32 rounding; ParityError for the worst
    output over it (NaN is the worst of all), naming how many others failed; else the summary."""
    tol = contract.TOLERANCE[device]
    worst: dict[str, float] = {}
    worst_rounding: dict[str, float] = {}
    failed: list[tuple[float, str, dict[str, Any], float]] = []
    for row in rows:
        for name, diff in row["max_abs_diff"].items():
            rounding = row.get("float32_rounding", {}).get(name, 0.0)
            rounding = rounding if math.isfinite(rounding) else 0.0  # float32 overflowed: no allowance, fail closed
            if not diff <= tol + 2 * rounding:  # NaN and inf fail too
                failed.append((float("inf") if diff != diff else diff, name, row, rounding))
            worst[name] = max(worst.get(name, 0.0), diff)
            worst_rounding[name] = max(worst_rounding.get(name, 0.0), rounding)
    if failed:
        failed.sort(key=lambda f: -f[0])
        diff, name, row, rounding = failed[0]
        graph, output = name.split(".")
        lines = tuple(f"{n} ({r['inputs']}, batch {r['batch']}): {d:.2e}" for d, n, r, _ in failed)
        diff = row["max_abs_diff"][name]
        raise ParityError(graph, output, row["inputs"], row["batch"], diff, tol, PROVIDERS[device], lines, rounding)
    return {
        "provider": PROVIDERS[device],
        "tolerance": tol,
        "relative_tolerance": contract.RELATIVE_TOLERANCE,
        "batch_sizes": sorted({r["batch"] for r in rows}),
        "inputs": ["random", "real"],
        "max_abs_diff": worst,
        "float32_rounding": worst_rounding,
    }

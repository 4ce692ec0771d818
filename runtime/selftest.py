"""Self-test on the device: run the golden vectors through ONNX Runtime and compare with PyTorch.

    edgevae selftest [--model DIR] [--device cpu|cuda|auto]

`make export` writes golden.bin (fixed inputs and the PyTorch outputs for them, little-endian
float32) and golden.json (its index, and the tolerance each output must meet) beside the graphs;
the manifest covers both. This module needs only numpy and onnxruntime. The files are raw float32
and JSON, so a runtime in any language can run the same check (docs/selftest.md;
web/golden.js does it in JavaScript). A folder from an older export carries golden.npz instead
(golden.json then names it under "arrays" and has no index); it is still read.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import contract
from .arrays import read_npz_bytes
from .errors import ModelError
from .limits import MAX_SIDE_FILE_BYTES

if TYPE_CHECKING:
    from .vae import VAE


def max_excess(got: np.ndarray, want: np.ndarray, rtol: float = 0.0) -> float:
    """max(|got - want| - rtol * |want|) in float64: <= atol means allclose(got, want, rtol, atol).

    A shape mismatch or NaN gives inf, so it can never pass.
    """
    got64, want64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got64.shape != want64.shape:
        return float("inf")
    excess = np.abs(got64 - want64) - rtol * np.abs(want64)
    return float("inf") if excess.size and np.isnan(excess).any() else float(np.max(excess, initial=0.0))


@dataclass(frozen=True)
class Check:
    graph: str
    output: str
    max_diff: float  # max(|got - want| - rtol * |want|)
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_diff <= self.tolerance

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return f"{self.graph}.{self.output}: max |diff| {self.max_diff:.2e} (tolerance {self.tolerance:.2g})  {verdict}"


@dataclass(frozen=True)
class SelftestReport:
    provider: str
    checks: tuple[Check, ...]
    variant: str = contract.DEFAULT_VARIANT

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def worst(self) -> Check:
        return max(self.checks, key=lambda c: c.max_diff / c.tolerance)

    def summary(self) -> str:
        w = self.worst
        state = "pass" if self.passed else f"FAIL ({sum(not c.passed for c in self.checks)} outputs over tolerance)"
        return f"{state}; worst {w.graph}.{w.output} {w.max_diff:.1e} of {w.tolerance:.2g}"


def load_golden(vae: VAE) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The verified golden arrays and spec of the VAE's model folder."""
    spec_blob = vae.files.extra(contract.GOLDEN_SPEC_FILE, "the self-test")
    try:
        spec = json.loads(spec_blob.decode("utf-8"))
        if not isinstance(spec, dict) or spec.get("format") != contract.GOLDEN_FORMAT:
            raise ValueError(f"format is not {contract.GOLDEN_FORMAT!r}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"golden vectors in {vae.files.folder} are unreadable: {exc}") from exc
    if "tensors" not in spec and "arrays" in spec:  # an older export: golden.npz
        return load_legacy_npz(vae, str(spec["arrays"])), spec
    name = str(spec.get("data", contract.GOLDEN_DATA_FILE))
    return unpack_tensors(vae.files.extra(name, "the self-test"), spec.get("tensors"), vae.files.folder / name), spec


def unpack_tensors(data: bytes, index: Any, path: Path) -> dict[str, np.ndarray]:
    """The arrays of golden.bin (`data`) by golden.json's index; ModelError naming the file when an
    entry is malformed or points outside the file."""
    if not isinstance(index, dict) or not index:
        raise ModelError(f"{path}: golden.json has no 'tensors' index; re-export with this version")
    arrays = {}
    for key, entry in index.items():
        shape, offset, size = index_entry(key, entry, path)
        count = math.prod(shape)
        if size != 4 * count or offset + size > len(data):
            raise ModelError(
                f"{path}: index entry {key!r} (shape {shape}, bytes {size}, offset {offset}) does not fit "
                f"the file's {len(data)} bytes as float32 (expected bytes = 4 x {count})"
            )
        arrays[key] = np.frombuffer(data, contract.GOLDEN_NUMPY_DTYPE, count, offset).reshape(shape).astype(np.float32)
    return arrays


def index_entry(key: str, entry: Any, path: Path) -> tuple[list[int], int, int]:
    """(shape, offset, bytes) of one golden.json index entry, or a ModelError naming the file."""
    if isinstance(entry, dict):
        shape, offset, size = entry.get("shape"), entry.get("offset"), entry.get("bytes")
        if (
            entry.get("dtype") == contract.GOLDEN_DTYPE
            and isinstance(shape, list)
            and isinstance(offset, int)
            and isinstance(size, int)
            and all(type(v) is int and v >= 0 for v in [offset, size, *shape])  # no bools, no negatives
        ):
            return [int(d) for d in shape], offset, size
    raise ModelError(
        f"{path}: index entry {key!r} must be dtype {contract.GOLDEN_DTYPE!r} with integer shape, "
        f"offset and bytes >= 0; got {entry!r}"
    )


def load_legacy_npz(vae: VAE, name: str) -> dict[str, np.ndarray]:
    """The golden arrays of an older export's golden.npz (no pickle)."""
    blob = vae.files.extra(name, "the self-test")
    try:
        return read_npz_bytes(blob, name, MAX_SIDE_FILE_BYTES)  # each member's header checked before its data
    except ValueError as exc:
        raise ModelError(f"golden vectors {vae.files.folder / name} are unreadable: {exc}") from exc


def run_selftest(vae: VAE) -> SelftestReport:
    """Run every graph of the VAE's variant on its golden inputs; compare each output with PyTorch's
    within tolerance[device] + the variant's budget against fp32 (outputs without a budget skipped)."""
    arrays, spec = load_golden(vae)
    variant = vae.files.variant
    budgets = spec.get("variants", {}).get(variant, {}).get("budget_vs_fp32")
    if budgets is None and variant != contract.DEFAULT_VARIANT:
        raise ModelError(f"golden vectors in {vae.files.folder} have no budgets for variant {variant!r}; re-export")
    atol = float(spec["tolerance"][vae.device])
    rtols = {k: float(v) for k, v in spec.get("relative_tolerance", {}).items()}
    checks = []
    for graph, gspec in contract.graphs_for(vae.likelihood).items():
        try:
            feeds = {name: arrays[f"{graph}.{name}"] for name in gspec.input_names}
            wants = [arrays[f"{graph}.{name}"] for name in gspec.output_names]
        except KeyError as exc:
            raise ModelError(f"golden vectors in {vae.files.folder} have no array {exc}") from exc
        run = functools.partial(vae.run_graph, graph)
        gots = run_rows(run, gspec.output_names, feeds, vae.fixed_batch)
        for name, got, want in zip(gspec.output_names, gots, wants, strict=True):
            budget = 0.0 if budgets is None else budgets.get(name)
            if budget is None:
                continue
            checks.append(Check(graph, name, max_excess(got, want, rtols.get(name, 0.0)), atol + float(budget)))
    if vae.loaded.likelihood_graph is not None:
        checks.append(likelihood_check(vae, arrays[f"encoder.{contract.X}"]))
    return SelftestReport(vae.providers[0], tuple(checks), variant)


def likelihood_check(vae: VAE, images: np.ndarray, k: int = 8) -> Check:
    """The likelihood graph on this device against the numpy formulas, on the golden images with the
    noise scheme's importance noise (seed 0): each importance weight within contract.LIKELIHOOD_GRAPH_NATS
    plus 1e-6 of its size (the graph sums float32 terms: the golden noise image's weight is about -5800
    nats, where float32 rounding alone moves it by 6e-4)."""
    from .inputs import as_float_images

    x = as_float_images(np.asarray(images))
    mu, logvar = vae.encode(x)
    eps = np.stack([vae._noise.importance(0, i, k, vae.latent) for i in range(len(x))], axis=1)
    feeds = {contract.X: x, contract.MU: mu, contract.LOGVAR: logvar, contract.EPS: eps}
    (got,) = vae.loaded.likelihood_graph.runner()([contract.LOG_W], feeds)  # type: ignore[union-attr]
    if vae.fixed_batch is None:
        want = vae._log_weights(x, mu, logvar, eps)
    else:  # the decoder takes one row per run
        want = np.array(
            [[vae._log_weights(x[i : i + 1], mu[i : i + 1], logvar[i : i + 1], eps[j : j + 1, i : i + 1])[0, 0]
              for i in range(len(x))] for j in range(k)]
        )  # fmt: skip
    return Check("likelihood", contract.LOG_W, max_excess(got, want, rtol=1e-6), contract.LIKELIHOOD_GRAPH_NATS)


def run_rows(run: Any, names: list[str], feeds: dict[str, np.ndarray], fixed_batch: int | None) -> list[np.ndarray]:
    """run(names, feeds) (a session's run), one row per call when the graph's batch is fixed at 1."""
    if fixed_batch is None:
        return list(run(names, feeds))
    n = len(next(iter(feeds.values())))
    rows = [run(names, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([r[j] for r in rows]) for j in range(len(names))]

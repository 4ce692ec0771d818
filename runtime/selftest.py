"""Self-test on the device: run the golden vectors through ONNX Runtime and compare with PyTorch.

    edgevae selftest [--model DIR] [--device cpu|cuda|auto]

`make export` writes golden.npz (fixed inputs and the PyTorch outputs for them) and golden.json
(the tolerance each output must meet) beside the graphs; the manifest covers both. This module
needs only numpy and onnxruntime. The files are plain .npz and JSON, so any runtime can run the
same check (README: "Self-test on any runtime").
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
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
    blob = vae.files.extra(contract.GOLDEN_FILE, "the self-test")
    spec_blob = vae.files.extra(contract.GOLDEN_SPEC_FILE, "the self-test")
    try:
        arrays = read_npz_bytes(blob, contract.GOLDEN_FILE, MAX_SIDE_FILE_BYTES)
        spec = json.loads(spec_blob.decode("utf-8"))
        if spec.get("format") != contract.GOLDEN_FORMAT:
            raise ValueError(f"format is not {contract.GOLDEN_FORMAT!r}")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"golden vectors in {vae.files.folder} are unreadable: {exc}") from exc
    return arrays, spec


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
    return SelftestReport(vae.providers[0], tuple(checks), variant)


def run_rows(run: Any, names: list[str], feeds: dict[str, np.ndarray], fixed_batch: int | None) -> list[np.ndarray]:
    """run(names, feeds) (a session's run), one row per call when the graph's batch is fixed at 1."""
    if fixed_batch is None:
        return list(run(names, feeds))
    n = len(next(iter(feeds.values())))
    rows = [run(names, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([r[j] for r in rows]) for j in range(len(names))]

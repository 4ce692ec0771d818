"""A verified model and its sessions, made ready in one call: what every `VAE` operation runs through.

    model = open_model("my-model", "cpu", variant="int8")   # a folder, a packaged name, or ModelFiles
    (mean,) = model.run("decoder", [contract.MEAN], {contract.Z: z})

`open_model` walks one way: the model folder is found and verified and the variant looked up once
(files.py: ModelFiles, whose `spec` is the contract's Variant); the device is kept within that
variant's devices; one session per graph starts on the resolved providers and is held to the
contract (sessions.py); the result is a `Model`. Nothing above it starts or inspects a session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from . import contract
from .devices import CPU_DEVICE, CUDA_DEVICE, PROVIDERS
from .errors import ModelError
from .files import (  # noqa: F401  (names kept from 0.1.0)
    DEFAULT_MODEL,
    MODEL_DIR_ENV,
    MODEL_NAME_ENV,
    ModelFiles,
    find_model_dir,
    list_packaged_models,
    load_model_files,
)
from .layout import ImageLayout
from .manifest import seal_manifest  # noqa: F401  (names kept from 0.1.0)
from .sessions import (  # noqa: F401  (CPU, CUDA, MAX_THREADS, run_error: names kept from 0.1.0)
    CPU,
    CUDA,
    MAX_THREADS,
    WIDE_ROWS,
    LazySession,
    Runner,
    WideSessions,
    all_cores_options,
    check_session_signature,
    make_runner,
    make_session_options,
    run_error,
    start_session,
)


@dataclass(frozen=True)
class Model:
    """A verified model folder's graphs of one variant, with a started session and runner per graph."""

    files: ModelFiles
    encoder: ort.InferenceSession
    decoder: ort.InferenceSession
    runners: dict[str, Runner]  # "encoder", "decoder" -> run(names, feeds), RunError on failure
    wide: WideSessions | None  # the all-cores sessions of big CPU batches (threads=None), else None
    # the likelihood graph (contract.LIKELIHOOD_FILE), started on first use; None where the folder has
    # none, the likelihood has none, the variant is not an exact build of the fp32 decoder, or the
    # sessions run on one CPU thread (numpy's passes are faster there; the two agree within 1e-3 nats)
    likelihood_graph: LazySession | None = None

    @property
    def spec(self) -> contract.Variant:
        return self.files.spec

    @property
    def likelihood(self) -> str:
        """'bernoulli', 'gaussian' or 'discretized_logistic': the model's p(x|z), from the manifest's config."""
        return str(self.files.config.get("likelihood", "bernoulli"))

    @property
    def graphs(self) -> dict[str, contract.GraphSpec]:
        """The contract's description of each graph (inputs and outputs) for this model's likelihood."""
        return contract.graphs_for(self.likelihood)

    @property
    def layout(self) -> ImageLayout:
        return ImageLayout.from_config(self.files.config)

    @property
    def providers(self) -> list[str]:
        """Execution providers the sessions actually run on, in priority order."""
        return list(self.decoder.get_providers())

    @property
    def device(self) -> str:
        """'cuda' or 'cpu': what the device asked for resolved to."""
        return CUDA_DEVICE if self.providers[0] == PROVIDERS[CUDA_DEVICE] else CPU_DEVICE

    def run(self, graph: str, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime run of "encoder" or "decoder" on checked feeds."""
        return self.runners[graph](names, feeds)

    def session_for(self, graph: str, rows: int) -> ort.InferenceSession:
        """The session a run of `rows` rows of `graph` goes to: the all-cores one for big CPU batches
        (threads=None, sessions.WIDE_ROWS), else the graph's own."""
        if self.wide is not None and rows >= WIDE_ROWS:
            return self.wide.session(graph)
        return self.encoder if graph == "encoder" else self.decoder

    def decoder_outputs(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """What log p(x|z) needs from the decoder (likelihood.log_px_given_z's `logits` and `mean`):
        (logits, None) for bernoulli, (logits, mean) for gaussian, (log_scale, mean) for the discretized logistic."""
        if self.likelihood in contract.SCALED_LIKELIHOODS:
            mean, log_scale = self.run("decoder", [contract.MEAN, contract.LOG_SCALE], {contract.Z: z})
            return log_scale, mean
        if self.likelihood == "gaussian":
            mean, logits = self.run("decoder", [contract.MEAN, contract.LOGITS], {contract.Z: z})
            return logits, mean
        (logits,) = self.run("decoder", [contract.LOGITS], {contract.Z: z})
        return logits, None


def open_model(
    source: str | os.PathLike[str] | ModelFiles | None,
    device: str = "auto",
    *,
    name: str | None = None,
    variant: str = contract.DEFAULT_VARIANT,
    threads: int | None = None,
    optimization_level: str | None = None,
    session_options: ort.SessionOptions | None = None,
) -> Model:
    """The model in `source` (a folder, None for the packaged model `name` or the default, or verified
    ModelFiles) on `device`, ready to run. threads=None with no session_options: single-thread sessions,
    and all-cores ones for big CPU batches (WideSessions)."""
    files = source if isinstance(source, ModelFiles) else load_model_files(source, variant, name)
    if files.fixed_batch not in (None, 1):
        raise ModelError(
            f"variant {files.variant!r} has fixed batch {files.fixed_batch}; "
            "this runtime runs fixed-shape graphs at batch 1 only"
        )
    auto_threads = threads is None and session_options is None
    opts = make_session_options(1 if auto_threads else threads, optimization_level, session_options)
    device = files.session_device(device)  # a variant not for this device is refused here
    sessions = {graph: start_graph(files, graph, device, opts) for graph in ("encoder", "decoder")}
    runners = {graph: make_runner(s, files.spec.file(graph)) for graph, s in sessions.items()}
    wide = None
    if auto_threads and sessions["decoder"].get_providers()[0] == PROVIDERS[CPU_DEVICE] and files.fixed_batch is None:
        wide = WideSessions(files.graphs, {g: files.spec.file(g) for g in files.graphs}, optimization_level)
        for graph, first in (("encoder", contract.X), ("decoder", contract.Z)):
            runners[graph] = wide.route(runners[graph], graph, first)
    # the likelihood graph's runs are always big: with threads=None, every core, spinning off
    lik_opts = all_cores_options(optimization_level) if auto_threads else opts
    # on one CPU thread numpy's passes beat the graph's (make bench): it runs with more threads, or on CUDA
    on_cpu = sessions["decoder"].get_providers()[0] == PROVIDERS[CPU_DEVICE]
    one_cpu_thread = on_cpu and lik_opts.intra_op_num_threads == 1
    likelihood = None if one_cpu_thread else likelihood_session(files, device, lik_opts)
    return Model(files, sessions["encoder"], sessions["decoder"], runners, wide, likelihood)


def likelihood_session(files: ModelFiles, device: str, opts: ort.SessionOptions) -> LazySession | None:
    """The likelihood graph's session, to start on first use, where it serves this model and variant."""
    blob = files.extras.get(contract.LIKELIHOOD_FILE)
    likelihood = str(files.config.get("likelihood", "bernoulli"))
    entry = files.manifest.get("files", {}).get(contract.LIKELIHOOD_FILE)
    built_for = entry.get("likelihood") if isinstance(entry, dict) else None
    # export's gate checks the graph with the manifest as written; a staged model (export's own checks)
    # lists no entry yet, and a manifest whose config was changed since names another likelihood
    if blob is None or not files.spec.exact or likelihood not in contract.GRAPH_LIKELIHOODS:
        return None
    if entry is not None and built_for != likelihood:
        return None
    return LazySession(blob, contract.LIKELIHOOD_FILE, device, opts)


def start_graph(files: ModelFiles, graph: str, device: str, opts: ort.SessionOptions) -> Any:
    """The session of one graph of `files`, checked against the contract's signature."""
    name = files.spec.file(graph)
    session = start_session(files.graphs[graph], name, device, opts)
    layout = ImageLayout.from_config(files.config)
    sizes = {contract.PIXELS: layout.pixels, contract.LATENT: files.latent}
    spec = contract.graphs_for(files.config.get("likelihood"))[graph]
    check_session_signature(session, spec, sizes, files.fixed_batch, str(files.folder / name))
    return session

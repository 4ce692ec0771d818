"""onnxruntime sessions for the runtime: providers, options, start-up checks and fast runners.

`start_session` starts one graph on the resolved providers and re-checks them (CUDA may fail to
load); `check_session_signature` holds the session to the contract; `make_runner` gives a fast
`run` whose onnxruntime failures are `RunError`s; `WideSessions` routes big batches of a CPU model
to sessions that use every core (README, "Speed").
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import onnxruntime as ort

from . import contract
from .devices import CPU_DEVICE, CUDA_DEVICE, PROVIDERS, resolve_device
from .errors import DeviceError, ModelError, RunError
from .limits import check_int

logger = logging.getLogger(__name__)

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
WIDE_ROWS = 64  # with threads=None, batches from this many rows run on all cores (bench/run.py measures it)


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


def all_cores_options(optimization_level: str | None) -> ort.SessionOptions:
    """Options of a session for big batches: onnxruntime's default threads (one per core), spinning off."""
    opts = make_session_options(0, optimization_level)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class LazySession:
    """A session started on first use (once, under a lock), with its runner (make_runner's): for a
    graph that not every call needs, such as the likelihood graph or an all-cores session."""

    def __init__(self, blob: bytes, name: str, device: str, options: ort.SessionOptions) -> None:
        self._blob, self.name, self._device, self._options = blob, name, device, options
        self.started: ort.InferenceSession | None = None
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    def session(self) -> ort.InferenceSession:
        if self.started is None:
            with self._lock:
                if self.started is None:
                    self.started = start_session(self._blob, self.name, self._device, self._options)
        return self.started

    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = make_runner(self.session(), self.name)
        return self._runner


class WideSessions:
    """With threads=None on the CPU: batches under WIDE_ROWS rows run on single-thread sessions (no
    thread-pool wake-up: fastest for these small graphs, and many request threads scale), larger
    ones on sessions using every core with spinning off, each made on first need."""

    def __init__(self, graphs: dict[str, bytes], names: dict[str, str], optimization_level: str | None) -> None:
        opts = all_cores_options(optimization_level)
        self._lazy = {g: LazySession(blob, names[g], CPU_DEVICE, opts) for g, blob in graphs.items()}

    @property
    def sessions(self) -> dict[str, ort.InferenceSession]:
        """graph -> its all-cores session, for those made so far."""
        return {g: lazy.started for g, lazy in self._lazy.items() if lazy.started is not None}

    @property
    def runners(self) -> dict[str, Runner]:
        """graph -> its all-cores runner, for those made so far."""
        return {g: lazy.runner() for g, lazy in self._lazy.items() if lazy.started is not None}

    def route(self, small: Runner, graph: str, first: str) -> Runner:
        """A runner that sends batches of WIDE_ROWS rows or more (of input `first`) to the all-cores session."""
        wide = self._lazy[graph]

        def run(names: list[str], feeds: dict[str, Any]) -> list[Any]:
            if len(feeds[first]) < WIDE_ROWS:
                return small(names, feeds)
            return wide.runner()(names, feeds)

        return run

    def runner(self, graph: str) -> Runner:
        """The all-cores runner of `graph` (onnxruntime's default threads, spinning off), made once."""
        return self._lazy[graph].runner()

    def session(self, graph: str) -> ort.InferenceSession:
        """The all-cores session of `graph`, made once (for runs that bind their own inputs and outputs)."""
        return self._lazy[graph].session()

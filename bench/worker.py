"""One benchmark contender in its own process (started by bench/run.py, which alternates them).

    python bench/worker.py CONTENDER --threads T [--variant V] [--cells encoder/1,decoder/1024,...]

CONTENDER: torch (eager, inference_mode), torch-compile, bare (a plain onnxruntime session.run on the
fp32 graphs), runtime (edgevae's VAE, --variant), gemm (numpy sgemm and an onnxruntime MatMul on the
decoder's shapes and a square 1024^3), threads-throughput (many small requests on one VAE), cold
(cold start: the parent times it). Prints one JSON object: {cell: [seconds per call, ...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: the cold-start contender must not pay for them
    import onnx
    import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "runtime" / "models" / "default"
CHECKPOINTS = REPO / "artifacts" / "checkpoints"
OPS = ("encoder", "decoder", "sample", "reconstruct")
BATCHES = (1, 64, 1024)
LIKELIHOOD_K = 1000  # importance samples of the log_likelihood cells (bench/run.py counts their FLOPs)


def time_calls(fn: Callable[[], object], budget_s: float, max_calls: int = 3000) -> list[float]:
    """Seconds per call: a warm-up, then single calls until the time budget or max_calls is spent."""
    warm_end = time.perf_counter() + min(0.05, budget_s / 4)
    while time.perf_counter() < warm_end:
        fn()
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < max_calls and (len(times) < 5 or time.perf_counter() < end):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) * 1e-9)
    return times


def inputs(batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    real = np.load(REPO / "export" / "fixtures" / "mnist_test_256.npy")
    rng = np.random.default_rng(batch)
    x = (np.resize(real, (batch, 784)) / 255.0).astype(np.float32)
    return x, rng.standard_normal((batch, 20), dtype=np.float32), rng.standard_normal((batch, 20), dtype=np.float32)


def torch_cells(threads: int | None, compiled: bool) -> dict[str, Callable[[int], Callable[[], object]]]:
    import torch

    from edgevae.train import checkpoint
    from edgevae.train.model import reparameterize

    if threads is not None:
        torch.set_num_threads(threads)
    torch.inference_mode().__enter__()  # for the whole worker process, as a serving loop would
    encoder, decoder = checkpoint.load_pair(CHECKPOINTS)
    encoder.eval()
    decoder.eval()
    enc, dec = (torch.compile(encoder), torch.compile(decoder)) if compiled else (encoder, decoder)
    gen = torch.Generator()

    def encode(batch: int) -> Callable[[], object]:
        x, eps, _ = (torch.from_numpy(a) for a in inputs(batch))
        return lambda: reparameterize(*enc(x), eps)

    def decode(batch: int) -> Callable[[], object]:
        z = torch.from_numpy(inputs(batch)[2])
        return lambda: torch.sigmoid(dec(z))

    def sample(batch: int) -> Callable[[], object]:
        def run() -> object:
            gen.manual_seed(batch)
            return torch.sigmoid(dec(torch.randn((batch, 20), generator=gen)))

        return run

    def reconstruct(batch: int) -> Callable[[], object]:
        x = torch.from_numpy(inputs(batch)[0])
        return lambda: torch.sigmoid(dec(enc(x)[0]))

    return {"encoder": encode, "decoder": decode, "sample": sample, "reconstruct": reconstruct}


def bare_cells(threads: int | None) -> dict[str, Callable[[int], Callable[[], object]]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    enc = ort.InferenceSession(str(MODEL / "encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(MODEL / "decoder.onnx"), opts, providers=["CPUExecutionProvider"])

    def encode(batch: int) -> Callable[[], object]:
        x, eps, _ = inputs(batch)
        return lambda: enc.run(None, {"x": x, "eps": eps})

    def decode(batch: int) -> Callable[[], object]:
        z = inputs(batch)[2]
        return lambda: dec.run(["mean"], {"z": z})

    def sample(batch: int) -> Callable[[], object]:
        return lambda: dec.run(
            ["mean"], {"z": np.random.default_rng(batch).standard_normal((batch, 20), dtype=np.float32)}
        )

    def reconstruct(batch: int) -> Callable[[], object]:
        x = inputs(batch)[0]
        zeros = np.zeros((batch, 20), np.float32)
        return lambda: dec.run(["mean"], {"z": enc.run(["z"], {"x": x, "eps": zeros})[0]})

    return {"encoder": encode, "decoder": decode, "sample": sample, "reconstruct": reconstruct}


def runtime_cells(threads: int | None, variant: str) -> dict[str, Callable[[int], Callable[[], object]]]:
    from edgevae.runtime import VAE

    vae = VAE(device="cpu", variant=variant, threads=threads)

    def encode(batch: int) -> Callable[[], object]:
        x, eps, _ = inputs(batch)
        return lambda: vae.encode_z(x, eps=eps)

    def decode(batch: int) -> Callable[[], object]:
        z = inputs(batch)[2]
        return lambda: vae.decode(z)

    def sample(batch: int) -> Callable[[], object]:
        return lambda: vae.sample(batch, seed=batch)

    def reconstruct(batch: int) -> Callable[[], object]:
        x = inputs(batch)[0]
        return lambda: vae.reconstruct(x)

    def log_likelihood(batch: int) -> Callable[[], object]:
        x = inputs(batch)[0]
        return lambda: vae.log_likelihood(x, k=LIKELIHOOD_K, seed=0)

    def score(batch: int) -> Callable[[], object]:
        x = inputs(batch)[0]
        return lambda: vae.score(x)  # the default score, k of the model's statistics

    return {
        "encoder": encode,
        "decoder": decode,
        "sample": sample,
        "reconstruct": reconstruct,
        "log_likelihood": log_likelihood,
        "score": score,
    }


def gemm_cells(threads: int, budget_s: float) -> dict[str, list[float]]:
    """Seconds per call of the decoder's two GEMMs at batch 1024 (numpy and onnxruntime MatMul), of a
    square 1024^3 sgemm in numpy, and of onnxruntime's integer GEMM (MatMulInteger, uint8 x int8 ->
    int32, the kernel under the int8 variant's DynamicQuantizeMatMul) on the decoder's two shapes and
    on 1024^3. FLOP (and integer op) counts are in bench/run.py."""
    from onnx import TensorProto, helper, numpy_helper
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    z = rng.standard_normal((1024, 20), dtype=np.float32)
    w1 = rng.standard_normal((20, 200), dtype=np.float32)
    w2 = rng.standard_normal((200, 784), dtype=np.float32)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    out: dict[str, list[float]] = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        out["numpy-decoder-gemms"] = time_calls(lambda: (z @ w1) @ w2, budget_s)
        out["numpy-square-1024"] = time_calls(lambda: a @ a, budget_s, 200)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["z", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
        "gemms",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 784])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    sess = start_gemm_session(graph, threads)
    out["onnxruntime-decoder-gemms"] = time_calls(lambda: sess.run(None, {"z": z}), budget_s)
    # The integer GEMMs take uint8 activations and int8 weights, as the int8 variant's do; their int32
    # results are graph outputs (an unused one would be pruned), so both products are timed.
    feeds = {"zq": rng.integers(0, 256, (1024, 20), np.uint8), "hq": rng.integers(0, 256, (1024, 200), np.uint8)}
    graph = helper.make_graph(
        [
            helper.make_node("MatMulInteger", ["zq", "w1q"], ["h32"]),
            helper.make_node("MatMulInteger", ["hq", "w2q"], ["y32"]),
        ],
        "int8-gemms",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, ["batch", v.shape[1]]) for n, v in feeds.items()],
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", k]) for n, k in (("h32", 200), ("y32", 784))],
        [numpy_helper.from_array(rng.integers(-127, 128, w.shape, np.int8), n) for n, w in (("w1q", w1), ("w2q", w2))],
    )
    sess_int8 = start_gemm_session(graph, threads)
    out["onnxruntime-int8-decoder-gemms"] = time_calls(lambda: sess_int8.run(None, feeds), budget_s)
    aq = rng.integers(0, 256, (1024, 1024), np.uint8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["aq", "bq"], ["c32"])],
        "int8-square",
        [helper.make_tensor_value_info("aq", TensorProto.UINT8, [1024, 1024])],
        [helper.make_tensor_value_info("c32", TensorProto.INT32, [1024, 1024])],
        [numpy_helper.from_array(rng.integers(-127, 128, (1024, 1024), np.int8), "bq")],
    )
    sess_square = start_gemm_session(graph, threads)
    out["onnxruntime-int8-square-1024"] = time_calls(lambda: sess_square.run(None, {"aq": aq}), budget_s, 200)
    return out


def start_gemm_session(graph: onnx.GraphProto, threads: int) -> ort.InferenceSession:
    """A CPU session of a one-off GEMM graph (opset 17) on `threads` intra-op threads."""
    import onnxruntime as ort
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def throughput(threads_list: list[int], seconds: float = 1.0) -> dict[str, list[float]]:
    """Requests per second on one VAE (threads=1 sessions) from N Python threads, each looping over
    its own requests: sample(1, seed) and decode of 64 latents; and a bare session.run at batch 1,
    the floor set by onnxruntime's Python binding and the GIL."""
    import threading

    import onnxruntime as ort

    from edgevae.runtime import VAE

    vae = VAE(device="cpu", threads=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    bare = ort.InferenceSession(str(MODEL / "decoder.onnx"), opts, providers=["CPUExecutionProvider"])
    z1, z64 = np.zeros((1, 20), np.float32), np.zeros((64, 20), np.float32)
    requests: dict[str, Callable[[int], object]] = {
        "sample(1, seed)": lambda i: vae.sample(1, seed=i),
        "decode(64 latents)": lambda i: vae.decode(z64),
        "bare session.run, batch 1": lambda i: bare.run(["mean"], {"z": z1}),
    }
    out: dict[str, list[float]] = {}
    for name, fn in requests.items():
        for n in threads_list:
            rates = []
            for _ in range(3):
                counts = [0] * n
                end = time.perf_counter() + seconds / 3

                def work(k: int, fn: Callable[[int], object], end: float, counts: list[int]) -> None:
                    i = 0
                    while time.perf_counter() < end:
                        fn(i)
                        i += 1
                    counts[k] = i

                workers = [threading.Thread(target=work, args=(k, fn, end, counts)) for k in range(n)]
                t0 = time.perf_counter()
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                rates.append(sum(counts) / (time.perf_counter() - t0))
            out[f"{name}/{n}"] = rates
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("contender", choices=["torch", "torch-compile", "bare", "runtime", "gemm", "throughput", "cold"])
    p.add_argument(
        "--threads", default="1", help="intra-op threads, or 'default' for each contender's own default (default: 1)"
    )
    p.add_argument("--variant", default="fp32", help="runtime variant (default: fp32)")
    p.add_argument(
        "--cells",
        default=",".join(f"{o}/{b}" for o in OPS for b in BATCHES),
        help="op/batch pairs (default: every op at 1, 64 and 1024)",
    )
    p.add_argument("--budget", type=float, default=0.25, help="seconds of timed calls per cell (default: 0.25)")
    args = p.parse_args()
    threads = None if args.threads == "default" else int(args.threads)
    if args.contender == "gemm":
        result: dict[str, object] = gemm_cells(threads or os.cpu_count() or 1, args.budget)
    elif args.contender == "throughput":
        result = throughput([1, 2, 4])
    elif args.contender == "cold":
        t0 = time.perf_counter()
        from edgevae.runtime import VAE

        VAE(device="cpu").sample(1, seed=0)
        result = {"in_process_s": time.perf_counter() - t0}
    else:
        try:
            makers = (
                torch_cells(threads, args.contender == "torch-compile")
                if args.contender.startswith("torch")
                else bare_cells(threads)
                if args.contender == "bare"
                else runtime_cells(threads, args.variant)
            )
            result = {}
            for cell in args.cells.split(","):
                op, batch = cell.split("/")
                result[cell] = time_calls(makers[op](int(batch)), args.budget)
        except Exception as exc:  # noqa: BLE001 - a contender that cannot run is reported, not fatal
            result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

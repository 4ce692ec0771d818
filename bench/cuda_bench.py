"""The GPU speed table: `make cuda-bench` (= python bench/cuda_bench.py), for whoever has an NVIDIA GPU.

One table, in alternating rounds with each contender in its own process, median (p10-p90) over the
rounds' medians:
- log_likelihood k=1000 (s per 1000 images) and score (ms per image) through the API, each with its
  share of the same round's GEMM rate (onnxruntime MatMul on the decoder's shapes, same provider);
- decode at batch 1 / 1024 / 65,536 through the API (numpy in, numpy out), through device-resident
  I/O (`decode_on_device`, the latents already on the device), and PyTorch eager on the same GPU
  (when torch with CUDA is importable there).

    python bench/cuda_bench.py [--device cuda|cpu] [--rounds 3] [--budget 0.5] [--out DIR]

It uses the Python that `make cuda-test` finds (an importable onnxruntime-gpu, else .venv-cuda).
Where no NVIDIA GPU is present it says so in one line and exits 0; --device cpu runs the same table
on the CPU provider (how the script is checked without a GPU: tests/test_cuda_bench.py). It writes
DIR/cuda_bench.json and .md (default: artifacts/; nothing is written on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_test import cuda_python, gpu_name, project_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DECODE_BATCHES = (1, 1024, 65536)
LL_IMAGES, LL_K, SCORE_IMAGES = 100, 1000, 1024
CONTENDERS = ("api", "bound", "torch", "gemm")


def time_calls(fn: Callable[[], object], budget_s: float, sync: Callable[[], None]) -> list[float]:
    """Seconds per call (synchronized), after a warm-up: at least 3 calls, then until the budget is spent."""
    fn()
    sync()
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def api_cells(device: str) -> dict[str, Callable[[], object]]:
    from edgevae.runtime import VAE

    vae = VAE(device=device)
    x = (np.resize(np.load(REPO / "export" / "fixtures" / "mnist_test_256.npy"), (SCORE_IMAGES, 784)) / 255.0).astype(
        np.float32
    )
    cells: dict[str, Callable[[], object]] = {
        "log_likelihood": lambda: vae.log_likelihood(x[:LL_IMAGES], k=LL_K, seed=0),
        "score": lambda: vae.score(x),
    }
    for b in DECODE_BATCHES:
        z = vae.sample_latent(b, seed=b)
        cells[f"decode/{b}"] = lambda z=z: vae.decode(z)
    return cells


def bound_cells(device: str) -> dict[str, Callable[[], object]]:
    import onnxruntime as ort

    from edgevae.runtime import VAE

    vae = VAE(device=device)
    cells: dict[str, Callable[[], object]] = {}
    for b in DECODE_BATCHES:
        z = ort.OrtValue.ortvalue_from_numpy(vae.sample_latent(b, seed=b), device, 0)
        cells[f"decode/{b}"] = lambda z=z: vae.decode_on_device(z)
    return cells


def torch_cells(device: str) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    import torch

    from edgevae.train import checkpoint

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 against fp32
    torch.inference_mode().__enter__()
    _, decoder = checkpoint.load_pair(REPO / "artifacts" / "checkpoints")
    decoder = decoder.eval().to(device)
    cells: dict[str, Callable[[], object]] = {}
    for b in DECODE_BATCHES:
        z = torch.randn((b, 20), generator=torch.Generator().manual_seed(b)).to(device)
        cells[f"decode/{b}"] = lambda z=z: torch.sigmoid(decoder(z))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return cells, sync


def gemm_cells(device: str) -> dict[str, Callable[[], object]]:
    """The decoder's two MatMuls at batch 65,536 in onnxruntime on the same provider, bound on the device."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgevae.runtime.devices import PROVIDERS

    rng = np.random.default_rng(0)
    w = [rng.standard_normal(s, dtype=np.float32) for s in ((20, 200), (200, 784))]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["z", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
        "gemms",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 784])],
        [numpy_helper.from_array(w[0], "w1"), numpy_helper.from_array(w[1], "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=[PROVIDERS[device]])
    z = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((65536, 20), dtype=np.float32), device, 0)

    def run() -> object:
        binding = sess.io_binding()
        binding.bind_ortvalue_input("z", z)
        binding.bind_output("y", device, 0)
        sess.run_with_iobinding(binding)
        return binding

    return {"gemm/65536": run}


def worker(contender: str, device: str, budget: float) -> dict[str, list[float]]:
    sync: Callable[[], None] = lambda: None  # noqa: E731 - onnxruntime's runs return when done
    if contender == "torch":
        cells, sync = torch_cells(device)
    else:
        cells = {"api": api_cells, "bound": bound_cells, "gemm": gemm_cells}[contender](device)
    return {cell: time_calls(fn, budget, sync) for cell, fn in cells.items()}


SCORE_K = 16  # the k of the default model's score statistics (score's default; a test keeps them equal)


def run_worker(python: str, env: dict[str, str], contender: str, device: str, budget: float) -> dict[str, Any]:
    cmd = [python, __file__, "--worker", contender, "--device", device, "--budget", str(budget)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    except subprocess.TimeoutExpired:
        return {"error": "no result in 300 s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {f"p{q}": float(np.percentile(values, q)) for q in (10, 50, 90)} | {"rounds": len(values)}


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per contender and cell: the median over rounds of each round's median; GEMM shares per round."""
    cells: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, str] = {}
    for r in rounds:
        for contender, got in r.items():
            if "error" in got:
                errors[contender] = got["error"]
                continue
            for cell, times in got.items():
                cells.setdefault(contender, {}).setdefault(cell, []).append(float(np.median(times)))
    shares: dict[str, list[float]] = {"log_likelihood": [], "score": []}
    for r in rounds:
        gemm = r.get("gemm", {}).get("gemm/65536")
        api = r.get("api", {})
        if gemm and "error" not in api:
            g = float(np.median(gemm))
            shares["log_likelihood"].append(LL_IMAGES * LL_K * g / (65536 * float(np.median(api["log_likelihood"]))))
            shares["score"].append(SCORE_IMAGES * SCORE_K * g / (65536 * float(np.median(api["score"]))))
    return {
        "cells": {c: {cell: spread(v) for cell, v in by.items()} for c, by in cells.items()},
        "shares": {k: spread(v) for k, v in shares.items()},
        "errors": errors,
    }


def cell_text(stat: dict[str, float] | None, scale: float, fmt: str) -> str:
    if stat is None:
        return "-"
    return f"{fmt.format(stat['p50'] * scale)} ({fmt.format(stat['p10'] * scale)}-{fmt.format(stat['p90'] * scale)})"


def render(report: dict[str, Any]) -> str:
    s = report["summary"]
    c, sh = s["cells"], s["shares"]

    def get(contender: str, cell: str) -> dict[str, float] | None:
        return c.get(contender, {}).get(cell)

    lines = [
        f"{report['device_name']}; onnxruntime {report['onnxruntime']}; {report['rounds']} alternating rounds, "
        "each contender in its own process; median (p10-p90) over the rounds' medians.",
        "",
        "| job | through the API | device-resident I/O | PyTorch eager | share of GEMM rate |",
        "|---|---:|---:|---:|---:|",
        f"| log_likelihood k={LL_K}, s per 1000 images | "
        f"{cell_text(get('api', 'log_likelihood'), 1000 / LL_IMAGES, '{:.3g}')} | - | - | "
        f"{cell_text(sh['log_likelihood'], 100, '{:.0f}%')} |",
        f"| score (k={SCORE_K}), ms per image | "
        f"{cell_text(get('api', 'score'), 1e3 / SCORE_IMAGES, '{:.3g}')} | - | - | "
        f"{cell_text(sh['score'], 100, '{:.0f}%')} |",
    ]
    for b in DECODE_BATCHES:
        scale, unit = (1e6, "us") if b == 1 else (1e3, "ms")
        row = [cell_text(get(k, f"decode/{b}"), scale, "{:.3g}") for k in ("api", "bound", "torch")]
        lines.append(f"| decode batch {b:,}, {unit} | " + " | ".join(row) + " | |")
    lines += [""] + [f"- {k} could not run: {v}" for k, v in s["errors"].items()]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="provider to time (default: cuda)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    p.add_argument("--budget", type=float, default=0.5, help="timed seconds per cell per round (default: 0.5)")
    p.add_argument(
        "--out", type=Path, default=REPO / "artifacts", help="folder for cuda_bench.json/.md (default: artifacts)"
    )
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)  # internal: one contender, JSON out
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.budget)))
        return 0
    gpu = gpu_name()
    if args.device == "cuda" and gpu is None:
        print("make cuda-bench: no NVIDIA GPU on this machine (nvidia-smi found none); nothing measured")
        return 0
    env = project_env()
    python, version = cuda_python(env) if args.device == "cuda" else (sys.executable, "")
    if not version:
        import onnxruntime

        version = onnxruntime.__version__
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        order = CONTENDERS[r % len(CONTENDERS) :] + CONTENDERS[: r % len(CONTENDERS)]
        rounds.append({name: run_worker(python, env, name, args.device, args.budget) for name in order})
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    report = {
        "device": args.device,
        "device_name": gpu if args.device == "cuda" else "CPU provider (no GPU)",
        "onnxruntime": version,
        "rounds": args.rounds,
        "raw": rounds,
    }
    report["summary"] = summarize(rounds)
    text = render(report)
    from edgevae.runtime.atomic import write_bytes_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / "cuda_bench.json", (json.dumps(report, indent=2) + "\n").encode())
    write_bytes_atomic(args.out / "cuda_bench.md", text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a graph's time goes, node by node, from onnxruntime's own profiler: `make profile`.

    .venv/bin/python bench/profile_nodes.py [--graph decoder] [--variant fp32] [--batch 1024] [--threads 1] [--runs 50]

Runs one graph of the packaged model (or --model DIR) on the CPU provider with profiling on, reads
the profile onnxruntime writes, and prints each node after graph optimization (fusions included)
with its median kernel time per call and its share of the kernels' total, then the share of the
matrix products. It writes nothing; the profile file goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgevae.runtime import VAE, contract

MATMULS = {"Gemm", "FusedGemm", "MatMul", "FusedMatMul", "MatMulInteger", "DynamicQuantizeMatMul", "QGemm"}


@dataclass(frozen=True)
class NodeTime:
    node: str
    op: str
    us: float  # median kernel time per call
    share: float  # of all kernels' time


def profile_graph(vae: VAE, graph: str, batch: int, threads: int, runs: int) -> list[NodeTime]:
    """Median kernel time per call of each node of one graph, in the order they ran."""
    spec = contract.ENCODER if graph == "encoder" else contract.DECODER
    blob = vae.files.graphs[graph]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    rng = np.random.default_rng(0)
    width = vae.pixels if graph == "encoder" else vae.latent
    feeds = {spec.inputs[0].name: rng.random((batch, width), dtype=np.float32)}
    if graph == "encoder":
        feeds[contract.EPS] = rng.standard_normal((batch, vae.latent), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "edgevae")
        session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        for _ in range(runs):
            session.run(outputs, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            node = event["name"][: -len("_kernel_time")]
            per_node[node].append(float(event["dur"]))
            op_of[node] = event.get("args", {}).get("op_name", "?")
    medians = {n: float(np.median(t[len(t) // 5 :])) for n, t in per_node.items()}
    total = sum(medians.values()) or 1.0
    return [NodeTime(n, op_of[n], us, us / total) for n, us in medians.items()]


def render(rows: list[NodeTime], title: str) -> str:
    lines = [title, "", "| node | op | median us per call | share |", "|---|---|---:|---:|"]
    lines += [f"| {r.node} | {r.op} | {r.us:,.0f} | {r.share:.0%} |" for r in rows]
    matmul = sum(r.share for r in rows if r.op in MATMULS)
    lines += ["", f"Matrix products: {matmul:.0%} of kernel time; the rest is everything else."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: the packaged model)")
    p.add_argument("--graph", choices=("encoder", "decoder"), default="decoder", help="(default: decoder)")
    p.add_argument("--variant", default=contract.DEFAULT_VARIANT, help="(default: fp32)")
    p.add_argument("--batch", type=int, default=1024, help="rows per call (default: 1024)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
    p.add_argument("--runs", type=int, default=50, help="calls profiled; the first fifth is warm-up (default: 50)")
    args = p.parse_args()
    vae = VAE(args.model, device="cpu", variant=args.variant)
    batch = vae.fixed_batch or args.batch
    rows = profile_graph(vae, args.graph, batch, args.threads, args.runs)
    title = f"{args.graph}, variant {args.variant}, batch {batch}, {args.threads} thread(s), CPU provider"
    print(render(rows, title))


if __name__ == "__main__":
    main()

"""Past one machine, measured on this one: Ray Data throughput and torchrun seconds per epoch.

    .venv/bin/python bench/scale.py --data-dir ../shared/data/mnist [--rounds 3]

Ray: images per second scoring (k=16) and reconstructing 20,000 MNIST digits, one process with the
runtime (threads=1, and onnxruntime's default threads) against Ray Data with 2 actors of 1 thread
(a local cluster started for the run, its start-up excluded). torchrun: seconds per epoch of the
default preset on all 60,000 training images, 1 process against 2 (one epoch each, iw_samples=0).
Each contender runs in its own process; rounds alternate; medians with min-max. Writes
artifacts/scale.json and artifacts/scale.md (the tables, also printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
import numpy as np
from edgevae.train.data import load_split
mode, task, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
test, _ = load_split(data_dir, "test"); train, _ = load_split(data_dir, "train")
x = np.concatenate([test, train[:10_000]]).reshape(-1, 784)
if mode == "ray":
    import ray
    from edgevae.runtime.raydata import map_vae, split_blocks
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=400 * 2**20)
    map_vae(split_blocks(x[:2048]), task, actors=2).materialize()  # actors started, graphs warm
    t = time.perf_counter(); map_vae(split_blocks(x), task, actors=2).materialize(); s = time.perf_counter() - t
    ray.shutdown()
else:
    from edgevae.runtime import VAE
    vae = VAE(device="cpu", threads=1 if mode == "single-1" else None)
    run = (lambda: vae.score(x)) if task == "score" else (lambda: vae.reconstruct(x))
    vae.score(x[:64]); vae.reconstruct(x[:64])
    t = time.perf_counter(); run(); s = time.perf_counter() - t
print(json.dumps({"images_per_s": len(x) / s}))
"""


def ray_round(mode: str, task: str, data_dir: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, task, data_dir], capture_output=True, text=True, timeout=900, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def epoch_seconds(processes: int, data_dir: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        cmd = (head if processes > 1 else [sys.executable]) + [
            "-m",
            "edgevae.train",
            "--data-dir",
            data_dir,
            "--out",
            out,
            "--epochs",
            "1",
            "--iw-samples",
            "0",
            "--device",
            "cpu",
            "--no-progress",
        ]
        subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True)
        return float(json.loads((Path(out) / "metrics.json").read_text())["history"][0]["seconds"])


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="MNIST folder")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    args = p.parse_args()
    ray_modes = ("single-1", "single-default", "ray")
    got: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for task in ("score", "reconstruct"):
            for mode in ray_modes:
                got.setdefault(f"{task}/{mode}", []).append(ray_round(mode, task, args.data_dir))
        for procs in (1, 2):
            got.setdefault(f"epoch/{procs}", []).append(epoch_seconds(procs, args.data_dir))
    report = {k: summarize(v) for k, v in got.items()}
    (REPO / "artifacts" / "scale.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = [
        "| 20,000 images | one process, 1 thread | one process, default threads | Ray, 2 actors x 1 thread |",
        "|---|---:|---:|---:|",
    ]
    for task in ("score", "reconstruct"):
        cells = [
            f"{report[f'{task}/{m}']['median']:,.0f} ({report[f'{task}/{m}']['min']:,.0f}-"
            f"{report[f'{task}/{m}']['max']:,.0f})"
            for m in ray_modes
        ]
        lines.append(f"| {task} (images/s) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| torchrun, default preset, 60,000 images | 1 process | 2 processes |",
        "|---|---:|---:|",
        "| seconds per epoch | "
        + " | ".join(
            f"{report[f'epoch/{n}']['median']:.2f} ({report[f'epoch/{n}']['min']:.2f}-"
            f"{report[f'epoch/{n}']['max']:.2f})"
            for n in (1, 2)
        )
        + " |",
    ]
    (REPO / "artifacts" / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

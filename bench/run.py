"""Benchmarks, measured in one run so the ratios are comparable: `make bench`.

Reports export wall time and file sizes, ONNX Runtime vs PyTorch decode/reconstruct speed (CPU),
and training seconds per epoch for each preset (needs MNIST: $EDGEVAE_DATA_DIR). Writes
artifacts/bench.json. Times are medians of repeats; the machine is shared, so read the ratios.
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgevae.export.convert import export_model
from edgevae.runtime import VAE
from edgevae.runtime.atomic import write_bytes_atomic
from edgevae.train import checkpoint
from edgevae.train.config import PRESETS
from edgevae.train.loop import run_training

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "artifacts" / "checkpoints"


def median_seconds(fn: Callable[[], object], repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_export(out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    paths, parity = export_model(CHECKPOINTS, out)
    seconds = time.perf_counter() - t0
    sizes = {p.name: p.stat().st_size for p in paths}
    return {"export_seconds": seconds, "file_bytes": sizes,
            "max_abs_diff_cpu": max(parity["cpu"]["max_abs_diff"].values())}


@torch.no_grad()
def bench_speed(model_dir: Path) -> list[dict[str, Any]]:
    encoder, decoder = checkpoint.load_pair(CHECKPOINTS)
    vae = VAE(model_dir, device="cpu")
    rows = []
    for batch in (1, 64, 4096):
        z = np.random.default_rng(0).standard_normal((batch, 20), dtype=np.float32)
        x = np.random.default_rng(1).random((batch, 784), dtype=np.float32)
        zt, xt = torch.from_numpy(z), torch.from_numpy(x)
        ort_dec = median_seconds(lambda: vae.decode(z))
        pt_dec = median_seconds(lambda: torch.sigmoid(decoder(zt)))
        ort_rec = median_seconds(lambda: vae.reconstruct(x))
        pt_rec = median_seconds(lambda: torch.sigmoid(decoder(encoder(xt)[0])))
        rows.append({"batch": batch, "ort_decode_s": ort_dec, "torch_decode_s": pt_dec,
                     "decode_speedup_ort_over_torch": pt_dec / ort_dec, "ort_reconstruct_s": ort_rec,
                     "torch_reconstruct_s": pt_rec, "reconstruct_speedup_ort_over_torch": pt_rec / ort_rec})
    return rows


def bench_training(data_dir: str, out: Path) -> dict[str, float]:
    result = {}
    for name, preset in PRESETS.items():
        config = dataclasses.replace(preset, epochs=1, iw_samples=0)
        metrics = run_training(config, data_dir, out / name, device="cpu", progress=False)
        result[f"{name}_seconds_per_epoch"] = metrics["history"][0]["seconds"]
    return result


def main() -> int:
    torch.set_num_threads(os.cpu_count() or 1)
    report: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        report["export"] = bench_export(Path(tmp) / "onnx")
        report["speed"] = bench_speed(Path(tmp) / "onnx")
        data_dir = os.environ.get("EDGEVAE_DATA_DIR")
        if data_dir:
            report["training"] = bench_training(data_dir, Path(tmp) / "train")
        else:
            print("training epochs not measured: set EDGEVAE_DATA_DIR to MNIST", file=sys.stderr)
    e = report["export"]
    print(f"export: {e['export_seconds']:.2f}s, " + ", ".join(f"{k} {v:,} B" for k, v in e["file_bytes"].items()))
    print("batch  decode ORT/torch speedup  reconstruct ORT/torch speedup")
    for r in report["speed"]:
        print(f"{r['batch']:>5}  {r['decode_speedup_ort_over_torch']:>10.2f}x               "
              f"{r['reconstruct_speedup_ort_over_torch']:>10.2f}x")
    for k, v in report.get("training", {}).items():
        print(f"{k}: {v:.1f}s")
    write_bytes_atomic(REPO / "artifacts" / "bench.json", (json.dumps(report, indent=2) + "\n").encode())
    print("wrote artifacts/bench.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks people can trust: `make bench`.

Every contender runs in its own process (bench/worker.py), so no two thread pools share a process;
the contenders alternate, round after round, and every per-call time of every round is pooled:
the table gives the median and the spread (p10-p90). Contenders: PyTorch eager (same weights,
inference_mode, same thread count), torch.compile, a bare onnxruntime `session.run`, the edgevae
runtime on each variant, and the best GEMM rate (numpy sgemm and an onnxruntime MatMul on the
decoder's shapes; onnxruntime's integer MatMulInteger for the int8 build), timed in the same rounds
as the decoder it is compared with. Each target is a
ratio taken within one round (its contenders ran a minute or two apart at most, never in different phases
of the run); the verdict reads the median of those per-round ratios, shown with their p10-p90.
Also: cold start and peak RSS of the runtime and the torch path, installed sizes, many small
requests from several threads, and export time and file sizes.

    make bench                       # or: .venv/bin/python bench/run.py [--rounds 5] [--quick]

Writes artifacts/bench.json and artifacts/bench.md, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKER = [sys.executable, str(REPO / "bench" / "worker.py")]
OPS = ("encoder", "decoder", "sample", "reconstruct")
BATCHES = (1, 64, 1024)
VARIANTS = ("fp32", "int8", "fp16", "ort", "b1")
DECODER_FLOP = 2 * 1024 * (20 * 200 + 200 * 784)  # the decoder's two GEMMs at batch 1024
SQUARE_FLOP = 2 * 1024**3
GEMM = "gemm"  # the contender timing plain GEMMs on the decoder's shapes (and a square one)
GEMM_FLOP = {
    "numpy-decoder-gemms": DECODER_FLOP,
    "onnxruntime-decoder-gemms": DECODER_FLOP,
    "numpy-square-1024": SQUARE_FLOP,
    # integer GEMMs: integer ops (2 per multiply-add), so their rates compare with the GFLOP/s above
    "onnxruntime-int8-decoder-gemms": DECODER_FLOP,
    "onnxruntime-int8-square-1024": SQUARE_FLOP,
}
DECODER_FLOP_PER_ROW = DECODER_FLOP // 1024
# The runtime's heavy jobs, timed on the fp32 runtime only: log_likelihood with k=1000 on 20 images and
# score (k=16, the default model's statistics) on 256; their decoder FLOPs against the same round's GEMM rate.
HEAVY = {"log_likelihood/20": 20 * 1000, "score/256": 256 * 16}  # cell -> decoder rows per call
HEAVY_IMAGES = {"log_likelihood/20": 20, "score/256": 256}
SAME_SHAPE_GEMMS = ("numpy-decoder-gemms", "onnxruntime-decoder-gemms")
INT8_GEMMS = "onnxruntime-int8-decoder-gemms"
# Environment for the numpy GEMM worker: OpenBLAS core-type overrides slow current numpy (env notes).
GEMM_ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}


def all_cells(batches: tuple[int, ...] = BATCHES) -> str:
    return ",".join(f"{o}/{b}" for o in OPS for b in batches)


def contenders(quick: bool, threads: str) -> list[tuple[str, list[str]]]:
    """(name, worker arguments) of every timed contender (torch.compile at 1 thread only: it
    compiles for about 40 s per process and was slower than eager at every size measured)."""
    out = [("torch", ["torch"]), ("bare", ["bare"])]
    cells = {"b1": all_cells((1, 64)), "fp32": ",".join([all_cells(), *HEAVY])}
    out += [
        (f"runtime-{v}", ["runtime", "--variant", v] + (["--cells", cells[v]] if v in cells else [])) for v in VARIANTS
    ]
    out.append((GEMM, [GEMM]))  # at "default" threads: one thread per core
    if not quick and threads == "1":
        out.append(("torch-compile", ["torch-compile", "--cells", "decoder/1,decoder/1024,sample/1"]))
    return out


def run_worker(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(WORKER + args, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout)


def summarize(times: list[float]) -> dict[str, float]:
    a = np.asarray(times)
    return {
        "median_s": float(np.median(a)),
        "p10_s": float(np.percentile(a, 10)),
        "p90_s": float(np.percentile(a, 90)),
        "calls": int(a.size),
    }


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def time_contenders(rounds: int, threads_list: list[str], quick: bool, budget: float) -> dict[str, Any]:
    """Per-call times pooled over the rounds ("stats"), and each round's median per cell ("rounds":
    threads -> contender -> cell -> one median per round, None where that round failed)."""
    pooled: dict[str, dict[str, dict[str, list[float]]]] = {}
    per_round: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    errors: dict[str, str] = {}
    for threads in threads_list:
        cast = contenders(quick, threads)
        for r in range(rounds):
            order = cast[r % len(cast) :] + cast[: r % len(cast)]  # rotate: every contender goes first once
            if r % 2:
                order = order[::-1]
            for name, args in order:
                got = run_worker(
                    args + ["--threads", threads, "--budget", str(budget)], env=GEMM_ENV if name == GEMM else None
                )
                if "error" in got:
                    errors[f"{name}@{threads}"] = got["error"]
                    continue
                cells = pooled.setdefault(threads, {}).setdefault(name, {})
                medians = per_round.setdefault(threads, {}).setdefault(name, {})
                for cell, times in got.items():
                    cells.setdefault(cell, []).extend(times)
                    medians.setdefault(cell, [None] * rounds)[r] = float(np.median(times))
            print(f"  threads {threads}: round {r + 1}/{rounds} done", file=sys.stderr)
    stats = {
        t: {name: {cell: summarize(v) for cell, v in cells.items()} for name, cells in by.items()}
        for t, by in pooled.items()
    }
    return {"stats": stats, "rounds": per_round, "errors": errors}


def gemm_report(timing: dict[str, Any], threads_list: list[int]) -> dict[str, Any]:
    """GFLOP/s of each GEMM cell (pooled medians) and the runtime's fp32 decoder at batch 1024, per
    thread count; the decoder's fraction of the best same-shape GEMM is the median of per-round ones."""
    from threadpoolctl import threadpool_info

    out: dict[str, Any] = {}
    for threads in threads_list:
        by = timing["stats"].get(str(threads), {})
        if GEMM not in by or "decoder/1024" not in by.get("runtime-fp32", {}):
            continue
        g = {cell: {**stat, "gflops": GEMM_FLOP[cell] / stat["median_s"] / 1e9} for cell, stat in by[GEMM].items()}
        g["decoder_gflops"] = DECODER_FLOP / by["runtime-fp32"]["decoder/1024"]["median_s"] / 1e9
        rounds = timing["rounds"][str(threads)]
        g["decoder_fraction_of_best"] = float(np.median(gemm_fractions(rounds)))
        if INT8_GEMMS in by[GEMM] and "decoder/1024" in by.get("runtime-int8", {}):
            g["int8_decoder_gops"] = DECODER_FLOP / by["runtime-int8"]["decoder/1024"]["median_s"] / 1e9
            g.update({k: median_or_none(v) for k, v in int8_gemm_ratios(rounds).items()})
        out[str(threads)] = g
    out["blas"] = [
        {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for i in threadpool_info()
    ]
    return out


def per_round_ratios(by: dict[str, Any], num: tuple[str, str], den: tuple[str, str]) -> list[float]:
    """num / den of each round's medians ((contender, cell) pairs), over the rounds both ran."""
    a, b = by.get(num[0], {}).get(num[1], []), by.get(den[0], {}).get(den[1], [])
    return [x / y for x, y in zip(a, b, strict=False) if x is not None and y is not None]


def gemm_fractions(by: dict[str, Any]) -> list[float]:
    """Each round's fp32 decoder rate at batch 1024 over that round's best same-shape GEMM rate
    (the same FLOPs, so: the faster GEMM's time over the decoder's time)."""
    best = best_gemm_times(by)
    dec = by.get("runtime-fp32", {}).get("decoder/1024", [])
    return [g / d for g, d in zip(best, dec, strict=False) if g is not None and d is not None]


def best_gemm_times(by: dict[str, Any]) -> list[float | None]:
    """Each round's faster same-shape GEMM time (batch 1024), None where neither ran."""
    return [
        min((t for t in ts if t is not None), default=None)
        for ts in zip(*(by.get(GEMM, {}).get(c, []) for c in SAME_SHAPE_GEMMS), strict=False)
    ]


def heavy_shares(by: dict[str, Any], cell: str) -> list[float]:
    """Each round's rate of the fp32 runtime's `cell` (its decoder FLOPs over its time) as a share of
    that round's best same-shape GEMM rate: the hardware limit the issue measures against."""
    flop = HEAVY[cell] * DECODER_FLOP_PER_ROW
    times = by.get("runtime-fp32", {}).get(cell, [])
    return [
        (flop / t) / (DECODER_FLOP / g)
        for g, t in zip(best_gemm_times(by), times, strict=False)
        if g is not None and t is not None
    ]


def int8_gemm_ratios(by: dict[str, Any]) -> dict[str, list[float]]:
    """Per round: the int8 decoder's share of its time spent in its integer GEMMs (the GEMMs' time
    over the decoder's), and torch fp32's decoder time over those GEMMs' time: the most the int8
    decoder could gain over torch if nothing but its integer GEMMs took time (batch 1024)."""
    return {
        "int8_decoder_gemm_share": per_round_ratios(by, (GEMM, INT8_GEMMS), ("runtime-int8", "decoder/1024")),
        "torch_over_int8_gemms": per_round_ratios(by, ("torch", "decoder/1024"), (GEMM, INT8_GEMMS)),
    }


def median_or_none(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


# The child reports its own time from first import to first sample, and VmHWM: the peak resident set
# of its own image (getrusage's maxrss would include the parent's pages copied before exec).
HWM = "import re; print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024)"
COLD_RUNTIME = (
    "import time; t = time.perf_counter(); from edgevae.runtime import VAE; "
    "VAE(device='cpu').sample(1, seed=0); print(time.perf_counter() - t); " + HWM
)
# The floor under any numpy + onnxruntime runtime: the interpreter and those two imports.
COLD_FLOOR = "import time; t = time.perf_counter(); import numpy, onnxruntime; print(time.perf_counter() - t); " + HWM
COLD_TORCH = (
    "import time; t = time.perf_counter(); import torch; from edgevae.train import checkpoint; "
    "e, d = checkpoint.load_pair('artifacts/checkpoints'); g = torch.Generator().manual_seed(0); "
    "torch.sigmoid(d(torch.randn((1, 20), generator=g))); print(time.perf_counter() - t); " + HWM
)


def cold_start(rounds: int) -> dict[str, Any]:
    """New process: interpreter, import, load, first sample. Wall time seen by the parent, the child's
    own import-to-sample time, and its peak RSS (wait4's ru_maxrss)."""
    result: dict[str, dict[str, list[float]]] = {"runtime": {}, "floor": {}, "torch": {}}
    contenders = (("runtime", COLD_RUNTIME), ("floor", COLD_FLOOR), ("torch", COLD_TORCH))
    for r in range(rounds):
        for name, code in contenders[:: 1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            inner, hwm = (float(v) for v in done.stdout.split())
            entry = result[name]
            entry.setdefault("process_wall_s", []).append(wall)
            entry.setdefault("import_to_first_sample_s", []).append(inner)
            entry.setdefault("peak_rss_mib", []).append(hwm)
    return {
        name: {
            k: {
                "median": float(np.median(v)),
                "p10": float(np.percentile(v, 10)),
                "p90": float(np.percentile(v, 90)),
                "values": [float(x) for x in v],
            }
            for k, v in d.items()
        }
        for name, d in result.items()
    }


def dist_size(name: str, seen: set[str]) -> int:
    """Bytes on disk of a distribution and, recursively, of what it requires (no extras)."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return 0
    seen.add(key)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return 0
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        total += dist_size(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0], seen)
    return total


def installed_sizes() -> dict[str, float]:
    """MiB installed by `edgevae[cpu]` (edgevae's runtime package, numpy, onnxruntime and its
    requirements) and by torch (with its requirements), measured in this venv."""
    runtime_pkg = sum(
        p.stat().st_size for p in (REPO / "runtime").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    cpu = runtime_pkg + dist_size("onnxruntime", set()) + dist_size("numpy", {"onnxruntime"})
    return {
        "edgevae[cpu]_mib": cpu / 2**20,
        "torch_mib": dist_size("torch", set()) / 2**20,
        "edgevae_runtime_package_mib": runtime_pkg / 2**20,
    }


def export_figures() -> dict[str, Any]:
    from edgevae.export.convert import export_model

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths, _ = export_model(REPO / "artifacts" / "checkpoints", tmp)
        seconds = time.perf_counter() - t0
        return {"export_seconds": seconds, "file_bytes": {p.name: p.stat().st_size for p in paths}}


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}" if seconds >= 1e-4 else f"{seconds * 1e6:.1f}"


def cell_text(stat: dict[str, float] | None) -> str:
    if not stat:
        return "-"
    return f"{us(stat['median_s'])} ({us(stat['p10_s'])}-{us(stat['p90_s'])})"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Machine: {report['machine']}. Per-call times in microseconds: median (p10-p90), pooled over "
        f"{report['rounds']} alternating rounds, each contender in its own process.",
        "",
    ]
    names = ["torch", "torch-compile", "bare"] + [f"runtime-{v}" for v in VARIANTS]
    for threads, by in report["timing"]["stats"].items():
        present = [n for n in names if n in by]
        title = (
            "each contender's default threads (torch and onnxruntime: one per core; the runtime: threads=None)"
            if threads == "default"
            else f"{threads} thread{'s' if threads != '1' else ''}"
        )
        lines += [f"### {title}", "", "| op / batch | " + " | ".join(present) + " |", "|---|" + "---:|" * len(present)]
        for op in OPS:
            for b in BATCHES:
                cell = f"{op}/{b}"
                lines.append(f"| {op} / {b} | " + " | ".join(cell_text(by[n].get(cell)) for n in present) + " |")
        lines.append("")
    for key, err in report["timing"]["errors"].items():
        lines.append(f"- {key} could not run: {err}")
    lines += [
        "",
        "### Targets",
        "",
        "Each ratio is taken within one round; measured = the median over rounds (p10-p90 over rounds).",
        "",
        "| target | threads | measured | met |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        verdict = "yes" if t["met"] else "**no**"
        if t.get("bound_within_spread"):
            verdict += " (the bound is inside the spread)"
        lines.append(f"| {t['target']} | {t['threads']} | {t['measured']} | {verdict} |")
    c, s = report["cold_start"], report["installed"]
    lines += [
        "",
        "### Cold start (new process: import, load, first sample) and size",
        "",
        "| path | process wall s | import to first sample s | peak RSS MiB | installed MiB |",
        "|---|---:|---:|---:|---:|",
        f"| edgevae runtime | {c['runtime']['process_wall_s']['median']:.3f} | "
        f"{c['runtime']['import_to_first_sample_s']['median']:.3f} | {c['runtime']['peak_rss_mib']['median']:.0f} | "
        f"{s['edgevae[cpu]_mib']:.0f} |",
        f"| numpy + onnxruntime imports alone (the floor) | {c['floor']['process_wall_s']['median']:.3f} | "
        f"{c['floor']['import_to_first_sample_s']['median']:.3f} | {c['floor']['peak_rss_mib']['median']:.0f} | - |",
        f"| torch | {c['torch']['process_wall_s']['median']:.3f} | "
        f"{c['torch']['import_to_first_sample_s']['median']:.3f} | "
        f"{c['torch']['peak_rss_mib']['median']:.0f} | {s['torch_mib']:.0f} |",
        "",
    ]
    lines += [
        "### GEMM rate (batch 1024)",
        "",
        "| threads | numpy decoder GEMMs | onnxruntime MatMul | numpy 1024^3 | "
        "runtime fp32 decoder | decoder / best same-shape GEMM |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for threads, g in report["gemm"].items():
        if threads == "blas":
            continue
        lines.append(
            f"| {threads} | {g['numpy-decoder-gemms']['gflops']:.1f} GFLOP/s | "
            f"{g['onnxruntime-decoder-gemms']['gflops']:.1f} | {g['numpy-square-1024']['gflops']:.1f} | "
            f"{g['decoder_gflops']:.1f} | {g['decoder_fraction_of_best']:.0%} |"
        )
    int8 = {t: g for t, g in report["gemm"].items() if t != "blas" and "int8_decoder_gops" in g}
    if int8:
        lines += [
            "",
            "### Integer GEMM rate (batch 1024; integer ops/s, 2 per multiply-add)",
            "",
            "| threads | onnxruntime MatMulInteger, decoder shapes | MatMulInteger 1024^3 | runtime int8 decoder | "
            "int8 decoder's time in its integer GEMMs | torch fp32 decoder / integer GEMMs |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for threads, g in int8.items():
            share, bound = g.get("int8_decoder_gemm_share"), g.get("torch_over_int8_gemms")
            lines.append(
                f"| {threads} | {g[INT8_GEMMS]['gflops']:.1f} GOP/s | "
                f"{g['onnxruntime-int8-square-1024']['gflops']:.1f} | {g['int8_decoder_gops']:.1f} | "
                f"{'-' if share is None else f'{share:.0%}'} | {'-' if bound is None else f'{bound:.2f}x'} |"
            )
    lines += heavy_table(report)
    tp = report["timing"].get("throughput", {})
    if tp:
        kinds = list(dict.fromkeys(k.rsplit("/", 1)[0] for k in tp))
        counts = list(dict.fromkeys(k.rsplit("/", 1)[1] for k in tp))
        lines += [
            "",
            "### Many requests on one VAE (threads=1 sessions) from N Python threads: requests/s (median of 3)",
            "",
            "| request | " + " | ".join(f"N={n}" for n in counts) + " |",
            "|---|" + "---:|" * len(counts),
        ]
        lines += [
            f"| {kind} | " + " | ".join(f"{float(np.median(tp[f'{kind}/{n}'])):,.0f}" for n in counts) + " |"
            for kind in kinds
        ]
    e = report["export"]
    lines += [
        "",
        f"Export (build, validate, variants, golden vectors, score statistics, write): {e['export_seconds']:.1f} s.",
    ]
    return "\n".join(lines) + "\n"


def heavy_table(report: dict[str, Any]) -> list[str]:
    """The likelihood and scoring rows: time per image and the share of the same round's GEMM rate."""
    lines = [
        "",
        "### Likelihood and scoring (fp32 runtime, default model; decoder FLOPs against the same round's GEMM rate)",
        "",
        "| threads | log_likelihood k=1000, s per 1000 images | share of GEMM rate | "
        "score (k=16), ms per image | share of GEMM rate |",
        "|---|---:|---:|---:|---:|",
    ]
    for threads, by in report["timing"]["stats"].items():
        fp32, rounds = by.get("runtime-fp32", {}), report["timing"]["rounds"][threads]
        if not all(cell in fp32 for cell in HEAVY):
            continue
        row = [threads]
        for cell, per in (("log_likelihood/20", 1000.0), ("score/256", 1e3)):
            row.append(f"{fp32[cell]['median_s'] / HEAVY_IMAGES[cell] * per:.3g}")
            share = median_or_none(heavy_shares(rounds, cell))
            row.append("-" if share is None else f"{share:.0%}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def target(name: str, threads: str, values: list[float], bound: float, op: str, unit: str) -> dict[str, Any]:
    """One target's verdict from its per-round values: the median against the bound, with the p10-p90
    of the rounds, and whether the bound lies inside that spread (a verdict the noise could flip)."""
    if not values:
        return {"target": name, "threads": threads, "measured": "not measured", "value": None, "met": False}
    value, lo, hi = (float(np.percentile(values, q)) for q in (50, 10, 90))

    def show(v: float) -> str:
        return {"%": f"{v:.0%}", "s": f"{v:.3f} s", "MiB": f"{v:.0f} MiB"}.get(unit, f"{v:.2f}x")

    met = value >= bound if op == ">=" else value <= bound if op == "<=" else value < bound

    return {
        "target": name,
        "threads": threads,
        "measured": f"{show(value)} ({show(lo)}-{show(hi)}, {len(values)} rounds)",
        "value": value,
        "p10": lo,
        "p90": hi,
        "rounds": len(values),
        "met": bool(met),
        "bound_within_spread": bool(lo <= bound <= hi),
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for threads, by in report["timing"]["rounds"].items():
        checks = [
            (
                "decode(z) batch 1 >= 2.5x faster than torch eager",
                ("torch", "decoder/1"),
                ("runtime-fp32", "decoder/1"),
                2.5,
                ">=",
            ),
            (
                "decode(z) batch 1 <= 1.2x a bare session.run",
                ("runtime-fp32", "decoder/1"),
                ("bare", "decoder/1"),
                1.2,
                "<=",
            ),
            (
                "sample(1, seed) >= 1.5x faster than torch eager",
                ("torch", "sample/1"),
                ("runtime-fp32", "sample/1"),
                1.5,
                ">=",
            ),
            (
                "int8 decoder batch 1024 >= 2.5x faster than torch fp32",
                ("torch", "decoder/1024"),
                ("runtime-int8", "decoder/1024"),
                2.5,
                ">=",
            ),
        ]
        for name, num, den, bound, op in checks:
            out.append(target(name, threads, per_round_ratios(by, num, den), bound, op, "x"))
        name = "fp32 decoder batch 1024 >= 90% of the best same-shape GEMM rate"
        out.append(target(name, threads, gemm_fractions(by), 0.9, ">=", "%"))
        for cell, name, bound in (
            ("log_likelihood/20", "log_likelihood k=1000 >= 75% of the GEMM rate", 0.75),
            ("score/256", "score (k=16) >= 50% of the GEMM rate", 0.5),
        ):
            out.append(target(name, threads, heavy_shares(by, cell), bound, ">=", "%"))
    c = report["cold_start"]["runtime"]
    out.append(target("cold start < 0.25 s (process wall)", "default", c["process_wall_s"]["values"], 0.25, "<", "s"))
    out.append(target("cold start peak RSS < 80 MiB", "default", c["peak_rss_mib"]["values"], 80, "<", "MiB"))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per contender (default: 5)")
    p.add_argument("--budget", type=float, default=0.25, help="timed seconds per cell per round (default: 0.25)")
    p.add_argument("--quick", action="store_true", help="skip torch.compile (about 40 s of compiling per process)")
    p.add_argument(
        "--out", default=str(REPO / "artifacts"), help="folder for bench.json and bench.md (default: artifacts)"
    )
    args = p.parse_args()
    cpus = os.cpu_count() or 1
    threads_list = sorted({1, cpus})
    # The parent stays small (no torch, no onnxruntime): cold-start children are spawned from it.
    report: dict[str, Any] = {
        "machine": f"{cpu_name()}, {cpus} cores, Linux {platform.release()}, Python {platform.python_version()}, "
        f"onnxruntime {md.version('onnxruntime')}, torch {md.version('torch')}, numpy {np.__version__}",
        "rounds": args.rounds,
        "threads": threads_list,
    }
    # An installed wheel has its bytecode compiled by pip; an editable checkout may not (this
    # environment sets PYTHONDONTWRITEBYTECODE), so compile it once, as pip would.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "runtime", "train", "export"], cwd=REPO, check=True)
    print("cold start ...", file=sys.stderr)
    report["cold_start"] = cold_start(max(5, args.rounds))
    print("timing contenders ...", file=sys.stderr)
    report["timing"] = time_contenders(
        args.rounds, [str(t) for t in threads_list] + ["default"], args.quick, args.budget
    )
    report["timing"]["throughput"] = run_worker(["throughput"])
    print("GEMM rates, sizes, export ...", file=sys.stderr)
    report["gemm"] = gemm_report(report["timing"], threads_list)
    report["installed"] = installed_sizes()
    report["export"] = export_figures()
    report["targets"] = targets(report)
    text = render(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from edgevae.runtime.atomic import write_bytes_atomic

    write_bytes_atomic(out / "bench.json", (json.dumps(report, indent=2) + "\n").encode())
    write_bytes_atomic(out / "bench.md", text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""edgevae outside Python, measured: `make web-bench`.

    .venv/bin/python bench/web.py [--rounds 5] [--seconds 2]

Times `sample(1)` and `decode` at batch 64 on the default model's fp32 graphs, one thread each, in
three contenders that each run in their own processes: onnxruntime-web (WASM) in headless Debian
chromium (a fresh browser per round, the page served by `python -m http.server`), onnxruntime-node
(web/node.js), and the Python runtime (edgevae's VAE, threads=1). They alternate, round after round;
calls are timed in blocks of about 20 ms (browsers round performance.now() to 0.1 ms), and the table
gives the median time per call over all blocks with its p10-p90. Each ratio is taken within one round
and reported as the median over rounds (p10-p90). Also: the page's weight, from the bytes the page
actually fetched, and each variant's graph bytes from the manifest; and how far the browser's and
Node's decoder means are from the Python runtime's on 64 latents.

Writes artifacts/web.json and artifacts/web.md, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from run import cpu_name, summarize

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "runtime" / "models" / "default"
OPS = ("sample/1", "decode/64")
CONTENDERS = ("wasm", "node", "python")


def time_python(seconds: float, block_ms: float) -> dict[str, list[float]]:
    """The Python contender (run with --worker in its own process): blocks of calls, seconds per call."""
    from edgevae.runtime import VAE

    vae = VAE(MODEL, device="cpu", threads=1)
    z64 = vae.sample_latent(64, seed=1)
    seeds = iter(range(10**9))
    calls = {"sample/1": lambda: vae.sample(1, seed=next(seeds)), "decode/64": lambda: vae.decode(z64)}
    out = {}
    for name, call in calls.items():
        for _ in range(20):
            call()
        blocks, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < block_ms / 1000:
                call()
                n += 1
            blocks.append((time.perf_counter() - t0) / n)
        out[name] = blocks
    return out


def run_json(argv: list[str]) -> Any:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_wasm(sync_api: Any, site: str, seconds: float, block_ms: float) -> tuple[dict[str, list[float]], str]:
    """A fresh headless chromium: load the page (fp32, 1 WASM thread), time the operations in it."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{site}/web/index.html?variant=fp32")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
        times = page.evaluate(
            "async ([s, b]) => (await import('/bench/web_timer.mjs')).timeOps(window.edgevae.vae, "
            "{seconds: s, blockMs: b})",
            [seconds, block_ms],
        )
        version = browser.version
        browser.close()
    return times, version


def chromium() -> str:
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("bench/web.py needs Debian's chromium: apt-get install chromium")
    return found


def serve() -> tuple[subprocess.Popen[str], str]:
    """`python -m http.server` in the repo on a free port, as `make web` runs it."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(REPO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().split(" port ")[1].split()[0]
    return proc, f"http://127.0.0.1:{port}"


def time_rounds(sync_api: Any, site: str, rounds: int, seconds: float, block_ms: float) -> dict[str, Any]:
    """Every contender once per round, the order rotating; blocks pooled per contender and op."""
    per_round: list[dict[str, dict[str, list[float]]]] = []
    versions: dict[str, str] = {}
    for r in range(rounds):
        order = CONTENDERS[r % 3 :] + CONTENDERS[: r % 3]
        got: dict[str, dict[str, list[float]]] = {}
        for name in order:
            print(f"round {r + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            if name == "wasm":
                got[name], versions["chromium"] = time_wasm(sync_api, site, seconds, block_ms)
            elif name == "node":
                node = run_json(["node", "bench/web_timer.mjs", "--seconds", str(seconds), "--block-ms", str(block_ms)])
                got[name], versions["node"] = node["times"], node["node"]
            else:
                got[name] = run_json([sys.executable, str(Path(__file__)), "--worker", "--seconds", str(seconds)])
        per_round.append(got)
    table = {c: {op: summarize([t for rnd in per_round for t in rnd[c][op]]) for op in OPS} for c in CONTENDERS}
    ratios = {
        f"{c}/python": {
            op: [float(np.median(rnd[c][op]) / np.median(rnd["python"][op])) for rnd in per_round] for op in OPS
        }
        for c in ("wasm", "node")
    }
    return {"table": table, "ratios": ratios, "versions": versions}


def kind_of(path: str) -> str | None:
    """Which row of the page-weight table a fetched file counts in (None: not part of the page)."""
    if path.endswith(".wasm"):
        return "onnxruntime-web WASM"
    if "/node_modules/" in path:
        return "onnxruntime-web JS"
    if path.startswith("/web/"):
        return "edgevae page and JS (HTML, ES modules)"
    if path.endswith(("manifest.json", "golden.json", "golden.bin")):
        return "manifest and golden vectors"
    return "graphs (fp32, as loaded)" if path.endswith(".onnx") else None


def page_weight(sync_api: Any, site: str) -> dict[str, Any]:
    """Bytes the page fetched (raw and gzip -6), by kind; and each variant's graph bytes (manifest)."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        responses: list[Any] = []
        page.on("response", lambda response: responses.append(response))
        page.goto(f"{site}/web/index.html?variant=fp32")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
        files = {r.url.split(site, 1)[1].split("?")[0]: r.body() for r in responses if r.ok}
        browser.close()
    rows: dict[str, dict[str, int]] = {}
    for path, body in files.items():
        row = rows.setdefault(kind_of(path) or "", {"bytes": 0, "gzip_bytes": 0, "files": 0})
        row["bytes"] += len(body)
        row["gzip_bytes"] += len(zlib.compress(body, 6))
        row["files"] += 1
    rows.pop("", None)
    manifest = json.loads((MODEL / "manifest.json").read_text())
    graphs = {}
    for name, v in manifest["variants"].items():
        blobs = [(MODEL / f).read_bytes() for f in v["files"].values()]
        graphs[name] = {"bytes": sum(map(len, blobs)), "gzip_bytes": sum(len(zlib.compress(b, 6)) for b in blobs)}
    return {"fetched": rows, "graphs": graphs}


def parity(sync_api: Any, site: str) -> dict[str, dict[str, float]]:
    """Max |mean difference| of the browser and of Node against the Python runtime, fp32 and int8, on
    64 latents (the golden decoder z and 56 draws of numpy seed 23), as tests/test_web_parity.py feeds."""
    from edgevae.runtime import VAE

    spec = json.loads((MODEL / "golden.json").read_text())
    t = spec["tensors"]["decoder.z"]
    golden = np.frombuffer((MODEL / spec["data"]).read_bytes(), "<f4", t["bytes"] // 4, t["offset"]).reshape(t["shape"])
    z = np.concatenate([golden, np.random.default_rng(23).standard_normal((56, golden.shape[1]), dtype=np.float32)])
    out: dict[str, dict[str, float]] = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        for variant in ("fp32", "int8"):
            want = VAE(MODEL, device="cpu", variant=variant).decode(z).reshape(len(z), -1)
            page = browser.new_page()
            page.goto(f"{site}/web/index.html?variant={variant}")
            page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
            wasm = page.evaluate(
                "async (z) => Array.from((await window.edgevae.vae.decode(z)).data)", z.ravel().tolist()
            )
            page.close()
            script = (
                "import { loadVAE, DEFAULT_MODEL } from './node.js';"
                f"const vae = await loadVAE(DEFAULT_MODEL, {{ variant: '{variant}', threads: 1 }});"
                f"console.log(JSON.stringify(Array.from((await vae.decode({json.dumps(z.ravel().tolist())})).data)));"
            )
            done = subprocess.run(
                ["node", "--input-type=module", "-e", script], capture_output=True, text=True, cwd=REPO / "web"
            )
            node = json.loads(done.stdout.strip().splitlines()[-1])
            out[variant] = {
                "wasm_vs_python": float(np.abs(np.asarray(wasm).reshape(want.shape) - want).max()),
                "node_vs_python": float(np.abs(np.asarray(node).reshape(want.shape) - want).max()),
            }
        browser.close()
    return out


def us(stat: dict[str, float]) -> str:
    return f"{stat['median_s'] * 1e6:,.0f} ({stat['p10_s'] * 1e6:,.0f}-{stat['p90_s'] * 1e6:,.0f})"


def ratio(values: list[float]) -> str:
    lo, mid, hi = np.percentile(values, [10, 50, 90])
    return f"{mid:.2f} ({lo:.2f}-{hi:.2f})"


def render(r: dict[str, Any]) -> str:
    t, v = r["timing"], r["versions"]
    lines = [
        f"Machine: {r['machine']}, {r['cores']} cores, shared with other jobs while this ran (the spread shows "
        f"how much that moved the figures). chromium {v['chromium']} headless with onnxruntime-web "
        f"{v['onnxruntime-web']} (WASM, SIMD, 1 thread); Node {v['node']} with onnxruntime-node "
        f"{v['onnxruntime-node']} (1 thread); the Python runtime with onnxruntime {v['onnxruntime']} "
        f"(threads=1). Default model, fp32; {r['rounds']} rounds of {r['seconds']:g} s per operation per contender.",
        "",
        "| operation, microseconds per call | WASM in chromium | onnxruntime-node | Python runtime "
        "| WASM / Python | Node / Python |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op, label in (("sample/1", "`sample(1)`"), ("decode/64", "`decode(z)`, batch 64")):
        cells = [us(t["table"][c][op]) for c in CONTENDERS]
        ratios = [ratio(t["ratios"][f"{c}/python"][op]) for c in ("wasm", "node")]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "| page part (fp32) | files | bytes | gzip -6 |", "|---|---:|---:|---:|"]
    fetched = r["weight"]["fetched"]
    for name in sorted(fetched, key=lambda k: fetched[k]["bytes"]):
        row = fetched[name]
        lines.append(f"| {name} | {row['files']} | {row['bytes']:,} | {row['gzip_bytes']:,} |")
    total = {k: sum(row[k] for row in fetched.values()) for k in ("files", "bytes", "gzip_bytes")}
    lines.append(f"| **whole page** | {total['files']} | {total['bytes']:,} | {total['gzip_bytes']:,} |")
    lines += ["", "| graphs of variant | bytes | gzip -6 |", "|---|---:|---:|"]
    for name, row in r["weight"]["graphs"].items():
        lines.append(f"| graphs, `{name}` | {row['bytes']:,} | {row['gzip_bytes']:,} |")
    p = r["parity"]
    lines += [
        "",
        "Largest difference of the decoder's pixel means from the Python runtime's, same 64 latents: "
        f"fp32 {p['fp32']['wasm_vs_python']:.1e} (WASM), {p['fp32']['node_vs_python']:.1e} (Node); "
        f"int8 {p['int8']['wasm_vs_python']:.1e} (WASM), {p['int8']['node_vs_python']:.1e} (Node).",
    ]
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    import onnxruntime

    packages = {
        n: json.loads((REPO / "web" / "node_modules" / n / "package.json").read_text())["version"]
        for n in ("onnxruntime-web", "onnxruntime-node")
    }
    return {**packages, "onnxruntime": onnxruntime.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per operation per contender per round")
    parser.add_argument("--out", default=str(REPO / "artifacts"), help="folder for web.json and web.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the Python contender
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(time_python(args.seconds, 20.0)))
        return 0
    try:
        from playwright import sync_api
    except ImportError:
        raise SystemExit(
            "bench/web.py needs playwright: pip install -e '.[web]' (never `playwright install`)"
        ) from None
    server, site = serve()
    try:
        timing = time_rounds(sync_api, site, args.rounds, args.seconds, 20.0)
        report = {
            "machine": cpu_name(),
            "cores": os.cpu_count(),
            "rounds": args.rounds,
            "seconds": args.seconds,
            "timing": timing,
            "versions": {**timing["versions"], **versions()},
            "weight": page_weight(sync_api, site),
            "parity": parity(sync_api, site),
        }
    finally:
        server.terminate()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "web.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "web.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One command for the GPU checks: `make cuda-test` (= python bench/cuda_test.py).

On a machine with an NVIDIA GPU it
1. finds a Python whose onnxruntime lists the CUDA provider: this one (onnxruntime-gpu already
   importable, e.g. unpacked by ../shared/tools/gpu-pack onto PYTHONPATH), else .venv-cuda, else it
   makes .venv-cuda with onnxruntime-gpu from the package index;
2. runs `pytest -m cuda` with it (the project is put on its path when it is not installed there);
3. runs the self-test of every variant of every packaged model on CUDA (`edgevae selftest --device
   cuda`; a variant not built for CUDA is reported as such, never started);
4. prints one table: model, variant, provider, worst output, its difference and tolerance, result.
It exits 1 when anything failed. Where no NVIDIA GPU is present it says so in one line and exits 0.

    python bench/cuda_test.py [--device cuda|cpu|auto] [--json PATH] [--skip-pytest]

--device cpu runs steps 3-4 on the CPU provider with this Python: how the script itself is checked on
a machine without a GPU (tests/test_cuda_test.py). It should finish in well under 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CUDA_VENV = REPO / ".venv-cuda"
PROBE = "import onnxruntime as o, json; print(json.dumps([o.__version__, o.get_available_providers()]))"


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name from nvidia-smi, or the driver's /proc entry; None when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.startswith("GPU "):
            return done.stdout.splitlines()[0]
    gpus = Path("/proc/driver/nvidia/gpus")
    return f"NVIDIA GPU ({next(gpus.iterdir()).name})" if gpus.is_dir() and any(gpus.iterdir()) else None


def project_env() -> dict[str, str]:
    """The environment for child Pythons: the project importable as edgevae.* even where it is not
    installed (a GPU machine with no package index), through a folder of links to train/ export/ runtime/."""
    env = dict(os.environ)
    shim = Path(tempfile.gettempdir()) / "edgevae-cuda-test" / "edgevae"
    shim.mkdir(parents=True, exist_ok=True)
    for part in ("train", "export", "runtime"):
        link = shim / part
        if not link.exists():
            link.symlink_to(REPO / part, target_is_directory=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(shim.parent)) if p)
    return env


def probe(python: str, env: dict[str, str]) -> tuple[str, list[str]] | None:
    """(onnxruntime version, providers) as `python` sees them, or None when it has no onnxruntime."""
    try:
        done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    version, providers = json.loads(done.stdout.strip().splitlines()[-1])
    return version, providers


def cuda_python(env: dict[str, str]) -> tuple[str, str]:
    """A Python whose onnxruntime lists CUDAExecutionProvider, and its onnxruntime version."""
    candidates = [sys.executable] + ([str(CUDA_VENV / "bin" / "python")] if CUDA_VENV.exists() else [])
    for python in candidates:
        found = probe(python, env)
        if found and "CUDAExecutionProvider" in found[1]:
            return python, found[0]
    print(
        f"no onnxruntime-gpu in {', '.join(candidates)}: making {CUDA_VENV} (pip install onnxruntime-gpu)", flush=True
    )
    subprocess.run([sys.executable, "-m", "venv", str(CUDA_VENV)], check=True)
    pip = [str(CUDA_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["onnxruntime-gpu", "numpy", "pytest", "hypothesis", "pillow"], check=True)
    subprocess.run(pip + ["--no-deps", "-e", str(REPO)], check=True)
    found = probe(str(CUDA_VENV / "bin" / "python"), env)
    if not found or "CUDAExecutionProvider" not in found[1]:
        raise SystemExit(f"cuda-test: {CUDA_VENV}'s onnxruntime lists {found}: no CUDAExecutionProvider")
    return str(CUDA_VENV / "bin" / "python"), found[0]


def run_pytest(python: str, env: dict[str, str]) -> tuple[int, str]:
    """`pytest -m cuda` with `python`: its exit code and closing line."""
    start = time.monotonic()
    cmd = [python, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider", "tests"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    sys.stdout.write(done.stdout[-4000:] if done.returncode not in (0, 5) else "")
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1].strip("= ")
    return done.returncode, f"{last} (exit {done.returncode}, {time.monotonic() - start:.0f} s)"


def selftest_rows(device: str) -> list[dict[str, object]]:
    """One row per packaged model and variant: the self-test on `device`, or why it was not run."""
    from edgevae.runtime import VAE, EdgeVAEError, contract
    from edgevae.runtime.errors import DeviceError
    from edgevae.runtime.files import list_packaged_models, load_model_files
    from edgevae.runtime.selftest import run_selftest

    rows: list[dict[str, object]] = []
    for model in list_packaged_models():
        present = load_model_files(name=model).variants
        for variant in (v for v in contract.VARIANTS if v in present):
            row: dict[str, object] = {"model": model, "variant": variant}
            try:
                report = run_selftest(VAE(model=model, device=device, variant=variant))
            except DeviceError as exc:
                row.update(result="not for this device" if "is not for device" in str(exc) else "FAIL", note=str(exc))
            except EdgeVAEError as exc:
                row.update(result="FAIL", note=str(exc))
            else:
                worst = report.worst
                row.update(
                    provider=report.provider,
                    output=f"{worst.graph}.{worst.output}",
                    max_diff=worst.max_diff,
                    tolerance=worst.tolerance,
                    result="pass" if report.passed else "FAIL",
                )
            rows.append(row)
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| model | variant | provider | worst output | max diff | tolerance | result |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        diff = f"{r['max_diff']:.2e}" if "max_diff" in r else ""
        tol = f"{r['tolerance']:.2g}" if "tolerance" in r else ""
        result = str(r["result"]) + (f": {str(r['note'])[:120]}" if r.get("note") else "")
        lines.append(
            f"| {r['model']} | {r['variant']} | {r.get('provider', '')} | {r.get('output', '')} "
            f"| {diff} | {tol} | {result} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cuda", help="device to check (default: cuda)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows and the pytest line here")
    p.add_argument("--skip-pytest", action="store_true", help="only the self-test table")
    p.add_argument("--rows", action="store_true", help=argparse.SUPPRESS)  # internal: print rows as JSON
    args = p.parse_args()
    if args.rows:
        print(json.dumps(selftest_rows(args.device)))
        return 0
    gpu = gpu_name()
    if args.device != "cpu" and gpu is None:
        print("make cuda-test: no NVIDIA GPU on this machine (nvidia-smi found none); nothing to check")
        return 0
    env = project_env()
    python, version = (sys.executable, "") if args.device == "cpu" else cuda_python(env)
    print(f"cuda-test: {gpu or 'no GPU'}; {python}; onnxruntime {version or '(this one)'}", flush=True)
    code, pytest_line = (0, "skipped") if args.skip_pytest or args.device == "cpu" else run_pytest(python, env)
    print(f"pytest -m cuda: {pytest_line}", flush=True)
    done = subprocess.run(
        [python, __file__, "--rows", "--device", args.device], capture_output=True, text=True, env=env, timeout=600
    )
    if done.returncode != 0:
        print(done.stderr[-3000:])
        return 1
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    print(table(rows))
    failed = sum(r["result"] == "FAIL" for r in rows) + (code not in (0, 5))
    print(f"summary: {len(rows)} self-tests on {args.device}, {failed} failed; {pytest_line}")
    if args.json:
        args.json.write_text(json.dumps({"gpu": gpu, "pytest": pytest_line, "rows": rows}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""What each training change buys, in nats, on a short budget: `make ablation`.

    EDGEVAE_DATA_DIR=../shared/data/mnist .venv/bin/python bench/ablation.py [--epochs 30]

Trains one run per row with `python -m edgevae.train` (its own process, seed 0, all 60,000 training
images, `--epochs` each, cosine learning rate 1e-3 -> 1e-4), each adding one change to the textbook
size trained on the ELBO, then the large preset's network and the stages that fine-tune it (a row
started from an earlier row's run: its minutes include that run's). Every run is scored the same way:
-log p(x) on the first 1000 test images binarized once with seed 20140101, k=1000 (the importance-
weighted bound, train/evaluate.py; the runtime computes the same within 1e-4 nats given the same
noise, tests/test_likelihood.py). Prints a Markdown table and writes artifacts/ablation.json.
The full-length figures of the released models are `make quality`'s. A row already in the output
file with the same name, flags and epochs is kept, not retrained (`--rerun` retrains every row).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgevae.runtime.atomic import write_bytes_atomic

REPO = Path(__file__).resolve().parents[1]


def stage(preset: str, row: int) -> list[str]:
    """A fine-tuning stage's flags: its preset, started from row `row`'s run."""
    return ["--preset", preset, "--init-from", f"{{{row}}}"]


# (row, flags on top of the textbook size trained on the ELBO). "{i}" stands for row i's run folder:
# a fine-tuning row starts from that run's weights (--init-from), and its minutes include that run's.
ROWS = [
    ("textbook size, ELBO (the old default)", ["--objective", "elbo"]),
    ("+ IWAE objective, k=5 (the default)", ["--objective", "iwae", "--k", "5"]),
    ("+ KL warm-up over 10 epochs", ["--objective", "elbo", "--warmup-epochs", "10"]),
    ("+ gated block (1 x 200)", ["--objective", "elbo", "--block", "gated"]),
    ("2 gated layers of 300, 40 latents, warm-up 10 (the large preset)", ["--preset", "large"]),
    ("large preset, IWAE objective k=5", ["--preset", "large", "--objective", "iwae", "--k", "5"]),
    ("the large preset's run, then 30 epochs more as IWAE k=5 (large-iwae5)", stage("large-iwae5", 4)),
    ("... then 30 epochs more as IWAE k=20 (large-iwae20)", stage("large-iwae20", 6)),
    ("large preset with a VampPrior, K=500 (Tomczak & Welling 2018)", ["--preset", "large", "--prior", "vamp"]),
    ("the VampPrior row's run, then 30 epochs more as IWAE k=5 (large-vamp-iwae5)", stage("large-vamp-iwae5", 8)),
]


def train_row(flags: list[str], epochs: int, data_dir: str | None, out: Path) -> dict:
    """One run (kept in `out`: a finished run there is reused, so an interrupted ablation resumes)."""
    if (out / "metrics.json").is_file() and json.loads((out / "metrics.json").read_text()).get("complete"):
        return summarize_row(flags, out, None)
    cmd = [sys.executable, "-m", "edgevae.train", "--out", str(out), "--no-progress", "--epochs", str(epochs)]
    cmd += ["--test-limit", "1000", "--iw-samples", "1000", *flags]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    return summarize_row(flags, out, (time.perf_counter() - t0) / 60)


def summarize_row(flags: list[str], out: Path, wall_minutes: float | None) -> dict:
    """A finished run's figure; a fine-tuned run's training minutes include its source run's."""
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = [h["seconds"] for h in metrics["history"]]
    minutes = sum(seconds) / 60
    return {
        "flags": flags,
        "test_nll": metrics["test_nll"],
        # wall time per epoch: a longest epoch far above the median is a run that was paused or starved
        "epoch_seconds": {"median": float(np.median(seconds)), "longest": max(seconds)},
        "train_minutes": minutes + metrics.get("init_from", {}).get("train_minutes", 0.0),
        "wall_minutes": wall_minutes,
    }


def recorded_rows(path: Path, epochs: int) -> dict[str, dict]:
    """Rows already measured in `path` at this many epochs: a row whose name and flags are unchanged is
    kept, not retrained (pass --rerun to retrain every row)."""
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    return doc["rows"] if doc.get("epochs") == epochs else {}


def resolve_flags(flags: list[str], folders: list[Path]) -> list[str]:
    """Flags with "{i}" replaced by the run folder of row i (a fine-tuning row's --init-from)."""
    return [str(folders[int(f[1:-1])]) if f.startswith("{") and f.endswith("}") else f for f in flags]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $EDGEVAE_DATA_DIR)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per run (default: 30)")
    p.add_argument(
        "--out", default=str(REPO / "artifacts" / "ablation.json"), help="(default: artifacts/ablation.json)"
    )
    p.add_argument(
        "--work", default=str(REPO / "artifacts" / "runs" / "ablation"), help="run folders (default: %(default)s)"
    )
    p.add_argument("--rerun", action="store_true", help="retrain rows already recorded in --out (default: keep them)")
    args = p.parse_args()
    kept = {} if args.rerun else recorded_rows(Path(args.out), args.epochs)
    folders = [Path(args.work) / f"{args.epochs}-{i}" for i in range(len(ROWS))]
    results = {}
    for i, (row, flags) in enumerate(ROWS):
        needed = any(f"{{{i}}}" in later for _, later_flags in ROWS[i + 1 :] for later in later_flags)
        finished = (folders[i] / "metrics.json").is_file()
        if row in kept and kept[row]["flags"] == flags and not finished and not needed:
            results[row] = kept[row]
        else:  # trained now, or read again from its finished run folder (the source of every figure)
            results[row] = train_row(resolve_flags(flags, folders), args.epochs, args.data_dir, folders[i])
            results[row]["flags"] = flags
            if results[row]["wall_minutes"] is None and row in kept:
                results[row]["wall_minutes"] = kept[row].get("wall_minutes")
        print(f"{row}: {results[row]['test_nll']['nll']:.2f} nats", flush=True)
    base = results[ROWS[0][0]]["test_nll"]["nll"]
    lines = [
        f"| change ({args.epochs} epochs each) | -log p(x), nats | against the first row | training minutes |",
        "|---|---|---|---|",
    ]
    for row, r in results.items():
        nll = r["test_nll"]["nll"]
        lines.append(f"| {row} | {nll:.2f} | {nll - base:+.2f} | {r['train_minutes']:.1f} |")
    table = "\n".join(lines)
    print(table)
    doc = {"epochs": args.epochs, "rows": results, "table": table}
    write_bytes_atomic(Path(args.out), (json.dumps(doc, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()

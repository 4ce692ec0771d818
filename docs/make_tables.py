"""Write the tables of README.md and docs/*.md from the files and the code that hold their figures.

    .venv/bin/python docs/make_tables.py          # rewrite every generated table in place (make docs)
    .venv/bin/python docs/make_tables.py --check  # exit 1, naming page and table, if one differs

A generated table sits between two markers in a page:

    <!-- generated: NAME (docs/make_tables.py, from SOURCE); do not edit -->
    ...
    <!-- generated: end -->

NAME is one of BLOCKS below and SOURCE names the file (or code) it is rendered from: artifacts that a
command writes (`make bench`, `make quality`, ...), a shipped manifest, the presets, the contract or
the runtime's limits. Tables of an artifact's Markdown are copied verbatim. tests/test_readme.py runs
the check, so no page can drift from its files; prose figures are checked there too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
SHIPPED = REPO / "runtime" / "models" / "default"
MARKER = re.compile(
    r"<!-- generated: (\S+) \(docs/make_tables\.py, from ([^)]*)\); do not edit -->\n(.*?)<!-- generated: end -->", re.S
)


def pages() -> list[Path]:
    """Every page that may hold generated tables: the README and docs/*.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def artifact_json(name: str) -> dict[str, Any]:
    return json.loads((ARTIFACTS / name).read_text())


def verbatim(name: str) -> Callable[[], str]:
    """An artifact's Markdown, as the command that measured it wrote it."""
    return lambda: (ARTIFACTS / name).read_text().strip("\n")


def json_table(name: str) -> Callable[[], str]:
    """The table an artifact's JSON carries under "table", as the command that measured it wrote it."""
    return lambda: str(artifact_json(name)["table"]).strip("\n")


def rate(value: float) -> str:
    """A learning rate as the presets are written: 1e-3, 3e-4."""
    return re.sub(r"e-0*(\d)", r"e-\1", f"{value:.0e}")


LIKELIHOOD_TEXT = {
    "bernoulli": "bernoulli (BCE from logits)",
    "gaussian": "gaussian (MSE summed over pixels)",
    "discretized_logistic": "discretized_logistic (8-bit levels: bits per dimension)",
}


def preset_row(name: str, config: Any) -> str:
    from edgevae.train.config import STAGES
    from edgevae.train.conv import stage_channels

    m = config.model
    network = f"{m.layers} x {m.hidden} {m.block}, {m.latent} latents"
    if m.prior == "vamp":
        network += f", VampPrior ({m.prior_components} pseudo-inputs)"
    if m.block == "conv":
        h, w = m.image_shape
        stages = "-".join(str(c) for c in stage_channels(m))
        network += f" (stride-2 stages of {stages} channels; {h}x{w} {'RGB' if m.channels == 3 else 'grey'})"
    likelihood = LIKELIHOOD_TEXT[m.likelihood] + (", dynamic binarization" if config.binarize else "")
    objective = f"IWAE, k = {config.k}" if config.objective == "iwae" else "ELBO"
    if config.warmup_epochs:
        objective += f", KL warm-up {config.warmup_epochs} epochs"
    before = next((s[s.index(name) - 1] for s in STAGES.values() if name in s[1:]), None)
    if before:
        objective += f"; fine-tunes `{before}`'s run"
    schedule = f"cosine decay to {rate(config.lr_final)}" if config.lr_schedule == "cosine" else "constant"
    cells = [f"`{name}`", network, likelihood, objective, f"Adam {rate(config.lr)}, {schedule}"]
    return "| " + " | ".join([*cells, str(config.batch_size), str(config.epochs)]) + " |"


def presets_table() -> str:
    from edgevae.train.config import PRESETS

    head = "| preset | network (each side) | likelihood | objective | optimizer | batch | epochs |"
    return "\n".join([head, "|---|---|---|---|---|---|---|", *(preset_row(n, c) for n, c in PRESETS.items())])


def released_table() -> str:
    metrics = json.loads((ARTIFACTS / "checkpoints" / "metrics.json").read_text())
    return "\n".join(
        [
            "| metric (nats per image) | value |",
            "|---|---|",
            f"| test ELBO | **{metrics['test_elbo']:.2f}** |",
            f"| importance-weighted log p(x), k = {metrics['iw_samples']} (Burda et al. 2015) "
            f"| **{metrics['test_iw_log_likelihood']:.2f}** |",
        ]
    )


def pixel_diff(variant: dict[str, Any]) -> str:
    """The largest difference of a variant's pixel means from fp32's (decode and reconstruct)."""
    worst = max(v for k, v in variant["max_abs_diff_vs_fp32"].items() if k.endswith(".mean"))
    return "0" if worst == 0 else f"{worst:.2g}"


def variants_table() -> str:
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    rows = [
        "| variant | files (encoder + decoder) | bytes | of fp32 | -log p(x) change, nats | max pixel diff vs fp32 "
        "| for |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    from edgevae.runtime import contract

    listed = manifest["variants"]
    for name in [*(n for n in contract.VARIANTS if n in listed), *(n for n in listed if n not in contract.VARIANTS)]:
        v = listed[name]
        nats = -v["log_likelihood_change"]["nats"]
        change = "0" if nats == 0 else f"{nats:+.3f}" if abs(nats) >= 5e-4 else f"{nats:+.1e}"
        files = f"{v['files']['encoder']} + {v['files']['decoder']}"
        cells = [f"`{name}`", files, f"{v['size']:,}", f"{v['size_vs_fp32']:.0%}", change, pixel_diff(v)]
        rows.append("| " + " | ".join([*cells, v["description"]]) + " |")
    return "\n".join(rows)


def devices_table() -> str:
    from edgevae.runtime import contract

    rows = ["| variant | devices | why not the others | on CUDA |", "|---|---|---|---|"]
    for v in contract.VARIANTS.values():
        rows.append(f"| {v.name} | {', '.join(v.devices)} | {v.not_for} | {v.on_cuda} |".replace("|  |", "| |"))
    return "\n".join(rows)


def bounds_table() -> str:
    """The memory budget's bounds for the packaged default model, from the runtime itself."""
    from edgevae.runtime import VAE
    from edgevae.runtime.images import GRID_BYTES_PER_PIXEL
    from edgevae.runtime.limits import DEFAULT_MEMORY_BUDGET

    vae = VAE(model="default", memory_budget=DEFAULT_MEMORY_BUDGET)
    budget, values = vae.memory_budget, vae.pixels + vae.latent
    if vae.image_bytes != 4 * values:
        raise SystemExit(f"the runtime's bytes per image ({vae.image_bytes}) are no longer 4 x (pixels + latent)")
    png, npy = vae.image_bytes + GRID_BYTES_PER_PIXEL * vae.pixels, vae.image_bytes + 8 * vae.pixels
    sample, row = 8 * vae.latent + 16, 16 * values
    return "\n".join(
        [
            "| amount | bytes each | bound |",
            "|---|---|---:|",
            f"| `sample(n)`, `interpolate(steps)` | 4 x (pixels + latent) = {vae.image_bytes:,} per image "
            f"| {budget // vae.image_bytes:,} images |",
            f"| `edgevae sample -n`, `interpolate --steps` | the images plus their output: {GRID_BYTES_PER_PIXEL} "
            f"bytes a pixel for a PNG grid, 8 for `.npy` | {budget // png:,} (PNG), {budget // npy:,} (`.npy`) |",
            f"| `log_likelihood(k)`, `score(k)`, `-k` | 8 x latent + 16 = {sample} per sample "
            f"| {budget // sample:,} samples |",
            f"| `chunk_size` (default: {vae.chunk_size}, or fewer under a small budget) | 16 x (pixels + latent) "
            f"= {row:,} per row | {budget // row:,} rows |",
            "| images in an input file (`.npy` header, PNG size) | their own bytes plus the command's work "
            "| read from the header first |",
        ]
    )


def score_order() -> list[str]:
    """The scores as bench/ood.py orders them: the default first."""
    from edgevae.runtime.scores import DEFAULT_SCORE, SCORES

    return [DEFAULT_SCORE] + [s for s in SCORES if s != DEFAULT_SCORE]


def ood_table(name: str = "ood.json") -> str:
    ood, scores = artifact_json(name), score_order()
    heads = [f"`{s}`" + (" (default)" if i == 0 else "") for i, s in enumerate(scores)]
    rows = [
        f"| unusual set ({ood['per_set']} images) vs {ood['normal']} MNIST test digits | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(scores),
    ]
    rows += [f"| {set_} | " + " | ".join(f"{row[s]:.4f}" for s in scores) + " |" for set_, row in ood["auroc"].items()]
    worst = [min(row[s] for row in ood["auroc"].values()) for s in scores]
    rows.append("| **worst** | " + " | ".join(f"**{w:.4f}**" for w in worst) + " |")
    return "\n".join(rows)


def ood_by_k_table() -> str:
    by_k = artifact_json("ood.json")["default_score_auroc_by_k"]
    sets = list(next(iter(by_k.values())))
    rows = ["| set | " + " | ".join(f"k={k}" for k in by_k) + " |", "|---|" + "---:|" * len(by_k)]
    rows += [f"| {s} | " + " | ".join(f"{v[s]:.4f}" for v in by_k.values()) + " |" for s in sets]
    return "\n".join(rows)


def speed_summary() -> str:
    """The bench's targets at each contender's default threads (bench.md holds every thread count)."""
    targets = [t for t in artifact_json("bench.json")["targets"] if t["threads"] == "default"]
    rows = ["| target (default threads) | measured: median (p10-p90 over rounds) | met |", "|---|---|---|"]
    for t in targets:
        met = ("yes" if t["met"] else "**no**") + (
            " (the bound is inside the spread)" if t["bound_within_spread"] else ""
        )
        rows.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(rows)


SOURCES: dict[str, tuple[str, Callable[[], str]]] = {
    "presets": ("train/config.py", presets_table),
    "released": ("artifacts/checkpoints/metrics.json", released_table),
    "variants": ("runtime/models/default/manifest.json", variants_table),
    "devices": ("runtime/contract.py", devices_table),
    "bounds": ("runtime/limits.py and the default model", bounds_table),
    "ood": ("artifacts/ood.json", ood_table),
    "ood-by-k": ("artifacts/ood.json", ood_by_k_table),
    "ood-large": ("artifacts/ood_large.json", lambda: ood_table("ood_large.json")),
    "quality": ("artifacts/quality.json", json_table("quality.json")),
    "ablation": ("artifacts/ablation.json", json_table("ablation.json")),
    "cuda-h200": ("artifacts/cuda_h200.json", json_table("cuda_h200.json")),
    "speed-summary": ("artifacts/bench.json", speed_summary),
    "bench": ("artifacts/bench.md", verbatim("bench.md")),
    "scale": ("artifacts/scale.md", verbatim("scale.md")),
    "web": ("artifacts/web.md", verbatim("web.md")),
    "own-images": ("artifacts/own_images.md", verbatim("own_images.md")),
}


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} (docs/make_tables.py, from {SOURCES[name][0]}); do not edit -->"


def render_page(text: str, rendered: dict[str, str]) -> str:
    """`text` with every generated block rewritten; SystemExit on a block name this script does not know."""

    def block(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in SOURCES:
            raise SystemExit(f"unknown generated table {name!r}; known: {', '.join(SOURCES)}")
        if name not in rendered:
            rendered[name] = SOURCES[name][1]()
        return f"{begin_marker(name)}\n{rendered[name]}\n<!-- generated: end -->"

    return MARKER.sub(block, text)


def used_blocks(text: str) -> list[str]:
    return [m.group(1) for m in MARKER.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page differs instead of writing it")
    args = parser.parse_args(argv)
    rendered: dict[str, str] = {}
    stale, used = [], set()
    for page in pages():
        text = page.read_text()
        used.update(used_blocks(text))
        wanted = render_page(text, rendered)
        if wanted != text:
            stale.append(page)
            if not args.check:
                page.write_text(wanted)
    unused = sorted(set(SOURCES) - used)
    for name in unused:
        print(f"no page holds the generated table {name!r} ({SOURCES[name][0]})")
    for page in stale:
        verb = "differs from its files: run .venv/bin/python docs/make_tables.py" if args.check else "rewritten"
        print(f"{page.relative_to(REPO)}: {verb}")
    return 1 if unused or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())

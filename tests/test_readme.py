"""The README quotes its figures from the files that hold them: these tests fail when one drifts."""

from __future__ import annotations

import json
import re

import pytest

from edgevae.runtime import contract
from edgevae.runtime.likelihood import SCORES

from conftest import need

need("torch")

from edgevae.train.config import PRESETS

from conftest import REPO, SHIPPED_MODEL

README = (REPO / "README.md").read_text()
FLAT = " ".join(README.split())  # prose wraps anywhere


def table_rows(first_cell: str) -> list[list[str]]:
    """The cells of every README table row whose first cell starts with `first_cell`."""
    rows = []
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].startswith(first_cell):
            rows.append(cells)
    return rows


def test_released_model_figures_are_those_of_its_metrics_file() -> None:
    metrics = json.loads((REPO / "artifacts" / "checkpoints" / "metrics.json").read_text())
    epochs, per_epoch = len(metrics["history"]), metrics["seconds_per_epoch"]
    minutes = sum(h["seconds"] for h in metrics["history"]) / 60
    assert f"{epochs} epochs at {per_epoch:.2f} s each, {minutes:.1f} minutes of training" in FLAT
    assert f"| test ELBO | **{metrics['test_elbo']:.2f}** |" in README
    (row,) = table_rows("importance-weighted log p(x), k = ")
    assert row[0].endswith(f"k = {metrics['iw_samples']} (Burda et al. 2015)")
    assert row[1] == f"**{metrics['test_iw_log_likelihood']:.2f}**"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_table_is_the_presets(preset: str) -> None:
    (row,) = table_rows(f"`{preset}`")
    config = PRESETS[preset]
    m = config.model
    assert row[1].startswith(f"{m.layers} x {m.hidden} {m.block}, {m.latent} latents"), row[1]
    assert row[2].startswith(m.likelihood)
    objective = "IWAE, k = " + str(config.k) if config.objective == "iwae" else "ELBO"
    assert row[3].startswith(objective), row[3]
    assert ("warm-up " + str(config.warmup_epochs) + " epochs" in row[3]) == (config.warmup_epochs > 0)
    lr = re.fullmatch(r"Adam ([0-9.e-]+), (constant|cosine decay to ([0-9.e-]+))", row[4])
    assert lr, row[4]
    assert float(lr.group(1)) == config.lr
    assert (lr.group(2) == "constant") == (config.lr_schedule == "constant")
    if config.lr_schedule == "cosine":
        assert float(lr.group(3)) == config.lr_final
    assert (int(row[5]), int(row[6])) == (config.batch_size, config.epochs)


def test_variant_table_is_the_shipped_manifest() -> None:
    manifest = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())
    for name, v in manifest["variants"].items():
        (row,) = table_rows(f"`{name}`")
        assert row[2] == f"{v['size']:,}" and row[3] == f"{v['size_vs_fp32']:.0%}", name
        change = -v["log_likelihood_change"]["nats"] if name != contract.DEFAULT_VARIANT else 0
        shown = float(row[4].lstrip("+")) if row[4] != "0" else 0.0
        assert shown == pytest.approx(change, abs=6e-4 if abs(change) < 0.01 else 6e-3), name


def test_ood_table_is_the_ood_file() -> None:
    ood = json.loads((REPO / "artifacts" / "ood.json").read_text())
    scores = list(SCORES)
    for name, by_score in ood["auroc"].items():
        (row,) = table_rows(name)
        assert [float(c) for c in row[1:]] == [round(by_score[s], 4) for s in scores], name
    (worst,) = table_rows("**worst**")
    assert [float(c.strip("*")) for c in worst[1:]] == [
        round(min(v[s] for v in ood["auroc"].values()), 4) for s in scores
    ]
    assert f"`score` costs {ood['score_ms_per_image']:.2f} ms per image at k={ood['k']}" in FLAT


def test_speed_section_is_the_bench_file() -> None:
    bench = (REPO / "artifacts" / "bench.md").read_text()
    for line in bench.splitlines():
        if line.startswith("|") or line.startswith("Machine:"):
            assert line in README, line


def test_scale_tables_are_the_scale_file() -> None:
    for line in (REPO / "artifacts" / "scale.md").read_text().splitlines():
        if line.startswith("|"):
            assert line in README, line


@pytest.mark.parametrize("name", ["quality", "ablation"])
def test_quality_and_ablation_tables_are_their_files(name: str) -> None:
    doc = json.loads((REPO / "artifacts" / f"{name}.json").read_text())
    assert doc["table"] in README, f"README's {name} table differs from artifacts/{name}.json: rerun make {name}"


def test_quality_figures_state_how_they_were_measured() -> None:
    doc = json.loads((REPO / "artifacts" / "quality.json").read_text())
    assert set(doc["models"]) == {"default", "large", "book"}
    for name, r in doc["models"].items():
        record = r.get("as_bernoulli", r)  # the figure the table compares
        assert record["likelihood"] == "bernoulli" and record["binarization_seed"] == 20140101, name
        assert (record["k"], record["images"]) == (1000, 1000), name
        assert record["estimator"].startswith("importance-weighted bound"), name
        assert f"first {record['images']} test images" == record["subset"]
    assert (
        doc["models"]["default"]["config"]
        == json.loads((REPO / "artifacts" / "checkpoints" / "metrics.json").read_text())["config"]
    )


def test_cuda_section_is_its_file_and_the_contract() -> None:
    doc = json.loads((REPO / "artifacts" / "cuda_h200.json").read_text())
    assert doc["table"].strip() in README and "not re-measured" in doc["source"]
    for v in contract.VARIANTS.values():
        assert f"| {v.name} | {', '.join(v.devices)} | {v.not_for} |".replace("|  |", "| |") in README, v.name


def test_reliability_bounds_are_the_code_s() -> None:
    from edgevae.runtime import VAE
    from edgevae.runtime.images import GRID_BYTES_PER_PIXEL, MAX_IMAGE_PIXELS
    from edgevae.runtime.limits import DEFAULT_MEMORY_BUDGET, MAX_MANIFEST_BYTES, MAX_SIDE_FILE_BYTES

    vae = VAE(model="default", memory_budget=DEFAULT_MEMORY_BUDGET)
    budget, row = vae.memory_budget, 16 * (vae.pixels + vae.latent)
    assert budget == 2 * 2**30 and "one budget, 2 GiB by default" in FLAT
    assert f"= {vae.image_bytes:,} per image | {budget // vae.image_bytes:,} images |" in README
    png, npy = vae.image_bytes + GRID_BYTES_PER_PIXEL * vae.pixels, vae.image_bytes + 8 * vae.pixels
    assert f"| {budget // png:,} (PNG), {budget // npy:,} (`.npy`) |" in README
    assert f"= {8 * vae.latent + 16} per sample | {budget // (8 * vae.latent + 16):,} samples |" in README
    assert f"= {row:,} per row | {budget // row:,} rows |" in README and vae.chunk_size == 2048
    assert f"at most {MAX_IMAGE_PIXELS:,} pixels" in FLAT
    assert (
        f"at most {MAX_MANIFEST_BYTES // 2**20} MiB, a file beside the graphs {MAX_SIDE_FILE_BYTES // 2**20} MiB"
        in FLAT
    )

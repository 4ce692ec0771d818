"""The figures of docs/own-images.md are artifacts/own_images.md, which bench/own_images.py writes
from artifacts/own_images.json: these tests fail when either drifts."""

from __future__ import annotations

import json

from conftest import REPO, load_bench

ARTIFACT_JSON = REPO / "artifacts" / "own_images.json"
ARTIFACT_MD = REPO / "artifacts" / "own_images.md"
PAGE = REPO / "docs" / "own-images.md"  # the README's "Your own images" moved there


def test_markdown_is_what_the_bench_writes_from_its_json() -> None:
    figures = json.loads(ARTIFACT_JSON.read_text())
    assert load_bench("own_images").markdown(figures) == ARTIFACT_MD.read_text()


def test_the_page_quotes_the_markdown() -> None:
    page = PAGE.read_text()
    assert ARTIFACT_MD.read_text().strip("\n") in page, "docs/own-images.md differs from artifacts/own_images.md"


def test_figures_cover_every_variant_and_both_lossless_formats() -> None:
    figures = json.loads(ARTIFACT_JSON.read_text())
    assert set(figures["variants"]) == {"fp32", "int8", "fp16", "b1", "ort"}
    assert set(figures["lossless_bits_per_dim"]) == {"png", "webp"}
    assert figures["training_minutes"] > 0 and figures["held_out_patches"] > 0


def test_the_page_s_prose_quotes_the_same_figures() -> None:
    figures = json.loads(ARTIFACT_JSON.read_text())
    flat = " ".join(PAGE.read_text().split())
    v, lossless = figures["variants"], figures["lossless_bits_per_dim"]
    assert (
        f"{v['fp32']['bits_per_dim']:.2f} bits per dimension on the held-out patches against "
        f"{lossless['png']:.2f} (PNG) and {lossless['webp']:.2f} (WebP)" in flat
    )
    own_split = figures["training_region_test_bits_per_dim"]
    assert f"Its own test split, drawn from the training region, measures {own_split:.2f}" in flat
    assert f"trained for {figures['training_minutes']:.0f} minutes" in flat
    better = [v["fp32"]["bits_per_dim"] - v[n]["bits_per_dim"] for n in ("int8", "fp16")]
    assert f"(by {better[0]:.2f} and {better[1]:.2f} bits/dim held out" in flat
    assert f"int8 is {v['int8']['graph_bytes'] / v['fp32']['graph_bytes']:.0%} of fp32's bytes" in flat

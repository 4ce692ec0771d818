"""The web figures of docs/web.md are artifacts/web.md's (written by `make web-bench`), and that file
still describes the files shipped now: the graphs' and the page's bytes, and parity within tolerance."""

from __future__ import annotations

import json

import pytest

from edgevae.runtime import contract

from conftest import REPO, SHIPPED_MODEL, load_bench

WEB_JSON = REPO / "artifacts" / "web.json"
WEB_MD = REPO / "artifacts" / "web.md"
# what web/index.html loads of web/ (node.js and make_contract.py are not part of the page)
PAGE_FILES = [
    "index.html",
    "page.js",
    "grid.js",
    "browser.js",
    "edgevae.js",
    "contract.js",
    "files.js",
    "noise.js",
    "golden.js",
]


def test_the_web_page_quotes_web_md() -> None:
    page = (REPO / "docs" / "web.md").read_text()  # the README's "In a browser and in Node.js" moved there
    assert WEB_MD.read_text().strip("\n") in page, "docs/web.md differs from artifacts/web.md (make web-bench)"


def test_the_graph_bytes_are_the_shipped_variants() -> None:
    report = json.loads(WEB_JSON.read_text())
    manifest = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())
    assert {k: v["bytes"] for k, v in report["weight"]["graphs"].items()} == {
        k: v["size"] for k, v in manifest["variants"].items()
    }, "the shipped graphs changed since make web-bench"
    fetched = report["weight"]["fetched"]
    assert fetched["graphs (fp32, as loaded)"]["bytes"] == manifest["variants"]["fp32"]["size"]
    golden = [contract.MANIFEST_FILE, contract.GOLDEN_SPEC_FILE, contract.GOLDEN_DATA_FILE]
    assert fetched["manifest and golden vectors"]["bytes"] == sum((SHIPPED_MODEL / f).stat().st_size for f in golden)


def test_the_page_bytes_are_the_files_in_web() -> None:
    fetched = json.loads(WEB_JSON.read_text())["weight"]["fetched"]
    page = fetched["edgevae page and JS (HTML, ES modules)"]
    assert page["files"] == len(PAGE_FILES)
    assert page["bytes"] == sum((REPO / "web" / f).stat().st_size for f in PAGE_FILES), "web/ changed: make web-bench"
    dist = REPO / "web" / "node_modules" / "onnxruntime-web" / "dist"
    if not dist.is_dir():
        pytest.skip("web/node_modules has no onnxruntime-web: run `npm ci --ignore-scripts` in web/")
    assert fetched["onnxruntime-web WASM"]["bytes"] == (dist / "ort-wasm-simd-threaded.wasm").stat().st_size
    js = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs")
    assert fetched["onnxruntime-web JS"]["bytes"] == sum((dist / f).stat().st_size for f in js)


def test_the_measured_parity_is_within_the_variants_tolerance() -> None:
    parity = json.loads(WEB_JSON.read_text())["parity"]
    for variant, found in parity.items():
        v = contract.VARIANTS[variant]
        bound = contract.TOLERANCE["cpu"] + (0.0 if v.exact else float(v.tolerance(contract.MEAN) or 0.0))
        assert 0 <= max(found.values()) <= bound, variant


def test_web_md_is_what_bench_web_renders_from_web_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # bench/web.py imports bench/run.py's helpers
    module = load_bench("web")
    assert module.render(json.loads(WEB_JSON.read_text())) == WEB_MD.read_text()
    assert module.kind_of("/web/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs") == "onnxruntime-web JS"
    assert module.kind_of("/runtime/models/default/decoder.onnx") == "graphs (fp32, as loaded)"
    assert module.kind_of("/favicon.ico") is None

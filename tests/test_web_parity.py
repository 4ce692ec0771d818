"""The same z gives the same pixel means in a browser (onnxruntime-web, WASM), in Node (onnxruntime-node)
and in the Python runtime, within the variant's tolerance. Pairs that need a missing program skip,
saying which."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from edgevae.runtime import VAE, contract

from conftest import REPO, SHIPPED_MODEL
from web_support import launch, need_browser, need_node, open_page, run_node, serve

pytestmark = pytest.mark.slow  # a browser start: a few seconds
VARIANTS = ["fp32", "int8"]


def latents() -> np.ndarray:
    """The golden decoder z (six N(0, I) draws and |z| = 4 both ways) and 56 more draws: 64 rows."""
    spec = json.loads((SHIPPED_MODEL / contract.GOLDEN_SPEC_FILE).read_text())
    t = spec["tensors"][f"decoder.{contract.Z}"]
    data = (SHIPPED_MODEL / spec["data"]).read_bytes()
    golden = np.frombuffer(data, "<f4", t["bytes"] // 4, t["offset"]).reshape(t["shape"])
    more = np.random.default_rng(23).standard_normal((56, golden.shape[1]), dtype=np.float32)
    return np.concatenate([golden, more])


def tolerance(variant: str) -> float:
    """The self-test's bound for the decoder's mean: the CPU tolerance plus the variant's budget."""
    v = contract.VARIANTS[variant]
    return contract.TOLERANCE["cpu"] + (0.0 if v.exact else float(v.tolerance(contract.MEAN) or 0.0))


def python_means(variant: str, z: np.ndarray) -> np.ndarray:
    return VAE(SHIPPED_MODEL, device="cpu", variant=variant).decode(z).reshape(len(z), -1)


def node_means(variant: str, z: np.ndarray) -> np.ndarray:
    got = run_node(
        f"""import {{ loadVAE, DEFAULT_MODEL }} from './node.js';
        const vae = await loadVAE(DEFAULT_MODEL, {{ variant: '{variant}', threads: 1 }});
        const z = JSON.parse(await new Response(process.stdin).text());
        console.log(JSON.stringify(Array.from((await vae.decode(z)).data)));""",
        stdin=json.dumps(z.reshape(-1).tolist()),
    )
    return np.asarray(got, np.float32).reshape(len(z), -1)


@pytest.fixture(scope="module")
def browser_means() -> Iterator[Any]:
    """variant, z -> the means the page's VAE (web/index.html?variant=...) decodes for z."""
    with serve(REPO) as site, launch(need_browser()) as browser:

        def means(variant: str, z: np.ndarray) -> np.ndarray:
            page = open_page(browser, f"{site}/web/index.html?variant={variant}")
            got = page.evaluate(
                "async (z) => Array.from((await window.edgevae.vae.decode(z)).data)", z.reshape(-1).tolist()
            )
            page.close()
            return np.asarray(got, np.float32).reshape(len(z), -1)

        yield means


@pytest.mark.parametrize("variant", VARIANTS)
def test_node_and_python_agree(variant: str) -> None:
    need_node()
    z = latents()
    assert np.abs(node_means(variant, z) - python_means(variant, z)).max() <= tolerance(variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_browser_and_python_agree(variant: str, browser_means: Any) -> None:
    z = latents()
    assert np.abs(browser_means(variant, z) - python_means(variant, z)).max() <= tolerance(variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_browser_and_node_agree(variant: str, browser_means: Any) -> None:
    need_node()
    z = latents()
    means = browser_means(variant, z)
    assert means.shape == (64, 784) and 0 <= means.min() and means.max() <= 1
    assert np.abs(means - node_means(variant, z)).max() <= tolerance(variant)

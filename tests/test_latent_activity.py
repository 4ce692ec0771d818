"""Posterior collapse, measured: active latent units (Burda et al. 2015: Cov_x E_q[z_u] > 0.01) and
the KL per unit, from the runtime, in each packaged model's manifest, `edgevae info` and the quality
table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgevae.runtime import VAE, ModelError
from edgevae.runtime import likelihood as lik
from edgevae.runtime.cli import latent_lines, main

from conftest import REPO, SHIPPED_MODEL, need


def manifest(model: str) -> dict:
    return json.loads((SHIPPED_MODEL.parent / model / "manifest.json").read_text())


@pytest.mark.parametrize("images", [2, 50, 4000])
def test_the_formulas_give_each_units_spread_and_kl(images: int) -> None:
    rng = np.random.default_rng(images)
    scales = np.array([0.0, 0.05, 0.2, 1.0])  # variance 0, 0.0025, 0.04, 1: two of four above 0.01
    mu = (rng.standard_normal((images, 4)) * scales).astype(np.float32)
    logvar = rng.normal(-1.0, 0.3, (images, 4)).astype(np.float32)
    variance, kl = lik.latent_activity(mu, logvar)
    np.testing.assert_allclose(variance, mu.astype(np.float64).var(axis=0), rtol=1e-12)
    assert variance[0] == 0.0
    # the units' KL adds up to the KL term of each image, averaged
    np.testing.assert_allclose(kl.sum(), lik.kl_standard_normal(mu, logvar).mean(), rtol=1e-10)
    if images >= 4000:
        assert int((variance > lik.ACTIVE_UNIT_THRESHOLD).sum()) == 2


def test_a_collapsed_unit_is_inactive_with_no_kl() -> None:
    mu = np.zeros((100, 3), np.float32)
    mu[:, 2] = np.linspace(-2, 2, 100)
    variance, kl = lik.latent_activity(mu, np.zeros_like(mu))
    assert (variance > lik.ACTIVE_UNIT_THRESHOLD).tolist() == [False, False, True]
    np.testing.assert_allclose(kl[:2], 0.0, atol=0)


@pytest.mark.parametrize(("model", "active", "latent"), [("default", 20, 20), ("large", 19, 40)])
def test_the_packaged_models_record_what_the_runtime_measures(
    model: str, active: int, latent: int, data_dir: Path
) -> None:
    need("torch")
    from edgevae.export.latents import mnist_test_images

    vae = VAE(model=model, device="cpu")
    recorded = manifest(model)["latent_activity"]
    got = vae.latent_activity(mnist_test_images(str(data_dir), vae.likelihood))
    assert (recorded["images"], recorded["active_units"], recorded["latent"]) == (10_000, got.active_units, latent)
    assert got.active_units == active  # the large model leaves about half its latents unused: posterior collapse
    np.testing.assert_allclose(recorded["variance"], got.variance, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(recorded["kl_per_unit_nats"], got.kl_per_unit, rtol=1e-4, atol=1e-9)


def test_info_reports_active_units_and_kl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model-name", "large", "--device", "cpu"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("latent units:"))
    assert line.startswith("latent units: 19 of 40 active (Cov_x E_q[z_u] > 0.01, Burda et al. 2015) over 10,000 MNIST")
    kl = [float(v) for v in line.split("largest first: ")[1].split(", ")]
    assert len(kl) == 40 and kl == sorted(kl, reverse=True)
    assert kl[-1] > 0.5  # against N(0, 1): the unused units sit at the learned prior's narrow components


def test_a_malformed_record_is_a_model_error_and_none_is_no_line() -> None:
    assert latent_lines({}) == []
    with pytest.raises(ModelError, match="latent_activity is malformed"):
        latent_lines({"latent_activity": {"active_units": 3}})


def test_the_quality_table_has_the_manifests_active_units() -> None:
    quality = json.loads((REPO / "artifacts" / "quality.json").read_text())
    for model in ("default", "large"):
        recorded = manifest(model)["latent_activity"]
        assert quality["models"][model]["active_units"] == recorded["active_units"]
        assert f"| {recorded['active_units']} of {recorded['latent']} |" in quality["table"]


def test_the_quality_page_says_what_the_manifests_record() -> None:
    text = " ".join((REPO / "docs" / "quality.md").read_text().split())
    d, g = manifest("default")["latent_activity"], manifest("large")["latent_activity"]
    assert f"`default` uses {d['active_units']} of its {d['latent']} latents" in text
    assert f"`large` only {g['active_units']} of its {g['latent']}" in text
    assert f"over all {d['images']:,} test images" in text

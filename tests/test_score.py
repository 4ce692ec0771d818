"""Unusual-input scores: the AUROC floors on each unusual set, the CLI's CSV and thresholds, and
the statistics file the score needs (written by export, covered by the manifest)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "onnx")

from edgevae.runtime import VAE, ModelError, contract
from edgevae.runtime.cli import main
from edgevae.runtime.likelihood import DEFAULT_SCORE, SCORES
from edgevae.runtime.model import seal_manifest

from conftest import SHIPPED_MODEL, load_bench

auroc, make_sets = load_bench("outliers").auroc, load_bench("outliers").make_sets

# Floors for the default score against MNIST test digits: 0.99 for every set, as asked. Letters are the
# hard set, with the least margin over the floor; what bench/ood.py measured on the shipped models is in
# artifacts/ood.json and artifacts/ood_large.json (tables in docs/likelihood.md).
FLOORS = {
    "uniform noise": 0.99,
    "black / constant grey": 0.99,
    "inverted digits": 0.99,
    "shifted digits (6 px)": 0.99,
    "letters (Pillow)": 0.99,
    "salt & pepper (30%)": 0.99,
}


@pytest.fixture(scope="module")
def scored(data_dir: Path) -> tuple[VAE, tuple[np.ndarray, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    from edgevae.train.data import load_split

    vae = VAE(device="cpu")
    test, _ = load_split(data_dir, "test")
    normal = test.reshape(len(test), -1)[np.random.default_rng(0).choice(len(test), 1000, replace=False)]
    sets = make_sets(test, 300, seed=1)
    k = vae.score_stats.k
    return vae, vae.score_inputs(normal, k=k), {name: vae.score_inputs(x, k=k) for name, x in sets.items()}


@pytest.mark.parametrize("name", list(FLOORS))
def test_default_score_auroc_floor(scored: tuple, name: str) -> None:
    vae, normal, unusual = scored
    stats = vae.score_stats
    value = auroc(stats.compute(DEFAULT_SCORE, *normal), stats.compute(DEFAULT_SCORE, *unusual[name]))
    assert value >= FLOORS[name], f"{name}: AUROC {value:.4f} < {FLOORS[name]}"


def test_raw_nll_calls_blank_images_typical_and_the_default_does_not(scored: tuple) -> None:
    """Nalisnick et al. 2019's failure, reproduced, and the default score's fix."""
    vae, normal, unusual = scored
    blank = unusual["black / constant grey"]
    assert auroc(normal[0], blank[0][:75]) < 0.05  # the all-black quarter: *more* likely than any digit
    assert auroc(vae.score_stats.compute(DEFAULT_SCORE, *normal), vae.score_stats.compute(DEFAULT_SCORE, *blank)) > 0.99


def test_score_of_an_image_does_not_depend_on_its_batch(real_digits: np.ndarray) -> None:
    vae = VAE()
    whole = vae.score(real_digits[:12])
    for i in (0, 5, 11):
        one = vae.score(real_digits[i])
        assert one.score.shape == (1,) and abs(one.score[0] - whole.score[i]) <= 1e-9
    assert whole.k == vae.score_stats.k and whole.name == DEFAULT_SCORE


@pytest.mark.parametrize("score", sorted(SCORES))
def test_every_score_is_finite_and_ranks_noise_above_digits(score: str, real_digits: np.ndarray) -> None:
    vae = VAE()
    digits = vae.score(real_digits[:16], score=score).score
    noise = vae.score(np.random.default_rng(0).random((16, 784), dtype=np.float32), score=score).score
    assert np.isfinite(digits).all() and np.isfinite(noise).all()
    assert noise.min() > np.median(digits)


def test_percentile_thresholds_hold_on_unseen_normal_images(data_dir: Path) -> None:
    """The stored percentiles come from training digits the latent density was not fitted to: on
    the 10,000 test digits, never seen, about p% stay below the p-th percentile (binomial spread at
    this n: 0.3 point for p90, 0.1 for p99)."""
    from edgevae.train.data import load_split

    vae = VAE(device="cpu")
    test, _ = load_split(data_dir, "test")
    scores = vae.score(test).score
    for p, slack in (("90", 0.01), ("99", 0.005)):
        above = float((scores > vae.threshold(p)).mean())
        assert abs(above - (1 - float(p) / 100)) <= slack, (p, above)


def test_density_nll_is_the_mixture_density_written_out() -> None:
    """ScoreDensity.nll against the textbook formula: -log sum_m w_m N(f; m_m, C_m) with C_m's
    inverse and determinant taken directly, over several blocks of rows."""
    from edgevae.export.calibrate import precision_factors
    from edgevae.runtime.mixture import ScoreDensity

    rng = np.random.default_rng(3)
    m, d = 3, 4
    a = rng.standard_normal((m, d, d))
    covs = a @ np.transpose(a, (0, 2, 1)) + 0.5 * np.eye(d)
    means, weights = rng.standard_normal((m, d)), np.array([0.2, 0.5, 0.3])
    density = ScoreDensity(np.log(weights), means, precision_factors(covs))
    q = rng.standard_normal((700, d))
    dens = np.zeros(len(q))
    for w, mu, cov in zip(weights, means, covs, strict=True):
        diff = q - mu
        maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        dens += w * np.exp(-0.5 * maha) / np.sqrt((2 * np.pi) ** d * np.linalg.det(cov))
    np.testing.assert_allclose(density.nll(q), -np.log(dens), rtol=1e-9, atol=1e-9)


def test_the_fitted_density_finds_known_clusters_and_weighs_classes_by_their_share() -> None:
    from edgevae.export.calibrate import fit_score_density, split_normal_images

    rng = np.random.default_rng(0)
    centres = np.array([[6.0, 0.0], [-6.0, 0.0], [0.0, 6.0]])
    labels = np.repeat([0, 1, 2], [600, 300, 300])
    codes = centres[labels] + 0.5 * rng.standard_normal((len(labels), 2))
    unlabelled = fit_score_density(codes, components=3)
    found = unlabelled.means[np.argsort(unlabelled.means[:, 0] + 0.1 * unlabelled.means[:, 1])]
    np.testing.assert_allclose(found, centres[[1, 2, 0]], atol=0.1)
    np.testing.assert_allclose(np.sort(np.exp(unlabelled.log_weights)), [0.25, 0.25, 0.5], atol=0.02)
    # up to 2 Gaussians per class, at least 200 images each: 2 for the 600, 1 for each 300
    per_class = fit_score_density(codes, labels, components=2)
    assert len(per_class.log_weights) == 4
    np.testing.assert_allclose(np.exp(per_class.log_weights).sum(), 1.0, rtol=1e-9)
    # a point between the clusters is far less likely than one at a centre
    nll = per_class.nll(np.array([[6.0, 0.0], [0.0, 0.0]]))
    assert nll[1] > nll[0] + 20
    fit, held = split_normal_images(1200)
    assert len(held) == 200 and len(fit) == 1000 and not set(fit) & set(held)
    with pytest.raises(ValueError, match="need at least 20 normal images; got 15"):
        split_normal_images(15)


def test_score_density_is_listed_checked_and_shaped(tmp_path: Path, real_digits: np.ndarray) -> None:
    from edgevae.runtime.mixture import ScoreDensity

    manifest = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())
    assert contract.SCORE_DENSITY_FILE in manifest["files"]
    vae = VAE(device="cpu")
    assert vae.score_density.means.shape[1] == vae.latent + 2  # the code, log NLL, log complexity
    assert len(vae.score_density.log_weights) == vae.score_stats.density_components == 120  # 12 per digit class
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    d = vae.latent + 1  # one feature short
    wrong = ScoreDensity(np.zeros(2), np.zeros((2, d)), np.repeat(np.eye(d)[None], 2, axis=0))
    (model / contract.SCORE_DENSITY_FILE).write_bytes(wrong.to_npz())
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    entry = manifest["files"][contract.SCORE_DENSITY_FILE]
    blob = (model / contract.SCORE_DENSITY_FILE).read_bytes()
    import hashlib

    entry.update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))  # a wrong file, properly listed
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    with pytest.raises(ModelError, match=rf"score_density.npz: expected means shaped \(2, {vae.latent + 2}\)"):
        VAE(model, device="cpu").score(real_digits[:2])


def test_score_statistics_are_listed_and_tamper_checked(tmp_path: Path) -> None:
    manifest = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())
    assert contract.SCORE_STATS_FILE in manifest["files"]
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    stats = model / contract.SCORE_STATS_FILE
    stats.write_text(stats.read_text().replace('"k": 16', '"k": 17'))
    with pytest.raises(ModelError, match=r"score_stats.json is corrupt \(modified\)"):
        VAE(model)


def test_missing_statistics_say_how_to_get_them(tmp_path: Path, real_digits: np.ndarray) -> None:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    del manifest["files"][contract.SCORE_STATS_FILE]
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    vae = VAE(model)  # everything else still works
    assert vae.sample(2, seed=0).shape == (2, 28, 28)
    with pytest.raises(ModelError, match="has no score_stats.json .* re-export"):
        vae.score(real_digits[:2])


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_cli_writes_one_row_per_image_with_score_and_nll(
    tmp_path: Path, real_digits: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    images = np.concatenate([real_digits[:5], np.zeros((2, 784), np.uint8)])
    np.save(tmp_path / "x.npy", images)
    assert main(["score", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.csv"), "--threshold", "p99"]) == 0
    out = capsys.readouterr().out
    assert "device: auto -> cpu" in out and "2 flagged above" in out and "99th percentile" in out
    rows = read_csv((tmp_path / "s.csv").read_text())
    assert list(rows[0]) == ["index", "score", "nll", "complexity_nats", "density_nll", "flagged"] and len(rows) == 7
    assert [int(r["flagged"]) for r in rows] == [0, 0, 0, 0, 0, 1, 1]
    result = VAE().score(images)
    np.testing.assert_allclose([float(r["score"]) for r in rows], result.score, rtol=1e-5)
    np.testing.assert_allclose([float(r["nll"]) for r in rows], result.nll, rtol=1e-5)


def test_cli_prints_csv_to_stdout_without_output(
    tmp_path: Path, real_digits: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", real_digits[:3])
    assert main(["score", str(tmp_path / "x.npy"), "--score", "nll", "-k", "4"]) == 0
    captured = capsys.readouterr()
    rows = read_csv(captured.out)
    assert len(rows) == 3 and "flagged" not in rows[0] and "score nll, k=4" in captured.err
    assert [r["score"] for r in rows] == [r["nll"] for r in rows]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "p42"], "no stored percentile '42'"),
        (["--threshold", "high"], "--threshold: expected a finite number or pNN"),
        (["-k", "0"], "k must be an int >= 1"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(
    tmp_path: Path, real_digits: np.ndarray, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", real_digits[:2])
    assert main(["score", str(tmp_path / "x.npy")] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgevae: error:") and message in err and "Traceback" not in err

"""Scores are a registry: one definition each (runtime/scores.py), read by VAE.score, the CLI, Ray and
the export's statistics builder; a score added there flows through all of them, and score_stats.json
made under another noise scheme is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevae.export.calibrate import build_score_stats
from edgevae.runtime import VAE, ModelError, contract
from edgevae.runtime.cli import build_parser, format_scores
from edgevae.runtime.model import seal_manifest
from edgevae.runtime.noise import NOISE_SCHEME
from edgevae.runtime.score_stats import ScoreStats
from edgevae.runtime.scores import SCORE_COLUMNS, SCORES, Measures, Score, Stat, get_score
from edgevae.runtime.scoring import ScoreResult

from conftest import SHIPPED_MODEL


def normal_measures(n: int = 400, seed: int = 0) -> Measures:
    rng = np.random.default_rng(seed)
    nll = rng.normal(90, 10, n)
    return Measures(nll, rng.normal(900, 80, n), rng.normal(-30, 5, n))


@pytest.mark.parametrize("name", list(SCORES))
def test_each_score_fits_the_statistics_it_declares(name: str) -> None:
    score = SCORES[name]
    assert score.name == name and score.description
    stats = score.fit(normal_measures())
    assert sorted(stats) == sorted(s.name for s in score.stats)
    for stat in score.stats:
        assert np.shape(stats[stat.name]) == stat.shape and (
            not stat.positive or np.all(np.asarray(stats[stat.name]) > 0)
        )
    values = score.compute(normal_measures(50, seed=1), stats)
    assert values.shape == (50,) and np.isfinite(values).all()


def test_statistics_round_trip_through_their_file_for_every_score() -> None:
    stats = build_score_stats(normal_measures(), k=16, seed=0, source="test", components=3)
    again = ScoreStats.from_json(stats.to_json())
    assert again == stats and set(again.percentiles) == set(SCORES) and again.noise == NOISE_SCHEME
    d = json.loads(stats.to_json())
    assert (d["format"], d["version"], d["noise"]) == (contract.SCORE_STATS_FORMAT, 2, NOISE_SCHEME)
    m = normal_measures(20, seed=2)
    for name in SCORES:
        np.testing.assert_array_equal(
            again.compute(name, m.nll, m.complexity_nats, m.density_nll), SCORES[name].compute(m, stats.stats[name])
        )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: (d.pop("version"), d.pop("noise")), "version 1 .*numpy default_rng.*re-export the model"),
        (lambda d: d.update(noise="another"), "noise another.*re-export"),
        (lambda d: d["scores"].pop("typicality"), "no statistics for score 'typicality'"),
        (lambda d: d["scores"]["density"]["stats"].update(std=0.0), "density.std must be finite and positive"),
        (lambda d: d["scores"]["typicality"]["stats"].update(cov=[1, 2]), r"typicality.cov .* of shape \(2, 2\)"),
    ],
)
def test_statistics_of_another_scheme_or_shape_are_refused(change: object, message: str) -> None:
    d = json.loads(build_score_stats(normal_measures(), 16, 0, "test", 3).to_json())
    change(d)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        ScoreStats.from_json(json.dumps(d).encode())


def test_a_score_added_to_the_registry_reaches_the_cli_ray_and_the_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a score is one entry in runtime/scores.py (then a re-export writes its statistics)."""
    extra = Score(
        "nll-rank",
        "NLL above normal images' median, in nats",
        lambda m, p: m.nll - p["median"],
        (Stat("median"),),
        lambda m: {"median": float(np.median(m.nll))},
    )
    monkeypatch.setitem(SCORES, extra.name, extra)
    stats = ScoreStats.from_json(build_score_stats(normal_measures(), 16, 0, "test", 3).to_json())
    assert set(stats.percentiles["nll-rank"]) == {"90", "95", "99", "99.9"}
    assert stats.compute("nll-rank", np.array([100.0]), np.array([1.0]), np.array([1.0]))[0] == pytest.approx(
        100.0 - stats.stats["nll-rank"]["median"]
    )
    args = build_parser().parse_args(["score", "x.npy", "--score", "nll-rank"])
    assert args.score == "nll-rank" and get_score("nll-rank") is extra
    pytest.importorskip("ray", reason="ray: the ray extra (pip install -e '.[ray]')")
    from edgevae.runtime.raydata import check_options

    check_options("score", "nll-rank", 1, 0)


def test_cli_and_ray_columns_are_the_result_s_fields() -> None:
    result = ScoreResult("nll", np.array([1.0]), np.array([2.0]), np.array([3.0]), np.array([4.0]), 16)
    assert [getattr(result, c)[0] for c in SCORE_COLUMNS] == [1.0, 2.0, 3.0, 4.0]
    assert format_scores(result, None).splitlines()[0] == "index," + ",".join(SCORE_COLUMNS)
    assert result.complexity is result.complexity_nats and result.density is result.density_nll  # 0.1.0's names
    with pytest.raises(ValueError, match=r"score must be one of \['complexity', 'density'"):
        get_score("latent")


def test_a_model_with_statistics_of_the_old_noise_scores_nothing(tmp_path: Path, real_digits: np.ndarray) -> None:
    """A folder exported before the noise scheme (score_stats.json version 1) loads and samples, but
    `score` refuses to compare this runtime's scores with statistics made under other noise."""
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    old = {  # 0.1.0's layout: the statistics of each score as top-level fields, no version, no noise
        "format": contract.SCORE_STATS_FORMAT,
        **{"k": 16, "seed": 0, "images": 10000, "source": "old", "density_components": 120},
        **{"nll_mean": 91.0, "nll_std": 25.0, "density_mean": -30.0, "density_std": 5.0},
        **{"feature_mean": [4.5, 6.9], "feature_cov": [[0.06, 0.05], [0.05, 0.06]], "percentiles": {}},
    }
    blob = (json.dumps(old, indent=2, sort_keys=True) + "\n").encode()
    (model / contract.SCORE_STATS_FILE).write_bytes(blob)
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    manifest["files"][contract.SCORE_STATS_FILE].update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    vae = VAE(model, device="cpu")
    assert vae.sample(2, seed=0).shape == (2, 28, 28)
    with pytest.raises(ModelError, match=r"score_stats.json is version 1 \(noise numpy default_rng.*re-export"):
        vae.score(real_digits[:2])

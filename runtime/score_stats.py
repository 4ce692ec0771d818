"""score_stats.json: what the scores know about normal images, written by export, read by `VAE.score`.

    {"format": "edgevae-score-stats", "version": 2, "noise": "edgevae-noise-1",
     "k": 16, "seed": 0, "images": 10000, "source": "...", "density_components": 120,
     "scores": {"density": {"stats": {"mean": ..., "std": ...}, "percentiles": {"90": ..., ...}}, ...}}

Each score of the registry (scores.py) has the statistics it declares and the percentiles of its
values over the normal images. The NLL behind them was measured with seeded noise, so the file names
the noise scheme (noise.py): statistics from another scheme (version 1, before this release) are
refused with a message to re-export, rather than compared with scores made under this one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .contract import SCORE_STATS_FORMAT, SCORE_STATS_VERSION
from .noise import NOISE_SCHEME
from .scores import SCORES, Measures, Params, Score, get_score


@dataclass(frozen=True)
class ScoreStats:
    """Statistics of normal images for every score, and how they were made."""

    k: int  # importance samples per image
    seed: int  # of the importance noise
    images: int  # normal images measured (held out from the density's fit)
    source: str
    density_components: int  # Gaussians in the mixture (score_density.npz)
    stats: dict[str, Params]  # score name -> the statistics it declares
    percentiles: dict[str, dict[str, float]]  # score name -> percentile ("99") -> value on the normal images
    noise: str = NOISE_SCHEME

    def compute(self, name: str, nll: np.ndarray, complexity: np.ndarray, density: np.ndarray) -> np.ndarray:
        """Score `name` for each image from its NLL, complexity and density NLL (nats)."""
        score = get_score(name)
        return score.compute(Measures(nll, complexity, density), self.stats.get(name, {}))

    def threshold(self, name: str, percentile: str) -> float:
        """The `percentile` (e.g. "99") of score `name` over the normal images."""
        table = self.percentiles.get(name, {})
        if percentile not in table:
            raise ValueError(f"no stored percentile {percentile!r} for score {name!r}; stored: {sorted(table)}")
        return table[percentile]

    def to_json(self) -> bytes:
        d = {"format": SCORE_STATS_FORMAT, "version": SCORE_STATS_VERSION, **asdict(self)}
        del d["stats"], d["percentiles"]
        d["scores"] = {
            n: {"stats": self.stats.get(n, {}), "percentiles": self.percentiles[n]} for n in self.percentiles
        }
        return (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, blob: bytes, name: str = "score_stats.json") -> ScoreStats:
        """The statistics in a file's bytes; ValueError naming the file when they are not this version's."""
        try:
            d = json.loads(blob.decode("utf-8"))
            check_version(d, name)
            scores = d["scores"]
            stats = {s.name: read_stats(s, scores, name) for s in SCORES.values()}
            percentiles = {s: {p: float(v) for p, v in entry["percentiles"].items()} for s, entry in scores.items()}
            return cls(
                int(d["k"]),
                int(d["seed"]),
                int(d["images"]),
                str(d["source"]),
                int(d["density_components"]),
                stats,
                percentiles,
                str(d["noise"]),
            )
        except KeyError as exc:
            raise ValueError(f"{name} is not valid score statistics: no {exc}; re-export the model") from exc
        except (UnicodeDecodeError, TypeError, AttributeError) as exc:
            raise ValueError(f"{name} is not valid score statistics: {exc}") from exc
        except ValueError as exc:
            if str(exc).startswith(name):
                raise
            raise ValueError(f"{name} is not valid score statistics: {exc}") from exc


def check_version(d: Any, name: str) -> None:
    """ValueError unless `d` is score statistics of this format version, made under this noise scheme."""
    if not isinstance(d, dict) or d.get("format") != SCORE_STATS_FORMAT:
        raise ValueError(f"format is not {SCORE_STATS_FORMAT!r}")
    version, noise = d.get("version", 1), d.get("noise")
    if version != SCORE_STATS_VERSION or noise != NOISE_SCHEME:
        raise ValueError(
            f"{name} is version {version} (noise {noise or 'numpy default_rng(seed)'}), made under another noise "
            f"scheme than this runtime's ({NOISE_SCHEME}, version {SCORE_STATS_VERSION}): its statistics do not "
            "match the scores this runtime computes; re-export the model (make export) with this edgevae"
        )


def read_stats(score: Score, scores: dict[str, Any], name: str) -> Params:
    """The statistics `score` declares, as stored for it: each of its declared shape, finite, and
    positive where it is a spread; a score missing from the file (added since) asks for a re-export."""
    if score.name not in scores:
        raise ValueError(f"{name} has no statistics for score {score.name!r} (added since it was made)")
    stored = scores[score.name].get("stats", {})
    out: Params = {}
    for stat in score.stats:
        value = np.asarray(stored[stat.name], np.float64)
        if value.shape != stat.shape or not np.isfinite(value).all() or (stat.positive and (value <= 0).any()):
            raise ValueError(
                f"{name}: {score.name}.{stat.name} must be finite{' and positive' if stat.positive else ''} "
                f"of shape {stat.shape}; got {stored[stat.name]!r}"
            )
        out[stat.name] = float(value) if stat.shape == () else value.tolist()
    return out

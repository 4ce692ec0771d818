"""The committed release: its metrics file and its checkpoints agree with each other."""

from __future__ import annotations

import json

import torch

from edgevae.train.config import PRESETS, TrainConfig

from conftest import RELEASED_CHECKPOINTS


def test_metrics_report_test_elbo_and_importance_weighted_log_likelihood() -> None:
    metrics = json.loads((RELEASED_CHECKPOINTS / "metrics.json").read_text())
    assert metrics["complete"] is True
    assert metrics["iw_samples"] >= 1000 and metrics["test_images"] == 10000
    assert metrics["test_images_binarized"] is True
    assert metrics["test_iw_log_likelihood"] > metrics["test_elbo"]  # the tighter bound
    assert metrics["test_iw_nll"] <= 95.0  # the target for the book-size model
    assert len(metrics["history"]) == metrics["config"]["epochs"]


def test_checkpoints_are_the_ones_the_metrics_describe() -> None:
    metrics = json.loads((RELEASED_CHECKPOINTS / "metrics.json").read_text())
    for kind in ("encoder", "decoder"):
        obj = torch.load(RELEASED_CHECKPOINTS / f"{kind}.pt", weights_only=True)
        assert obj["train_config"] == metrics["config"]
        assert obj["epoch"] == metrics["config"]["epochs"]
    assert TrainConfig.from_dict(metrics["config"]) == PRESETS["default"]

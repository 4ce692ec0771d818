"""Config dataclasses: validation, presets, and the round trip through plain dicts."""

from __future__ import annotations

import pytest

from conftest import need

need("torch")

from edgevae.train.config import PRESETS, TrainConfig, VAEConfig


def test_round_trip_through_dict() -> None:
    config = TrainConfig(model=VAEConfig(hidden=64, latent=8, likelihood="gaussian", beta=0.5), epochs=3)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_book_preset_is_the_textbook_recipe() -> None:
    book = PRESETS["book"]
    assert (book.lr, book.lr_schedule, book.batch_size, book.epochs) == (3e-4, "constant", 32, 30)
    assert (book.model.likelihood, book.binarize) == ("gaussian", False)
    assert (book.model.hidden, book.model.latent) == (200, 20)


def test_default_is_bernoulli() -> None:
    assert PRESETS["default"].model.likelihood == "bernoulli"


def test_default_keeps_the_textbook_size_and_large_fits_the_size_budget() -> None:
    from edgevae.train.model import build_models

    default, large = PRESETS["default"].model, PRESETS["large"].model
    assert (default.hidden, default.latent, default.layers, default.block) == (200, 20, 1, "plain")
    n_params = sum(p.numel() for m in build_models(large) for p in m.parameters())
    assert n_params * 4 < 4.8e6  # fp32 graphs under 5 MB, with room for the ONNX framing


def test_config_saved_before_layers_and_block_existed_loads_as_the_textbook_shape() -> None:
    old = {"beta": 1.0, "hidden": 200, "image_shape": [28, 28], "latent": 20, "likelihood": "bernoulli"}
    assert (VAEConfig.from_dict(old).layers, VAEConfig.from_dict(old).block) == (1, "plain")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"likelihood": "poisson"}, "likelihood must be one of"),
        ({"latent": 0}, "hidden and latent must be >= 1"),
        ({"beta": -1.0}, "beta must be >= 0"),
        ({"image_shape": (28,)}, "image_shape must be two positive ints"),
        ({"block": "dense"}, "block must be one of"),
        ({"layers": 0}, "layers must be >= 1"),
    ],
)
def test_bad_model_config_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VAEConfig(**kwargs)


def test_unknown_fields_are_named() -> None:
    with pytest.raises(ValueError, match="unknown VAEConfig fields \\['depth'\\]"):
        VAEConfig.from_dict({"depth": 3})

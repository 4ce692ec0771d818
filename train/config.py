"""Hyperparameters as dataclasses: `VAEConfig` rebuilds a model, `TrainConfig` reruns training.

Both are saved (as plain dicts) inside every checkpoint, so a checkpoint alone is enough to
rebuild its network and to resume the run that wrote it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class VAEConfig:
    """Shape of the model: input_dim -> hidden (ReLU) -> latent, and back."""

    image_shape: tuple[int, int] = (28, 28)
    hidden: int = 200
    latent: int = 20
    likelihood: str = "bernoulli"  # "bernoulli" (BCE from logits) or "gaussian" (the book: MSE sum)
    beta: float = 1.0  # weight of the KL term (beta-VAE, Higgins et al. 2017); 1.0 is the ELBO

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if len(self.image_shape) != 2 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be two positive ints, got {self.image_shape!r}")
        if self.hidden < 1 or self.latent < 1:
            raise ValueError(f"hidden and latent must be >= 1, got hidden={self.hidden}, latent={self.latent}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")

    @property
    def input_dim(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VAEConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained. Defaults are the project's tuned setting (see README)."""

    model: VAEConfig = field(default_factory=VAEConfig)
    lr: float = 1e-3
    lr_final: float = 1e-4  # cosine decay from lr to lr_final over the run; equal values = constant
    batch_size: int = 100
    epochs: int = 200
    seed: int = 0
    binarize: bool = True  # bernoulli: resample binary pixels each batch (dynamic binarization)
    train_limit: int = 0  # use only the first N training images (0 = all); for quick runs and tests
    test_limit: int = 0  # likewise for the test set
    iw_samples: int = 1000  # k for the importance-weighted log p(x) bound at the end (0 = skip)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", VAEConfig.from_dict(self.model))
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.lr_final > 0):
            raise ValueError(f"lr and lr_final must be > 0, got {self.lr}, {self.lr_final}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["model"] = VAEConfig.from_dict(d["model"])
        return cls(**d)


# Named presets. "book" is the textbook recipe exactly: Adam 3e-4, batch 32, 30 epochs, MSE sum.
PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "book": TrainConfig(
        model=VAEConfig(likelihood="gaussian"),
        lr=3e-4,
        lr_final=3e-4,
        batch_size=32,
        epochs=30,
        binarize=False,
    ),
}

"""Hyperparameters as dataclasses: `VAEConfig` rebuilds a model, `TrainConfig` reruns training.

Both are saved (as JSON in the metadata) inside every checkpoint, so a checkpoint alone is enough to
rebuild its network and to resume the run that wrote it. Each setting is declared here once:
its help text is the field's metadata, and `python -m edgevae.train` generates its flags from
these fields and its defaults from `PRESETS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgevae.runtime.contract import CHANNELS_DEFAULT, LIKELIHOODS

LR_SCHEDULES = ("cosine", "constant")
OBJECTIVES = ("elbo", "iwae")
BLOCKS = ("plain", "gated", "resnet", "conv")
CHANNELS = (1, 3)
PRIORS = ("standard", "vamp")


def setting(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with the help text (and choices) its command-line flag shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


def check_conv_shape(image_shape: tuple[int, ...], stages: int) -> None:
    """ValueError unless H and W halve evenly `stages` times, naming the nearest sizes that do."""
    step = 2**stages
    bad = [s for s in image_shape if s % step or s < step]
    if bad:
        near = sorted({max(step, s - s % step) for s in image_shape} | {s - s % step + step for s in image_shape})
        raise ValueError(
            f"block conv with {stages} stride-2 stages needs H and W divisible by {step}; got image_shape "
            f"{tuple(image_shape)}. Nearest valid sizes: {', '.join(map(str, near))} "
            "(pass --image-shape H W, or change --layers)"
        )


@dataclass(frozen=True)
class VAEConfig:
    """Shape of the model: input_dim -> `layers` x hidden -> latent, and back."""

    image_shape: tuple[int, int] = setting(
        (28, 28),
        "image height and width; the data must match (folder and npy data: resized to it; "
        "without the flag, taken from the first image)",
    )
    channels: int = setting(CHANNELS_DEFAULT, "1 (grey) or 3 (RGB); folder and npy data are converted to it", CHANNELS)
    hidden: int = setting(200, "hidden units of the encoder and the decoder (conv: channels of the first stage)")
    layers: int = setting(1, "hidden layers in the encoder and in the decoder (conv: stride-2 stages)")
    block: str = setting(
        "plain",
        "hidden layer type: plain (Linear, ReLU), gated (Linear * sigmoid(Linear), Dauphin et al. 2017, "
        "as in Tomczak & Welling 2018), resnet (h + ReLU(Linear(h)) after the first layer) or conv "
        "(strided Conv2d down, ConvTranspose2d up; H and W divisible by 2**layers)",
        BLOCKS,
    )
    latent: int = setting(20, "latent dimensions")
    likelihood: str = setting(
        "bernoulli",
        "p(x|z): bernoulli (cross-entropy from logits; binary or near-binary data), gaussian (the book: "
        "MSE summed over pixels, fixed variance 1/2) or discretized_logistic (8-bit images: a logistic "
        "per pixel with a learned location and scale, binned to 1/255; figures in bits per dimension)",
        LIKELIHOODS,
    )
    beta: float = setting(1.0, "weight of the KL term (beta-VAE, Higgins et al. 2017); 1.0 is the ELBO")
    prior: str = setting(
        "standard",
        "p(z): standard (N(0, I)) or vamp (the VampPrior, Tomczak & Welling 2018: a mixture of the encoder's "
        "posteriors at learned pseudo-inputs; export writes it as prior.bin and both runtimes sample from it)",
        PRIORS,
    )
    prior_components: int = setting(500, "pseudo-inputs K of the vamp prior (ignored by the standard prior)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if len(self.image_shape) != 2 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be two positive ints, got {self.image_shape!r}")
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        object.__setattr__(self, "channels", int(self.channels))
        if self.channels not in CHANNELS:
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        if self.block == "conv":
            check_conv_shape(self.image_shape, self.layers)
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.hidden < 1 or self.latent < 1:
            raise ValueError(f"hidden and latent must be >= 1, got hidden={self.hidden}, latent={self.latent}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        if self.prior_components < 1:
            raise ValueError(f"prior_components must be >= 1, got {self.prior_components}")

    @property
    def input_dim(self) -> int:
        """Values per image: H * W * C, flattened channels last (runtime/contract.py)."""
        return self.image_shape[0] * self.image_shape[1] * self.channels

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        if self.channels == CHANNELS_DEFAULT:
            # left out at its default: grey configs stay byte-identical to those written before colour
            # existed (the shipped graphs' metadata and manifests); from_dict fills it back in
            del d["channels"]
        if d["prior"] == "standard":  # configs written before the setting existed stay byte-identical
            del d["prior"], d["prior_components"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained. Defaults are the project's tuned setting (see docs/training.md)."""

    model: VAEConfig = field(default_factory=VAEConfig)
    lr: float = setting(1e-3, "Adam learning rate (the first epoch's, with the cosine schedule)")
    lr_schedule: str = setting(
        "cosine",
        "cosine: decay from lr to lr_final over the epochs; constant: lr throughout (lr_final unused)",
        LR_SCHEDULES,
    )
    lr_final: float = setting(1e-4, "the last epoch's learning rate under the cosine schedule")
    batch_size: int = setting(100, "images per optimizer step")
    epochs: int = setting(200, "passes over the training images")
    seed: int = setting(0, "seed of the initial weights, the shuffling and the noise")
    binarize: bool = setting(True, "bernoulli: resample binary pixels every batch (dynamic binarization)")
    train_limit: int = setting(0, "use only the first N training images (0 = all); for quick runs and tests")
    test_limit: int = setting(0, "use only the first N test images (0 = all)")
    test_fraction: float = setting(
        0.1, "folder and npy data: the share of images held out as the test split, chosen by the seed"
    )
    resize: bool = setting(
        False,
        "folder data: resize every image to --image-shape (on when --image-shape or the preset gives the "
        "size; when it comes from the first image, images of another size are an error)",
    )
    iw_samples: int = setting(1000, "k of the importance-weighted log p(x) measured at the end (0 = skip)")
    objective: str = setting(
        "elbo",
        "what training maximizes: elbo, or iwae, the importance-weighted bound with "
        "k samples per image (Burda et al. 2015)",
        OBJECTIVES,
    )
    k: int = setting(1, "importance samples per image for --objective iwae (1 for elbo)")
    warmup_epochs: int = setting(
        0,
        "KL warm-up: the KL weight rises linearly to beta, reaching it at this epoch "
        "(Sonderby et al. 2016); 0 = beta from the start",
    )
    init_from: str = setting(
        "",
        "fine-tuning: start from the final encoder and decoder of the run in this folder (same model "
        "config) with a fresh optimizer and schedule; empty = fresh weights from the seed",
    )

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", VAEConfig.from_dict(self.model))
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.k < 1 or (self.objective == "elbo" and self.k != 1):
            raise ValueError(f"k must be >= 1 for objective iwae and 1 for elbo; got k={self.k} with {self.objective}")
        for name in ("train_limit", "test_limit", "iw_samples", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {self.test_fraction}")
        if not (self.lr > 0 and self.lr_final > 0):
            raise ValueError(f"lr and lr_final must be > 0, got {self.lr}, {self.lr_final}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        for name, default in (("test_fraction", 0.1), ("resize", False), ("init_from", "")):
            if d[name] == default:
                del d[name]  # at its default: saved train configs stay as they were before it existed
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["model"] = VAEConfig.from_dict(d["model"])
        if "lr_schedule" not in d:  # saved before the field existed: equal rates meant constant
            d["lr_schedule"] = "constant" if d.get("lr") == d.get("lr_final") else "cosine"
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**d)


# Named presets. "book" is the textbook recipe exactly: Adam 3e-4, batch 32, 30 epochs, MSE sum.
# "default" keeps the textbook's size (784-200-20) and trains it as an IWAE (k=5, Burda et al. 2015);
# "large" is the gated MLP of Tomczak & Welling 2018 (2 x 300 units, 40 latents) with KL warm-up,
# sized for under 5 MB of fp32 graphs and about an hour on a 2-core CPU. docs/quality.md.
LARGE_NETWORK = VAEConfig(hidden=300, layers=2, block="gated", latent=40)
LARGE_VAMP = dataclasses.replace(LARGE_NETWORK, prior="vamp")  # with the VampPrior (500 pseudo-inputs)


def iwae_stage(model: VAEConfig, k: int, lr: float, epochs: int) -> TrainConfig:
    """A fine-tuning stage: the IWAE bound with k samples, Adam lr cosine-decayed to 1e-5, no warm-up."""
    return TrainConfig(model=model, objective="iwae", k=k, lr=lr, lr_final=1e-5, epochs=epochs)


PRESETS: dict[str, TrainConfig] = {
    "default": TrainConfig(objective="iwae", k=5, epochs=250),
    "large": TrainConfig(model=LARGE_NETWORK, epochs=240, warmup_epochs=10),
    # The shipped large model's later stages, each fine-tuning the one before (--init-from its folder;
    # `make train MODEL=large` runs all three): the IWAE bound, first with k=5, then k=20 (Burda et al.
    # 2015, section 5.2: a VAE trained further as an IWAE gains log-likelihood).
    "large-iwae5": iwae_stage(LARGE_NETWORK, k=5, lr=2e-4, epochs=60),
    "large-iwae20": iwae_stage(LARGE_NETWORK, k=20, lr=1e-4, epochs=40),
    # The large preset with a learned prior, the VampPrior of Tomczak & Welling 2018 (500 pseudo-inputs):
    # -3.0 nats against the large preset at 30 epochs (docs/quality.md). The shipped large model is this,
    # then large-iwae5's stage with the prior.
    "large-vamp": TrainConfig(model=LARGE_VAMP, epochs=240, warmup_epochs=10),
    "large-vamp-iwae5": iwae_stage(LARGE_VAMP, k=5, lr=2e-4, epochs=60),
    # The shipped default model's second stage: the k=5 run above, fine-tuned 30 epochs more with k=20.
    "default-iwae20": iwae_stage(VAEConfig(), k=20, lr=2e-4, epochs=30),
    "book": TrainConfig(
        model=VAEConfig(likelihood="gaussian"),
        lr=3e-4,
        lr_schedule="constant",
        batch_size=32,
        epochs=30,
        binarize=False,
    ),
    # Colour photos, 32x32 RGB: a convolutional VAE (16-32-64-64 channels, three stride-2 stages, 64
    # latents, 0.41M parameters) with the discretized logistic, the likelihood for 8-bit pixels, so its
    # figures are bits per dimension as in the literature; bernoulli would treat each level as a coin's
    # probability and gaussian would give a density, not a probability. Sized for about a minute per
    # epoch of 12,000 patches on 2 CPU cores (docs/own-images.md).
    "conv32": TrainConfig(
        model=VAEConfig(
            image_shape=(32, 32),
            channels=3,
            block="conv",
            hidden=16,
            layers=3,
            latent=64,
            likelihood="discretized_logistic",
        ),
        lr=2e-3,
        lr_final=1e-4,
        batch_size=64,
        epochs=20,
        binarize=False,
        iw_samples=100,
        warmup_epochs=2,
    ),
    # conv32's network on MNIST, for the quality table beside the MLPs: 28x28 grey halves evenly twice, so
    # two stride-2 stages (16-32-64 channels) instead of three, bernoulli like the other MNIST models, and
    # the large preset's training recipe (ELBO, warm-up 10, Adam 1e-3 -> 1e-4, batch 100), 30 epochs.
    "conv28": TrainConfig(
        model=VAEConfig(block="conv", hidden=16, layers=2, latent=64),
        epochs=30,
        warmup_epochs=10,
    ),
}

# Models trained in stages, each stage fine-tuning the one before (--init-from); any other preset is one stage.
STAGES: dict[str, tuple[str, ...]] = {
    "default": ("default", "default-iwae20"),
    "large": ("large-vamp", "large-vamp-iwae5"),
}


def stages(preset: str) -> tuple[str, ...]:
    """The presets that train `preset`'s released model, in order (`make train` runs each)."""
    return STAGES.get(preset, (preset,))

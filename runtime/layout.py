"""Image layouts: which array shapes a model takes and gives, grey or colour (numpy only).

A model's graphs see flat rows of H * W * C values in channels-last order (runtime/contract.py).
Callers hand in and get back arrays:
  grey   (C = 1): (N, H, W) out; in (N, H*W), (N, H, W), (N, 1, H, W), or one (H*W,) / (H, W) image
  colour (C > 1): (N, H, W, C) out; in (N, H*W*C), (N, H, W, C), or one (H*W*C,) / (H, W, C) image
`ImageLayout.flatten` turns an accepted array into (N, pixels) rows (a view, no copy) or raises a
ValueError that lists the accepted shapes and what arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .contract import CHANNELS_DEFAULT


def channels_of(config: dict[str, Any]) -> int:
    """The config's channel count (1 when absent: models exported before colour existed)."""
    return int(config.get("channels", CHANNELS_DEFAULT))


@dataclass(frozen=True)
class ImageLayout:
    """Height, width and channels of a model's images."""

    height: int
    width: int
    channels: int = CHANNELS_DEFAULT

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ImageLayout:
        h, w = config["image_shape"]
        return cls(int(h), int(w), channels_of(config))

    @property
    def pixels(self) -> int:
        """Values per image: H * W * C (the contract's PIXELS axis)."""
        return self.height * self.width * self.channels

    @property
    def shape(self) -> tuple[int, ...]:
        """One image as the runtime returns it: (H, W) grey, (H, W, C) colour."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    def accepted(self) -> tuple[list[tuple[int | str, ...]], list[tuple[int, ...]]]:
        """(batch shapes with 'N', single-image shapes) this layout takes."""
        h, w, c, d = self.height, self.width, self.channels, self.pixels
        if c == 1:
            return [("N", d), ("N", h, w), ("N", 1, h, w)], [(d,), (h, w)]
        return [("N", d), ("N", h, w, c)], [(d,), (h, w, c)]

    def flatten(self, arr: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
        """(rows (N, pixels), was-one-image) for an accepted shape; ValueError naming them otherwise."""
        n, single = self.count(arr.shape, name)
        return arr.reshape(n, self.pixels), single

    def count(self, shape: tuple[int, ...], name: str) -> tuple[int, bool]:
        """(images, is-one-image) in an array of an accepted `shape`; ValueError naming them otherwise."""
        shape = tuple(int(s) for s in shape)
        batches, singles = self.accepted()
        if shape in singles:
            return 1, True
        for accepted in batches:
            if len(shape) == len(accepted) and shape[1:] == accepted[1:]:
                return shape[0], False
        shapes = [str(s).replace("'", "").replace(",)", ")") if len(s) > 1 else str(s) for s in batches + singles]
        kind = "" if self.channels == 1 else f" ({self.channels} channels, channels last)"
        listed = ", ".join(shapes[:-1]) + " or " + shapes[-1]
        raise ValueError(f"{name}: expected images shaped {listed}{kind}; got shape {shape}")

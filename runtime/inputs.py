"""Input checks of the runtime: every array is checked here before onnxruntime sees it.

onnxruntime silently broadcasts an eps batch of 1, passes NaN through and misreads big-endian
arrays, so images, latents and noise are validated first (shape, dtype, finiteness, range) and
converted exactly to native float32, chunk by chunk. Each failure is a ValueError saying what was
expected and what arrived.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import contract
from .layout import ImageLayout


def check_images(x: Any, layout: ImageLayout, chunk: int, name: str = contract.X) -> tuple[np.ndarray, bool]:
    """Validated images as ((N, pixels) array, was-a-single-image).

    Accepts float arrays in [0, 1] or integer pixel levels 0..255 (uint8 usually), in the shapes of
    `image_rows`. The array keeps its dtype (converted to float32 chunk by chunk by `as_float_images`);
    its values are checked here, before any run.
    """
    arr = as_numeric_array(x, name, "images")
    n, single = image_rows(layout, arr.shape, name)
    arr = arr.reshape(n, layout.pixels)
    check_values(arr, name, chunk)
    return arr, single


def image_rows(layout: ImageLayout, shape: tuple[int, ...], name: str = contract.X) -> tuple[int, bool]:
    """(images, is-one-image) for an array of `shape`: (N, pixels), (N, H, W), (N, 1, H, W) or (N, H, W, C),
    or one image without the batch axis (runtime/layout.py); any other shape, or no image, is a
    ValueError saying what was expected."""
    n, single = layout.count(shape, name)
    if single:
        return 1, True
    if shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image; got an empty batch of shape {tuple(shape)}")
    return int(shape[0]), False


def check_latent(
    z: Any, name: str, latent: int, batch: int | None = None, limit: float | None = None
) -> tuple[np.ndarray, bool]:
    """Validated latents or noise: (N, latent) or (latent,), finite, float; batch must match. With
    `limit`, values beyond +-limit are clipped to it (see `finite_within`)."""
    if type(z) is np.ndarray and z.dtype == np.float32 and z.flags.c_contiguous:
        arr = z  # the common case, kept cheap: no conversion
    else:
        arr = as_numeric_array(z, name, "latent vectors")
    if arr.shape == (latent,):
        arr, is_single = arr.reshape(1, latent), True
    elif arr.ndim == 2 and arr.shape[1] == latent:
        is_single = False
    else:
        raise ValueError(
            f"{name}: expected shape (N, {latent}) or ({latent},) for this model's "
            f"latent size {latent}; got shape {arr.shape}"
        )
    if len(arr) == 0:
        raise ValueError(f"{name}: expected at least one row; got an empty batch of shape {arr.shape}")
    if batch is not None and len(arr) != batch:
        raise ValueError(
            f"{name}: batch of {len(arr)} does not match x's batch of {batch} "
            "(no broadcasting: give one eps row per image)"
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if limit is not None and finite_within(out, limit):
        return out, is_single  # decode's common case: one pass decides both
    if not all_finite(out):
        bad = int(np.argwhere(~np.isfinite(out))[0][0])
        raise ValueError(f"{name}: expected finite values; got NaN or Inf (first in row {bad})")
    if limit is not None:
        out = np.clip(out, -limit, limit)
    return out, is_single


def finite_within(arr: np.ndarray, limit: float) -> bool:
    """True when every value is finite and the sum of squares is at most limit**2 (so every |value| is
    within limit, up to float32 rounding for large arrays); NaN and Inf make the sum NaN or Inf. False
    says nothing for sure: the caller then checks exactly."""
    flat = arr.reshape(-1)
    if flat.size <= 256:  # few values: squares in float64, which float32 values cannot overflow
        wide = flat.astype(np.float64)
        return bool(np.dot(wide, wide) <= limit * limit)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow float32: the exact path decides
        return bool(np.dot(flat, flat) <= limit * limit)


def check_noise(eps: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """Importance-sampling noise: exactly `shape` (k, N, latent), finite, as float32."""
    arr = as_numeric_array(eps, contract.EPS, "noise")
    if arr.shape != shape:
        raise ValueError(f"{contract.EPS}: expected shape (k, N, latent) = {shape}; got {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{contract.EPS}: expected finite values; got NaN or Inf")
    return out


def all_finite(arr: np.ndarray) -> bool:
    """True when no value is NaN or Inf: float32 values summed in float64 cannot overflow, so the sum
    is finite exactly when every value is (for a few values, Python's sum of a list is cheaper)."""
    if arr.size <= 256:
        return math.isfinite(sum(arr.ravel().tolist()))
    return math.isfinite(float(arr.sum(dtype=np.float64)))


def as_numeric_array(x: Any, name: str, what: str) -> np.ndarray:
    """np.asarray with a clear error for non-numeric input (strings, objects, bools, complex) and
    for masked arrays with masked values (their hidden data would be used silently)."""
    if isinstance(x, np.ma.MaskedArray):
        if np.ma.getmaskarray(x).any():
            raise ValueError(
                f"{name}: got a masked array with {int(np.ma.getmaskarray(x).sum())} masked values; "
                "fill them first (x.filled(0)) or pass a plain array"
            )
        x = np.ma.getdata(x)
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise ValueError(f"{name}: expected a numeric array of {what}; could not convert: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a float or integer array of {what}; got dtype {arr.dtype}")
    return arr


def check_values(arr: np.ndarray, name: str, chunk: int) -> None:
    """Floats must be finite and in [0, 1]; integers in 0..255. Checked chunk by chunk."""
    for lo in range(0, len(arr), chunk):
        part = arr[lo : lo + chunk]
        if arr.dtype.kind == "f":
            finite = np.isfinite(part)
            if not finite.all():
                bad = lo + int(np.argwhere(~finite)[0][0])
                raise ValueError(
                    f"{name}: expected finite pixel values in [0, 1]; got NaN or Inf (first in image {bad})"
                )
            lo_v, hi_v, expect = float(part.min()), float(part.max()), "[0, 1] for float input"
            ok = lo_v >= 0.0 and hi_v <= 1.0
        else:
            lo_v, hi_v, expect = int(part.min()), int(part.max()), "0..255 for integer input"
            ok = lo_v >= 0 and hi_v <= 255
        if not ok:
            raise ValueError(
                f"{name}: expected pixel values in {expect}; got values from {lo_v} to {hi_v} "
                f"(in images {lo}..{lo + len(part) - 1})"
            )


def as_float_images(part: np.ndarray) -> np.ndarray:
    """A checked chunk -> native-endian, C-contiguous float32 in [0, 1] (integers are /255)."""
    if part.dtype.kind == "f":
        return np.ascontiguousarray(part, dtype=np.float32)
    return np.ascontiguousarray(part, dtype=np.float32) / np.float32(255.0)

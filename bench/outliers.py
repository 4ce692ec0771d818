"""Sets of unusual inputs, to choose and check the runtime's unusual-input score against digits.

    python bench/ood.py   # the AUROC table in docs/likelihood.md, from these sets (tests/test_score.py uses them too)

Each maker returns (n, 784) float32 images in [0, 1] from a seeded numpy generator, so every
figure is repeatable. `digits` are the MNIST images the sets are compared with (test split).
Letters need Pillow (with FreeType, for its built-in scalable font).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SIDE = 28


def make_noise(n: int, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise in [0, 1] per pixel."""
    return rng.random((n, SIDE * SIDE), dtype=np.float32)


def make_blank(n: int, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All-black images (a quarter of them) and constant-grey images of random level."""
    levels = rng.uniform(0.0, 1.0, size=(n, 1)).astype(np.float32)
    levels[: max(1, n // 4)] = 0.0
    return np.repeat(levels, SIDE * SIDE, axis=1)


def make_inverted(n: int, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Digits with black and white swapped (1 - x)."""
    return 1.0 - pick(digits, n, rng)


def make_shifted(n: int, digits: np.ndarray, rng: np.random.Generator, shift: int = 6) -> np.ndarray:
    """Digits moved `shift` pixels off-centre in a random one of the 8 directions (zeros fill in)."""
    out = pick(digits, n, rng).reshape(n, SIDE, SIDE)
    moves = [(dy, dx) for dy in (-shift, 0, shift) for dx in (-shift, 0, shift) if (dy, dx) != (0, 0)]
    shifted = np.zeros_like(out)
    for i, j in enumerate(rng.integers(0, len(moves), size=n)):
        dy, dx = moves[j]
        src = out[i, max(0, -dy) : SIDE - max(0, dy), max(0, -dx) : SIDE - max(0, dx)]
        shifted[i, max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return shifted.reshape(n, -1)


def make_salt_pepper(n: int, digits: np.ndarray, rng: np.random.Generator, fraction: float = 0.3) -> np.ndarray:
    """Digits with `fraction` of their pixels replaced by black or white at random."""
    out = pick(digits, n, rng).copy()
    hit = rng.random(out.shape) < fraction
    out[hit] = rng.integers(0, 2, size=int(hit.sum())).astype(np.float32)
    return out


LETTERS = "ACEFHJKLMNPRTUVWXY"  # capitals whose glyphs are not also digit shapes (not B, D, G, I, O, Q, S, Z)


def make_letters(n: int, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Capital letters drawn with Pillow's built-in font, prepared like MNIST: a thick white stroke,
    the glyph scaled into a 20x20 box and centred by its centre of mass in 28x28; random size,
    stroke width and a small rotation per image."""
    from PIL import Image, ImageDraw, ImageFont

    out = np.empty((n, SIDE * SIDE), np.float32)
    for i in range(n):
        letter = LETTERS[int(rng.integers(0, len(LETTERS)))]
        size = int(rng.integers(48, 64))
        font = ImageFont.load_default(size=size)
        canvas = Image.new("L", (2 * size, 2 * size), 0)
        ImageDraw.Draw(canvas).text(
            (size // 2, size // 4), letter, fill=255, font=font, stroke_width=int(rng.integers(0, 3)), stroke_fill=255
        )
        canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
        glyph = canvas.crop(canvas.getbbox())
        scale = 20.0 / max(glyph.size)
        glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS)
        out[i] = centre_by_mass(np.asarray(glyph, np.float32) / 255.0).reshape(-1)
    return out


def centre_by_mass(glyph: np.ndarray) -> np.ndarray:
    """Paste a glyph (at most 20x20) into 28x28 with its centre of mass at the centre, as MNIST does."""
    h, w = glyph.shape
    total = glyph.sum() or 1.0
    cy = float((glyph.sum(axis=1) * np.arange(h)).sum() / total)
    cx = float((glyph.sum(axis=0) * np.arange(w)).sum() / total)
    top = int(np.clip(round(SIDE / 2 - 0.5 - cy), 0, SIDE - h))
    left = int(np.clip(round(SIDE / 2 - 0.5 - cx), 0, SIDE - w))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top : top + h, left : left + w] = glyph
    return out


def pick(digits: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n digits (float32 in [0, 1], (n, 784)) drawn without replacement when there are enough."""
    idx = rng.choice(len(digits), size=n, replace=n > len(digits))
    arr = digits[idx].reshape(n, -1)
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


SETS: dict[str, Callable[..., np.ndarray]] = {
    "uniform noise": make_noise,
    "black / constant grey": make_blank,
    "inverted digits": make_inverted,
    "shifted digits (6 px)": make_shifted,
    "letters (Pillow)": make_letters,
    "salt & pepper (30%)": make_salt_pepper,
}


def make_sets(digits: np.ndarray, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Every set above, n images each, from one seed."""
    rng = np.random.default_rng(seed)
    return {name: maker(n, digits, rng) for name, maker in SETS.items()}


def auroc(normal: np.ndarray, unusual: np.ndarray) -> float:
    """Area under the ROC curve for 'higher score = more unusual' (Mann-Whitney U, ties count 1/2)."""
    normal = np.asarray(normal, np.float64)
    unusual = np.asarray(unusual, np.float64)
    both = np.concatenate([normal, unusual])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    mid_rank = np.cumsum(counts) - (counts - 1) / 2.0  # average rank of each distinct value
    u = mid_rank[inverse[len(normal) :]].sum() - len(unusual) * (len(unusual) + 1) / 2.0
    return float(u / (len(normal) * len(unusual)))

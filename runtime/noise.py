"""The one noise scheme: every seeded draw of the runtime, keyed by (seed, purpose, stream, row).

A draw is `width` standard normal float32 values per row. Row `row` of stream `stream` for
`purpose` under `seed` is always the same values, however many rows a call asks for, in which
chunks, on which thread or in which process; so `sample(n, seed)[i]` does not depend on n, and a
Ray worker drawing rows 1000..1999 gets the rows that one process drawing 0..9999 gets.

Definition (NOISE_SCHEME), reproducible from this text alone:
1. The bits are Philox4x64-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"),
   as numpy.random.Philox computes it: key = the seed, an int in [0, 2**128) (low 64 bits first);
   a row of `width` values takes B = ceil(width / 4) blocks, and block b of it has the 256-bit counter
       purpose * 2**192 + stream * 2**64 + row * B + b.
   Each block gives four 64-bit words r0, r1, r2, r3.
2. Each pair of words (r0, r1), (r2, r3) gives two values by the Box-Muller transform (Box & Muller
   1958, "A note on the generation of random normal deviates"):
       u = ((r_first >> 11) + 1) / 2**53                in (0, 1], float64
       radius = float32(sqrt(-2 ln u))                   in float64, rounded to float32
       angle = float32(r_second >> 40) * float32(2 pi / 2**24)   in float32
       values: radius * cos(angle), radius * sin(angle)  in float32
   The row is the first `width` of its 4 B values, in order.
3. COMPONENT draws are one uniform per row, for a learned prior's mixture component: the row's
   block (B = 1) gives u = (r0 >> 11) / 2**53 in [0, 1), float64 (stream 0, row = the image's index).
Purposes (the counter's top word): LATENT rows are z ~ N(0, I) and the reparameterization noise
(sample, sample_latent, encode_z, reconstruct(stochastic=True), elbo; stream 0, row = the image's
index in the call); IMPORTANCE rows are importance samples for log p(x) (log_likelihood: stream =
the image's index, row = the sample; score: stream 0 for every image, so an image's score depends
on the image alone).

Integers are exact everywhere; log, sqrt, cos and sin come from numpy's math, so another machine
may differ in the last bit of a value (tests compare within a tolerance). Without a seed, a fresh
128-bit seed from the operating system is drawn per call.
"""

from __future__ import annotations

import math
import secrets
import threading

import numpy as np

from .limits import check_seed

NOISE_SCHEME = "edgevae-noise-1"  # recorded beside every figure computed from seeded noise
LATENT, IMPORTANCE, COMPONENT = 1, 2, 3  # purposes
WORD = 2**64 - 1
SHIFT_UNIFORM, SHIFT_ANGLE = np.uint64(11), np.uint64(40)
ANGLE_STEP = np.float32(2 * math.pi / 2**24)


def seed_or_fresh(seed: object) -> int:
    """A checked seed (an int in [0, 2**128); limits.check_seed), or a fresh random one for None."""
    return secrets.randbits(128) if seed is None else check_seed(seed)


def box_muller(words: np.ndarray) -> np.ndarray:
    """Standard normal float32 values from an even number of raw 64-bit words, two per pair (step 2 above)."""
    pairs = words.reshape(-1, 2)
    radius = ((pairs[:, 0] >> SHIFT_UNIFORM) + np.uint64(1)).astype(np.float64)
    radius *= 2.0**-53
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = (pairs[:, 1] >> SHIFT_ANGLE).astype(np.float32)
    angle *= ANGLE_STEP
    out = np.empty((len(pairs), 2), np.float32)
    np.cos(angle, out=out[:, 0])
    np.sin(angle, out=out[:, 1])
    out *= radius.astype(np.float32)[:, None]
    return out.reshape(-1)


class Noise:
    """The scheme's draws. One Philox generator is re-keyed in place per call (about 2 us, where
    building a new one costs about 12 us). Thread-safe: a lock per call."""

    def __init__(self) -> None:
        self._bits = np.random.Philox(key=0)
        self._state = self._bits.state
        self._lock = threading.Lock()

    def words(self, seed: int, counter: int, blocks: int) -> np.ndarray:
        """4 * blocks raw 64-bit words: Philox4x64-10 under key `seed` at counters counter, counter + 1, ..."""
        before = (counter - 1) % 2**256  # numpy's Philox steps its counter before each block
        with self._lock:
            state = self._state
            key, ctr = state["state"]["key"], state["state"]["counter"]
            key[0], key[1] = seed & WORD, seed >> 64
            ctr[0], ctr[1], ctr[2], ctr[3] = (before >> s & WORD for s in (0, 64, 128, 192))
            state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0  # nothing left over
            self._bits.state = state
            return self._bits.random_raw(4 * blocks)

    def rows(self, seed: object, purpose: int, stream: int, first: int, count: int, width: int) -> np.ndarray:
        """Rows first .. first + count - 1 of a stream: (count, width) float32. seed=None: a fresh seed."""
        blocks = -(-width // 4)
        counter = purpose << 192 | stream << 64 | first * blocks
        values = box_muller(self.words(seed_or_fresh(seed), counter, count * blocks))
        return values.reshape(count, 4 * blocks)[:, :width]

    def latent(self, seed: object, count: int, width: int, first: int = 0) -> np.ndarray:
        """LATENT rows: z ~ N(0, I) for images first .. first + count - 1 of a call."""
        return self.rows(seed, LATENT, 0, first, count, width)

    def component(self, seed: int, count: int, first: int = 0) -> np.ndarray:
        """COMPONENT draws: one uniform in [0, 1) (float64) for each of images first .. first + count - 1."""
        words = self.words(seed_or_fresh(seed), COMPONENT << 192 | first, count).reshape(count, 4)
        return (words[:, 0] >> SHIFT_UNIFORM).astype(np.float64) / 2.0**53

    def importance(self, seed: int, image: int, k: int, width: int) -> np.ndarray:
        """IMPORTANCE noise of one image: its k samples, (k, width)."""
        return self.rows(seed, IMPORTANCE, image, 0, k, width)

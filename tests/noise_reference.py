"""The runtime's noise scheme written out again from its definition (runtime/noise.py's docstring),
one block and one value at a time in plain Python: what the tests compare the runtime's draws with."""

from __future__ import annotations

import math

import numpy as np

MASK = 2**64 - 1
M0, M1 = 0xD2E7470EE14C6C93, 0xCA5A826395121157  # Philox4x64 multipliers (Salmon et al. 2011, table 2)
W0, W1 = 0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B  # its key increments (golden ratio, sqrt(3) - 1)


def philox4x64(counter: int, key: int, rounds: int = 10) -> list[int]:
    """The four 64-bit words of Philox4x64-R for a 256-bit counter and a 128-bit key (low words first)."""
    c = [counter >> (64 * i) & MASK for i in range(4)]
    k0, k1 = key & MASK, key >> 64 & MASK
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [(p1 >> 64) ^ c[1] ^ k0, p1 & MASK, (p0 >> 64) ^ c[3] ^ k1, p0 & MASK]
    return c


def reference_rows(seed: int, purpose: int, stream: int, first: int, count: int, width: int) -> np.ndarray:
    """Rows first .. first + count - 1 of a stream, (count, width) float32, by the definition."""
    blocks = -(-width // 4)
    rows = []
    for row in range(first, first + count):
        values: list[np.float32] = []
        for b in range(blocks):
            words = philox4x64((purpose << 192) + (stream << 64) + row * blocks + b, seed)
            for first_word, second_word in ((words[0], words[1]), (words[2], words[3])):
                u = ((first_word >> 11) + 1) / 2**53
                radius = np.float32(math.sqrt(-2.0 * math.log(u)))
                angle = np.float32(second_word >> 40) * np.float32(2 * math.pi / 2**24)
                values += [radius * np.float32(math.cos(angle)), radius * np.float32(math.sin(angle))]
        rows.append(values[:width])
    return np.array(rows, np.float32).reshape(count, width)

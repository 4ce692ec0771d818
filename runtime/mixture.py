"""The density score's Gaussian mixture over normal images' score features (score_density.npz).

Export fits it (export/calibrate.py: EM, one mixture per digit class when labels are known, as in
the class-conditional Gaussians of Lee et al. 2018, "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks"); the runtime reads it here and gives each
image's -log density in nats: -log sum_m w_m N(f; m_m, C_m), with the precision factors L_m
(L L^T = C_m^-1) stored instead of the covariances.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .arrays import read_npz_bytes
from .likelihood import LOG_2PI, logsumexp
from .limits import MAX_SIDE_FILE_BYTES

DENSITY_ROWS = 256  # rows per block of the density NLL: (256, components, features) floats at a time
DENSITY_KEYS = ("log_weights", "means", "prec_chol")


@dataclass(frozen=True)
class ScoreDensity:
    """A Gaussian mixture over score features (`density_features`): log weights (M,), means (M, d) and
    triangular precision factors (M, d, d), L L^T = inverse covariance (export writes it: score_density.npz)."""

    log_weights: np.ndarray
    means: np.ndarray
    prec_chol: np.ndarray

    def log_components(self, f: np.ndarray) -> np.ndarray:
        """(N, M): log w_m + log N(f_n; m_m, C_m) = log w + log det L - |(f - m) L|^2 / 2 - d/2 log(2 pi).

        (f - m_m) L_m = f L_m - m_m L_m for every component at once: one (N, d) x (d, M d) product."""
        stack, shift, const = self._stacked
        m, d = self.means.shape
        y = np.asarray(f, np.float64) @ stack
        y -= shift
        np.square(y, out=y)
        return const[None] - 0.5 * np.einsum("nmd->nm", y.reshape(len(y), m, d))

    @cached_property
    def _stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[L_1 .. L_M] (d, M d), [m_1 L_1 .. m_M L_M] (M d,) and log w + log det L - d/2 log(2 pi) (M,)."""
        chol, means = np.asarray(self.prec_chol, np.float64), np.asarray(self.means, np.float64)
        m, d = means.shape
        stack = np.ascontiguousarray(np.transpose(chol, (1, 0, 2)).reshape(d, m * d))
        shift = np.einsum("mi,mij->mj", means, chol).reshape(m * d)
        const = self.log_weights + np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1) - 0.5 * d * LOG_2PI
        return stack, shift, const

    def nll(self, f: np.ndarray) -> np.ndarray:
        """-log p(f) per row of f (N, d) under the mixture, in nats (float64), in blocks of DENSITY_ROWS."""
        out = np.empty(len(f), np.float64)
        for lo in range(0, len(f), DENSITY_ROWS):
            out[lo : lo + DENSITY_ROWS] = -logsumexp(self.log_components(f[lo : lo + DENSITY_ROWS]), axis=1)
        return out

    @classmethod
    def from_npz(cls, blob: bytes, features: int, name: str = "score_density.npz") -> ScoreDensity:
        """The mixture in an .npz file's bytes; ValueError naming the file when it is not one over `features`."""
        stored = read_npz_bytes(blob, name, MAX_SIDE_FILE_BYTES)  # headers checked before any allocation
        try:
            arrays = {key: np.asarray(stored[key], np.float64) for key in DENSITY_KEYS}
        except KeyError as exc:
            raise ValueError(f"{name} is not a score density: no array {exc}") from exc
        m = len(arrays["log_weights"])
        want = {"log_weights": (m,), "means": (m, features), "prec_chol": (m, features, features)}
        for key, shape in want.items():
            if arrays[key].shape != shape:
                raise ValueError(
                    f"{name}: expected {key} shaped {shape} for {features} features; got {arrays[key].shape}"
                )
        diag = np.diagonal(arrays["prec_chol"], axis1=1, axis2=2)
        if m == 0 or not all(np.isfinite(a).all() for a in arrays.values()) or (diag <= 0).any():
            raise ValueError(f"{name}: expected a non-empty mixture of finite values with positive precision diagonals")
        return cls(arrays["log_weights"], arrays["means"], arrays["prec_chol"])

    def to_npz(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {key: np.asarray(getattr(self, key), np.float32) for key in DENSITY_KEYS}
        np.savez(buf, **arrays)
        return buf.getvalue()

"""The operations of a `VAE`: sample, encode, decode, reconstruct and interpolate.

    digits = vae.sample(16, seed=0)          # (16, 28, 28) float32 in [0, 1]
    mu, logvar = vae.encode(digits)          # q(z|x)
    path = vae.interpolate(digits[0], digits[1], steps=10)

Seeded draws come from the one noise scheme (noise.py, purpose LATENT): row i of
`sample_latent(n, seed)` is the same for every n, so `sample(n, seed)[i]` is too. Every input is
checked (inputs.py) before a graph runs, and batches run in chunks of `chunk_size` rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import ArrayLike, NDArray

from . import contract
from .bound import as_ortvalue, run_bound
from .core import Core
from .inputs import as_float_images, check_latent
from .limits import check_amount, check_int
from .noise import seed_or_fresh

FloatArray = NDArray[np.float32]
# Latents are clipped to +-Z_LIMIT before decoding: float32 GEMMs overflow to inf - inf = NaN for latents
# near 3e38, and 1e4 prior standard deviations hold no probability mass.
Z_LIMIT = 1e4


class Operations(Core):
    """sample, encode, decode, reconstruct, interpolate (see `VAE`)."""

    def sample_latent(self, n: int, seed: int | None = None) -> FloatArray:
        """n draws of z ~ p(z), (n, latent) float32: rows 0..n-1 of the noise scheme's LATENT stream
        under `seed` (noise.py; row i is the same for every n); seed=None draws a fresh seed. With a
        learned prior (prior.py), row i's component comes from row i of the COMPONENT stream and z is
        that component's mean plus its standard deviation times the LATENT row."""
        n = check_int(n, "n")
        check_amount("n", n, 4 * self.latent, self.memory_budget, " latents")
        return self.latent_rows(seed_or_fresh(seed), n)

    def latent_rows(self, seed: int, count: int, first: int = 0) -> FloatArray:
        """Draws first .. first + count - 1 of z ~ p(z) under `seed`: the LATENT rows, through the learned
        prior when the model has one (`sample_latent` is rows 0..n-1; Ray Data's bulk sampling any run)."""
        eps = self._noise.latent(seed, count, self.latent, first)
        return eps if self.prior is None else self.prior.draw(eps, self._noise.component(seed, count, first))

    def sample(self, n: int, seed: int | None = None) -> FloatArray:
        """n images (n, H, W) decoded from z = `sample_latent(n, seed)`; same seed, same images.
        n is bounded by the memory budget (ask in several calls for more)."""
        n = check_int(n, "n")
        check_amount("n", n, self.image_bytes, self.memory_budget, " images")
        return self.decode(self.sample_latent(n, seed))

    def encode(self, x: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(mu, logvar) of q(z|x): (N, latent) each for a batch, (latent,) each for one image."""
        xs, single = self._check_images(x)
        mu, logvar = self._encode_rows(xs, None, (contract.MU, contract.LOGVAR))
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def encode_z(self, x: ArrayLike, eps: ArrayLike | None = None, seed: int | None = None) -> FloatArray:
        """A draw z = mu + exp(logvar / 2) * eps from q(z|x), computed inside the encoder graph.

        eps (N, latent) is given, or drawn as the LATENT rows 0..N-1 under seed (fresh when seed is None).
        """
        xs, single = self._check_images(x)
        (z,) = self._encode_rows(xs, self._eps(len(xs), eps, seed), (contract.Z,))
        return z[0] if single else z

    def _eps(self, n: int, eps: ArrayLike | None, seed: int | None) -> np.ndarray:
        """Reparameterization noise for n images: eps checked as given, else the LATENT rows under seed
        (`sample_latent(n, seed)` for the standard normal prior)."""
        if eps is None:
            return self._noise_rows(seed, n)
        if seed is not None:
            raise ValueError("give eps or seed, not both (seed would be ignored)")
        return self._check_latent(eps, contract.EPS, batch=n)[0]

    def normalize_images(self, x: ArrayLike) -> FloatArray:
        """Images as the model sees them: float32 (N, H, W) in [0, 1] (integer levels / 255), after
        the same checks as every other method (a single image gives (1, H, W))."""
        xs, _ = self._check_images(x)
        return np.concatenate(
            [as_float_images(xs[lo : lo + self.chunk_size]) for lo in range(0, len(xs), self.chunk_size)]
        ).reshape(-1, *self.output_shape)

    def decode(self, z: ArrayLike) -> FloatArray:
        """Pixel means (N, H, W) in [0, 1] for latents z (N, latent) or one (latent,); any finite z
        (latents beyond +-Z_LIMIT, 1e4 prior standard deviations, are clipped to it first)."""
        zs, single = check_latent(z, contract.Z, self.latent, None, Z_LIMIT)
        if len(zs) <= self.chunk_size:  # one run: the common case, kept to the fewest steps
            out = self._decode_one(self._mean_only, {contract.Z: zs})[0].reshape(self._image_rows)
        else:
            out = self._decode_rows(zs)
        return out[0] if single else out

    def decode_on_device(self, z: Any) -> ort.OrtValue:
        """Pixel means (N, pixels) for latents z (N, latent), both on this VAE's device, no host copy.

        z: an OrtValue, a DLPack tensor (torch, CuPy, JAX) or a numpy array (copied to the device
        once), float32, on this VAE's device; its values are not read (no clip, no finiteness check:
        that would need the copy). Returns an `ort.OrtValue` there: `bound.to_dlpack(v)` hands it to
        torch or CuPy without a copy, `v.numpy()` copies it to the host. One run, however large N
        (bound.py).
        """
        zs = as_ortvalue(z, contract.Z, self.latent, self.device, self.files.fixed_batch)
        session = self.loaded.session_for("decoder", zs.shape()[0])
        (mean,) = run_bound(session, "decoder", self.device, {contract.Z: zs}, [contract.MEAN])
        return mean

    def sample_on_device(self, n: int, seed: int | None = None) -> ort.OrtValue:
        """`sample(n, seed)`'s images as an OrtValue (n, pixels) left on this VAE's device: the latents
        (n x latent floats) go to it, the pixels do not come back. n is bounded like `sample`'s."""
        n = check_int(n, "n")
        check_amount("n", n, self.image_bytes, self.memory_budget, " images")
        return self.decode_on_device(self.sample_latent(n, seed))

    def reconstruct(self, x: ArrayLike, stochastic: bool = False, seed: int | None = None) -> FloatArray:
        """decode(encode(x)): through z = mu (default), or a draw z ~ q(z|x) when `stochastic`
        (eps = `sample_latent(N, seed)`, as `encode_z(x, seed=seed)` draws it)."""
        xs, single = self._check_images(x)
        eps = self._noise_rows(seed, len(xs)) if stochastic else np.zeros((len(xs), self.latent), np.float32)
        out = np.empty((len(xs), *self.output_shape), np.float32)
        for lo in range(0, len(xs), self.chunk_size):
            hi = lo + self.chunk_size
            feeds = {contract.X: as_float_images(xs[lo:hi]), contract.EPS: eps[lo:hi]}
            (z,) = self.loaded.run("encoder", [contract.Z], feeds)
            out[lo:hi] = self._decode_chunk(z)
        return out[0] if single else out

    def interpolate(self, x_a: ArrayLike, x_b: ArrayLike, steps: int = 10) -> FloatArray:
        """`steps` images decoded along the straight line between the latent means of x_a and x_b."""
        steps = check_int(steps, "steps", minimum=2)
        check_amount("steps", steps, self.image_bytes, self.memory_budget, " images")
        mu_a, _ = self.encode(self._one_image(x_a, "x_a"))
        mu_b, _ = self.encode(self._one_image(x_b, "x_b"))
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.decode((1 - t) * mu_a[None] + t * mu_b[None])

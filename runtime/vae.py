"""The public API: `VAE` samples, encodes, decodes, reconstructs and interpolates via ONNX Runtime.

    from edgevae.runtime import VAE
    vae = VAE()                      # packaged model, device="auto"
    digits = vae.sample(16, seed=0)  # (16, 28, 28) float32 in [0, 1]

Every input is checked before `InferenceSession.run` (onnxruntime silently broadcasts an eps batch
of 1, passes NaN through and misreads big-endian arrays), converted exactly to native float32,
and processed in chunks so memory stays bounded. One instance is safe to use from many threads.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import ArrayLike, NDArray

from . import contract, limits
from . import likelihood as lik
from .devices import CPU_DEVICE, CUDA_DEVICE, PROVIDERS
from .errors import ModelError
from .layout import ImageLayout
from .limits import check_amount, check_int, check_seed
from .model import (
    ModelFiles,
    Runner,
    check_session_signature,
    load_model_files,
    make_runner,
    make_session_options,
    start_session,
    verify_model_files,
)

FloatArray = NDArray[np.float32]
DEFAULT_CHUNK = 2048
DEFAULT_K = 100  # importance samples for log_likelihood
# Latents are clipped to +-Z_LIMIT before decoding: float32 GEMMs overflow to inf - inf = NaN for latents
# near 3e38, and 1e4 prior standard deviations hold no probability mass.
Z_LIMIT = 1e4
WIDE_ROWS = 64  # with threads=None, batches from this many rows run on all cores (bench/run.py measures it)


@dataclass(frozen=True)
class ScoreResult:
    """`VAE.score`'s answer, one entry per image: the score, -log p(x) and L(x) in nats, and the
    density NLL (-log density of the image's code, log NLL and log L(x) under normal images' mixture, nats)."""

    name: str
    score: NDArray[np.float64]
    nll: NDArray[np.float64]
    complexity: NDArray[np.float64]
    density: NDArray[np.float64]
    k: int


class VAE:
    """A loaded encoder/decoder pair on one device.

    model_dir: a folder from `make export`, or an already verified `ModelFiles`.
    model: or the name of a model shipped in this package ("default", "large"; `edgevae info` lists
    them). With neither: $EDGEVAE_MODEL (a name), else $EDGEVAE_MODEL_DIR, else "default".
    device: "auto" (CUDA when its provider is available, else CPU), "cpu" or "cuda".
    variant: which build of the graphs to run ("fp32", "int8", "fp16", "b1", "ort"; `edgevae info` lists
    those in the folder with their size and cost in nats); b1 graphs run one image per call.
    threads, optimization_level: onnxruntime intra-op threads and graph optimization level
    ("disable", "basic", "extended", "all"); session_options: a base ort.SessionOptions.
    threads=None (default) on the CPU: batches under WIDE_ROWS rows run on single-thread sessions
    (no thread-pool wake-up: fastest for these small graphs, and many request threads scale), larger
    ones on sessions using every core with spinning off, made on first need (docs/speed.md).
    chunk_size: rows per `run` call for large batches (default 2048, fewer when the budget is small).
    memory_budget: bytes (or "8G") that bound every amount of work held in memory (n, steps, k,
    chunk_size); default $EDGEVAE_MEMORY_BUDGET, else 2 GiB (`limits`). Refused before allocating.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | ModelFiles | None = None,
        device: str = "auto",
        *,
        model: str | None = None,
        variant: str = contract.DEFAULT_VARIANT,
        threads: int | None = None,
        optimization_level: str | None = None,
        session_options: ort.SessionOptions | None = None,
        chunk_size: int | None = None,
        memory_budget: int | str | None = None,
    ) -> None:
        self.memory_budget = budget = limits.memory_budget(memory_budget)
        self._options = {
            "memory_budget": budget,
            "device": device,
            "threads": threads,
            "optimization_level": optimization_level,
            "chunk_size": chunk_size,
            "custom_session_options": session_options is not None,
        }
        self.files: ModelFiles = (
            model_dir if isinstance(model_dir, ModelFiles) else load_model_files(model_dir, variant, model)
        )
        self.latent = self.files.latent
        self.image_shape = self.files.image_shape
        self.layout = ImageLayout.from_config(self.files.config)
        self.channels = self.layout.channels
        self.output_shape = self.layout.shape  # (H, W) grey, (H, W, C) colour: what images come back as
        self.pixels = self.layout.pixels
        self.graphs = contract.graphs_for(self.likelihood)
        row_bytes = 16 * (self.pixels + self.latent)  # a run's feeds, outputs and the likelihood's temporaries
        if chunk_size is None:
            chunk_size = max(1, min(DEFAULT_CHUNK, budget // row_bytes))
        chunk_size = check_int(chunk_size, "chunk_size")
        check_amount("chunk_size", chunk_size, row_bytes, budget, " rows")
        self.fixed_batch = self.files.fixed_batch
        if self.fixed_batch is not None:
            if self.fixed_batch != 1:
                raise ModelError(
                    f"variant {self.files.variant!r} has fixed batch {self.fixed_batch}; "
                    "this runtime runs fixed-shape graphs at batch 1 only"
                )
            chunk_size = 1
        auto_threads = threads is None and session_options is None
        opts = make_session_options(1 if auto_threads else threads, optimization_level, session_options)
        device = self.files.session_device(device)  # a variant not for this device is refused here
        self.encoder = start_session(self.files.blobs["encoder"], self._graph_name("encoder"), device, opts)
        self.decoder = start_session(self.files.blobs["decoder"], self._graph_name("decoder"), device, opts)
        self._optimization_level = optimization_level
        self.chunk_size = chunk_size
        self._score_stats: lik.ScoreStats | None = None
        self._score_density: lik.ScoreDensity | None = None
        sizes = {contract.PIXELS: self.pixels, contract.LATENT: self.latent}
        for session, spec in ((self.encoder, self.graphs["encoder"]), (self.decoder, self.graphs["decoder"])):
            check_session_signature(session, spec, sizes, self.fixed_batch, str(self.files.folder / spec.file))
        self._encoder_runner = make_runner(self.encoder, self._graph_name("encoder"))
        self._decoder_runner = make_runner(self.decoder, self._graph_name("decoder"))
        if auto_threads and self.device == "cpu" and self.fixed_batch is None:
            self._wide: dict[str, Runner] = {}
            self._wide_lock = threading.Lock()
            self._encoder_runner = self._by_rows(self._encoder_runner, "encoder", contract.X)
            self._decoder_runner = self._by_rows(self._decoder_runner, "decoder", contract.Z)
        self._rng = np.random.default_rng()  # unseeded draws; numpy's Generator locks around each draw
        self._seeded = SeededNormal()

    def _by_rows(self, small: Runner, graph: str, first: str) -> Runner:
        """A runner that sends batches of WIDE_ROWS rows or more to the all-cores session."""

        def run(names: list[str], feeds: dict[str, Any]) -> list[Any]:
            if len(feeds[first]) < WIDE_ROWS:
                return small(names, feeds)
            return self._wide_runner(graph)(names, feeds)

        return run

    def _wide_runner(self, graph: str) -> Runner:
        """The all-cores session of `graph` (onnxruntime's default threads, spinning off), made once."""
        runner = self._wide.get(graph)
        if runner is None:
            with self._wide_lock:
                runner = self._wide.get(graph)
                if runner is None:
                    opts = make_session_options(0, self._optimization_level)
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    session = start_session(self.files.blobs[graph], self._graph_name(graph), "cpu", opts)
                    runner = self._wide[graph] = make_runner(session, self._graph_name(graph))
        return runner

    def _graph_name(self, graph: str) -> str:
        """The graph's file name in this variant (decoder.ort, encoder.int8.onnx, ...), for messages."""
        return self.files.spec.file(graph)

    def run_graph(self, graph: str, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime run of "encoder" or "decoder" on checked feeds (the self-test's raw access);
        an onnxruntime failure is a RunError naming the graph and the provider."""
        runner = self._encoder_runner if graph == "encoder" else self._decoder_runner
        return runner(names, feeds)

    # -- what is loaded ---------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """Execution providers the sessions actually run on, in priority order."""
        return list(self.decoder.get_providers())

    @property
    def device(self) -> str:
        """'cuda' or 'cpu': what `device` resolved to."""
        return CUDA_DEVICE if self.providers[0] == PROVIDERS[CUDA_DEVICE] else CPU_DEVICE

    @property
    def metadata(self) -> dict[str, str]:
        """The encoder graph's metadata_props (config, source checkpoint, versions, opset)."""
        return dict(self.encoder.get_modelmeta().custom_metadata_map)

    # -- pickling: a VAE travels to worker processes (multiprocessing, ProcessPoolExecutor, Ray) --
    def __getstate__(self) -> dict[str, Any]:
        """The verified model bytes (graphs of this variant, every other listed file, the manifest)
        and the options; sessions are rebuilt on the other side, where every sha256 is checked again.
        Seeded results are the same there; unseeded draws get a fresh generator."""
        if self._options["custom_session_options"]:
            raise TypeError(
                "a VAE made with session_options cannot be pickled (onnxruntime's SessionOptions "
                "cannot be); use threads= and optimization_level= instead"
            )
        f = self.files
        return {
            "folder": str(f.folder),
            "manifest": f.manifest,
            "blobs": f.blobs,
            "extras": f.extras,
            "variant": f.variant,
            "options": {k: v for k, v in self._options.items() if k != "custom_session_options"},
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        files = ModelFiles(Path(state["folder"]), state["manifest"], state["blobs"], state["extras"], state["variant"])
        verify_model_files(files)
        self.__init__(files, **state["options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return (
            f"VAE(model_dir={str(self.files.folder)!r}, variant={self.files.variant!r}, device={self.device!r}, "
            f"latent={self.latent})"
        )

    # -- the operations ---------------------------------------------------------------------
    def sample_latent(self, n: int, seed: int | None = None) -> FloatArray:
        """n draws of z ~ N(0, I), (n, latent) float32: with a seed, those of numpy's
        `Generator(Philox(key=seed)).standard_normal((n, latent), dtype=float32)`; without one, from a
        generator kept by this instance (fresh entropy, thread-safe)."""
        n = check_int(n, "n")
        check_amount("n", n, 4 * self.latent, self.memory_budget, " latents")
        if seed is None:
            return self._rng.standard_normal((n, self.latent), dtype=np.float32)
        return self._seeded.draw(check_seed(seed), (n, self.latent))

    def sample(self, n: int, seed: int | None = None) -> FloatArray:
        """n images (n, H, W) decoded from z = `sample_latent(n, seed)`; same seed, same images.
        n is bounded by the memory budget (ask in several calls for more)."""
        n = check_int(n, "n")
        check_amount("n", n, self.image_bytes, self.memory_budget, " images")
        return self.decode(self.sample_latent(n, seed))

    def encode(self, x: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(mu, logvar) of q(z|x): (N, latent) each for a batch, (latent,) each for one image."""
        xs, single = self._check_images(x)
        mu, logvar = self._encode_rows(xs, np.zeros((len(xs), self.latent), np.float32), (contract.MU, contract.LOGVAR))
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def encode_z(self, x: ArrayLike, eps: ArrayLike | None = None, seed: int | None = None) -> FloatArray:
        """A draw z = mu + exp(logvar / 2) * eps from q(z|x), computed inside the encoder graph.

        eps (N, latent) is given, or drawn as `sample_latent(N, seed)` (fresh when seed is None).
        """
        xs, single = self._check_images(x)
        if eps is not None and seed is not None:
            raise ValueError("give eps or seed, not both (seed would be ignored)")
        if eps is None:
            eps_arr = self.sample_latent(len(xs), seed)
        else:
            eps_arr, _ = self._check_latent(eps, contract.EPS, batch=len(xs))
        (z,) = self._encode_rows(xs, eps_arr, (contract.Z,))
        return z[0] if single else z

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
        zs, single = self._check_latent(z, contract.Z)
        if not zs.size or max(float(zs.max()), -float(zs.min())) > Z_LIMIT:
            zs = np.clip(zs, -Z_LIMIT, Z_LIMIT)
        out = self._decode_rows(zs)
        return out[0] if single else out

    def reconstruct(self, x: ArrayLike, stochastic: bool = False, seed: int | None = None) -> FloatArray:
        """decode(encode(x)): through z = mu (default), or a draw z ~ q(z|x) when `stochastic`."""
        xs, single = self._check_images(x)
        eps = self.sample_latent(len(xs), seed) if stochastic else np.zeros((len(xs), self.latent), np.float32)
        out = np.empty((len(xs), *self.output_shape), np.float32)
        for lo in range(0, len(xs), self.chunk_size):
            hi = lo + self.chunk_size
            (z,) = self._encoder_runner([contract.Z], self._encoder_feed(xs[lo:hi], eps[lo:hi]))
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

    # -- likelihood ------------------------------------------------------------------------
    @property
    def likelihood(self) -> str:
        """'bernoulli' or 'gaussian': the model's p(x|z), from the manifest's config."""
        return str(self.files.config.get("likelihood", "bernoulli"))

    def elbo(self, x: ArrayLike, seed: int | None = None, eps: ArrayLike | None = None) -> float | NDArray[np.float64]:
        """The evidence lower bound log p(x|z) - KL(q(z|x) || N(0, I)) per image, in nats (float64).

        One z = mu + exp(logvar / 2) * eps per image; eps (N, latent) is given, or drawn as
        `sample_latent(N, seed)`, the same draw as `encode_z(x, seed=)`.
        Returns (N,) for a batch, a float for one image.
        """
        xs, single = self._check_images(x)
        n = len(xs)
        if eps is not None:
            if seed is not None:
                raise ValueError("give eps or seed, not both (seed would be ignored)")
            eps_arr, _ = self._check_latent(eps, contract.EPS, batch=n)
        else:
            eps_arr = self.sample_latent(n, seed)
        mu, logvar = self._encode_rows(xs, np.zeros((n, self.latent), np.float32), (contract.MU, contract.LOGVAR))
        out = np.empty(n, np.float64)
        for lo in range(0, n, self.chunk_size):
            hi = min(n, lo + self.chunk_size)
            z = lik_z(mu[lo:hi], logvar[lo:hi], eps_arr[lo:hi])
            logits, mean = self._run_likelihood_decoder(z)
            xb = as_float_images(xs[lo:hi])
            out[lo:hi] = lik.log_px_given_z(xb, logits, mean, self.likelihood) - lik.kl_standard_normal(
                mu[lo:hi], logvar[lo:hi]
            )
        return float(out[0]) if single else out

    def log_likelihood(
        self, x: ArrayLike, k: int = DEFAULT_K, seed: int | None = None, eps: ArrayLike | None = None
    ) -> float | NDArray[np.float64]:
        """The importance-weighted estimate of log p(x) per image, in nats (Burda et al. 2015, eq. 8).

        log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) with z_i ~ q(z|x): a lower bound that tightens as k
        grows (k=1 is the ELBO in expectation). Noise: `eps` shaped (k, N, latent), or per image i
        `np.random.default_rng([seed, i]).standard_normal((k, latent))`, so an image's value does not
        depend on chunk_size or threads; seed=None draws fresh noise. Images go through in blocks
        of at most chunk_size decoder rows: k x N is never held at once.
        Returns (N,) for a batch, a float for one image.
        """
        xs, single = self._check_images(x)
        k = self._check_k(k)
        n = len(xs)
        eps_arr = None
        if eps is not None:
            if seed is not None:
                raise ValueError("give eps or seed, not both (seed would be ignored)")
            eps_arr = check_noise(eps, (k, n, self.latent))
        elif seed is None:
            seed = int(np.random.SeedSequence().entropy) % 2**128  # type: ignore[arg-type]
        else:
            seed = check_seed(seed)
        if eps_arr is not None:
            fixed = eps_arr
            noise = lambda lo, hi: fixed[:, lo:hi]  # noqa: E731
        else:
            base = int(seed)  # type: ignore[arg-type]
            noise = lambda lo, hi: np.stack(  # noqa: E731
                [
                    np.random.default_rng([base, i]).standard_normal((k, self.latent), dtype=np.float32)
                    for i in range(lo, hi)
                ],
                axis=1,
            )
        out = self._iw_log_likelihood(xs, k, noise)
        return float(out[0]) if single else out

    def score(self, x: ArrayLike, score: str = lik.DEFAULT_SCORE, k: int | None = None, seed: int = 0) -> ScoreResult:
        """How unusual each image is for this model: higher = more unusual (see `likelihood.SCORES`).

        The default, "density", flags inputs whose code, likelihood and complexity together are
        improbable for normal images: too unlikely, too simple to be likely (blank pages), or likely
        enough but with a code that normal images of that likelihood do not have (letters). It is
        measured against a mixture fitted to normal images at export (score_density.npz) and
        statistics of held-out normal images (score_stats.json). k defaults to the k those
        statistics were made with. The noise is the same (k, latent) draw for every image (seeded
        by `seed`), so an image's score depends on the image alone, not on its batch. Pick a
        threshold with `threshold("99")` (the 99th percentile of normal images' scores) or from
        scores of your own normal images.
        """
        if score not in lik.SCORES:
            raise ValueError(f"score must be one of {sorted(lik.SCORES)}; got {score!r}")
        stats = self.score_stats
        nll, complexity, density = self.score_inputs(x, stats.k if k is None else k, seed)
        values = stats.compute(score, nll, complexity, density)
        return ScoreResult(score, values, nll, complexity, density, stats.k if k is None else k)

    def score_inputs(
        self, x: ArrayLike, k: int, seed: int = 0
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(-log p(x), L(x), density NLL) per image: what every score is computed from.

        -log p(x) is the importance-weighted estimate in nats with the same (k, latent) noise for every
        image (seeded by `seed`); L(x) is the zlib-compressed length of the 8-bit pixels in nats (Serra
        et al. 2020); the density NLL is -log of (encoder mean, log(1 + NLL), log L(x)) under the mixture of
        normal images' stored with the model (`likelihood.ScoreDensity`).
        """
        xs, _ = self._check_images(x)
        nll, complexity = self.measure_nll_complexity(xs, k, seed)
        mu, _ = self.encode(xs)
        density = self.score_density.nll(lik.density_features(mu, nll, complexity))
        return nll, complexity, density

    def measure_nll_complexity(
        self, x: ArrayLike, k: int, seed: int = 0
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The first two of `score_inputs`: -log p(x) with one shared noise draw, and L(x), in nats."""
        k, seed = self._check_k(k), check_seed(seed)
        xs, _ = self._check_images(x)
        common = np.random.default_rng(seed).standard_normal((k, 1, self.latent), dtype=np.float32)
        nll = -self._iw_log_likelihood(xs, k, lambda lo, hi: np.broadcast_to(common, (k, hi - lo, self.latent)))
        complexity = np.concatenate(
            [
                lik.complexity_nats(as_float_images(xs[lo : lo + self.chunk_size]))
                for lo in range(0, len(xs), self.chunk_size)
            ]
        )
        return nll, complexity

    @property
    def score_density(self) -> lik.ScoreDensity:
        """The density score's Gaussian mixture over normal images' score features (from the model folder)."""
        if self._score_density is None:
            blob = self.files.extra(contract.SCORE_DENSITY_FILE, "unusual-input scores")
            try:
                features = self.latent + 2
                self._score_density = lik.ScoreDensity.from_npz(blob, features, contract.SCORE_DENSITY_FILE)
            except ValueError as exc:
                raise ModelError(f"{self.files.folder / contract.SCORE_DENSITY_FILE}: {exc}") from exc
        return self._score_density

    @property
    def score_stats(self) -> lik.ScoreStats:
        """Statistics of normal images that the scores compare with (from the model folder)."""
        if self._score_stats is None:
            blob = self.files.extra(contract.SCORE_STATS_FILE, "unusual-input scores")
            try:
                self._score_stats = lik.ScoreStats.from_json(blob, contract.SCORE_STATS_FILE)
            except ValueError as exc:
                raise ModelError(f"{self.files.folder / contract.SCORE_STATS_FILE}: {exc}") from exc
        return self._score_stats

    def threshold(self, percentile: str = "99", score: str = lik.DEFAULT_SCORE) -> float:
        """The given percentile ("90", "95", "99" or "99.9") of `score` over the normal images."""
        return self.score_stats.threshold(score, percentile)

    @property
    def image_bytes(self) -> int:
        """Bytes of one float32 image and its latent: the unit of the memory bounds on n and steps."""
        return 4 * (self.pixels + self.latent)

    def _check_k(self, k: Any) -> int:
        """k importance samples, bounded by the budget: each holds its noise, z (float32) and log weight."""
        k = check_int(k, "k")
        check_amount("k", k, 8 * self.latent + 16, self.memory_budget, " samples")
        return k

    def _iw_log_likelihood(self, xs: np.ndarray, k: int, noise: Callable[[int, int], np.ndarray]) -> np.ndarray:
        """log p(x) estimates for checked images xs (N, pixels); noise(lo, hi) gives eps (k, hi-lo, latent)."""
        n = len(xs)
        mu, logvar = self._encode_rows(xs, np.zeros((n, self.latent), np.float32), (contract.MU, contract.LOGVAR))
        out = np.empty(n, np.float64)
        log_w = eps = xb = np.empty(0)
        for lo, hi, s, e in lik.plan_blocks(n, k, self.chunk_size):
            if s == 0:
                log_w = np.empty((k, hi - lo), np.float64)
                xb = as_float_images(xs[lo:hi])
                eps = noise(lo, hi)
            m, lv = mu[lo:hi], logvar[lo:hi]
            z = lik_z(m[None], lv[None], eps[s:e])  # (kb, B, latent)
            logits, mean = self._run_likelihood_decoder(z.reshape(-1, self.latent))
            shape = (e - s, hi - lo, self.pixels)
            log_px = lik.log_px_given_z(
                xb[None], logits.reshape(shape), None if mean is None else mean.reshape(shape), self.likelihood
            )
            zero = np.zeros_like(z)
            log_w[s:e] = log_px + lik.log_normal(z, zero, zero) - lik.log_normal(z, m[None], lv[None])
            if e == k:
                out[lo:hi] = lik.log_mean_exp(log_w, axis=0)
        return out

    def _run_likelihood_decoder(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, None) for bernoulli, (logits, mean) for gaussian: what log p(x|z) needs; for the
        discretized logistic (log_scale, mean), which `lik.log_px_given_z` reads in that order."""
        if self.likelihood in contract.SCALED_LIKELIHOODS:
            mean, log_scale = self._decoder_runner([contract.MEAN, contract.LOG_SCALE], {contract.Z: z})
            return log_scale, mean
        if self.likelihood == "gaussian":
            mean, logits = self._decoder_runner([contract.MEAN, contract.LOGITS], {contract.Z: z})
            return logits, mean
        (logits,) = self._decoder_runner([contract.LOGITS], {contract.Z: z})
        return logits, None

    # -- running in chunks ------------------------------------------------------------------
    def _encode_rows(self, xs: np.ndarray, eps: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        outs = [np.empty((len(xs), self.latent), np.float32) for _ in names]
        for lo in range(0, len(xs), self.chunk_size):
            hi = lo + self.chunk_size
            got = self._encoder_runner(list(names), self._encoder_feed(xs[lo:hi], eps[lo:hi]))
            for out, part in zip(outs, got, strict=True):
                out[lo:hi] = part
        return outs

    @staticmethod
    def _encoder_feed(x_chunk: np.ndarray, eps_chunk: np.ndarray) -> dict[str, np.ndarray]:
        return {contract.X: as_float_images(x_chunk), contract.EPS: eps_chunk}

    def _decode_chunk(self, z: np.ndarray) -> np.ndarray:
        return self._decoder_runner([contract.MEAN], {contract.Z: z})[0].reshape(-1, *self.output_shape)

    def _decode_rows(self, zs: np.ndarray) -> np.ndarray:
        if len(zs) <= self.chunk_size:
            return self._decode_chunk(zs)
        out = np.empty((len(zs), *self.output_shape), np.float32)
        for lo in range(0, len(zs), self.chunk_size):
            hi = lo + self.chunk_size
            out[lo:hi] = self._decode_chunk(zs[lo:hi])
        return out

    # -- input checks -----------------------------------------------------------------------
    def _check_images(self, x: Any, name: str = contract.X) -> tuple[np.ndarray, bool]:
        """Validate images; returns ((N, pixels) array, was-a-single-image).

        Accepts float arrays in [0, 1] or integer pixel levels 0..255 (uint8 usually), shaped
        (N, pixels), (N, H, W), (N, 1, H, W) (grey) or (N, H, W, C) (colour), or one image without the
        batch axis (runtime/layout.py). The array keeps
        its dtype (converted to float32 chunk by chunk); values are checked here, before any run.
        """
        arr = as_numeric_array(x, name, "images")
        n, single = self.image_rows(arr.shape, name)
        arr = arr.reshape(n, self.pixels)
        check_values(arr, name, self.chunk_size)
        return arr, single

    def image_rows(self, shape: tuple[int, ...], name: str = contract.X) -> tuple[int, bool]:
        """(images, is-one-image) for an array of `shape`: (N, pixels), (N, H, W), (N, 1, H, W), or one
        image (pixels,) or (H, W); any other shape, or no image, is a ValueError saying what was expected."""
        n, single = self.layout.count(shape, name)
        if single:
            return 1, True
        if shape[0] == 0:
            raise ValueError(f"{name}: expected at least one image; got an empty batch of shape {tuple(shape)}")
        return int(shape[0]), False

    def input_rule(self, name: str, bytes_per_image: int = 0) -> Callable[[tuple[int, ...], np.dtype], None]:
        """A check of an input file's header (shape, dtype) before its data is read: the shapes
        `image_rows` accepts, and images * (their own bytes + `bytes_per_image` of work) within the budget."""

        def rule(shape: tuple[int, ...], dtype: np.dtype) -> None:
            n, _ = self.image_rows(shape, name)
            check_amount(f"{name}: images", n, dtype.itemsize * self.pixels + bytes_per_image, self.memory_budget)

        return rule

    def _check_latent(self, z: Any, name: str, batch: int | None = None) -> tuple[np.ndarray, bool]:
        """Validate latents or noise: (N, latent) or (latent,), finite, float; batch must match."""
        if type(z) is np.ndarray and z.dtype == np.float32 and z.flags.c_contiguous:
            arr = z  # the common case, kept cheap: no conversion
        else:
            arr = as_numeric_array(z, name, "latent vectors")
        if arr.shape == (self.latent,):
            arr, is_single = arr.reshape(1, self.latent), True
        elif arr.ndim == 2 and arr.shape[1] == self.latent:
            is_single = False
        else:
            raise ValueError(
                f"{name}: expected shape (N, {self.latent}) or ({self.latent},) for this model's "
                f"latent size {self.latent}; got shape {arr.shape}"
            )
        if len(arr) == 0:
            raise ValueError(f"{name}: expected at least one row; got an empty batch of shape {arr.shape}")
        if batch is not None and len(arr) != batch:
            raise ValueError(
                f"{name}: batch of {len(arr)} does not match x's batch of {batch} "
                "(no broadcasting: give one eps row per image)"
            )
        out = np.ascontiguousarray(arr, dtype=np.float32)
        if not all_finite(out):
            bad = int(np.argwhere(~np.isfinite(out))[0][0])
            raise ValueError(f"{name}: expected finite values; got NaN or Inf (first in row {bad})")
        return out, is_single

    def _one_image(self, x: Any, name: str) -> np.ndarray:
        xs, single = self._check_images(x, name)
        if len(xs) != 1:
            raise ValueError(f"{name}: expected one image; got a batch of {len(xs)}")
        return xs[0]


def lik_z(mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """z = mu + exp(logvar / 2) * eps in float32, as the encoder graph and PyTorch compute it."""
    return (mu + np.exp(np.float32(0.5) * logvar) * eps).astype(np.float32, copy=False)


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


class SeededNormal:
    """Standard normal float32 draws keyed by a seed: the draws of
    `np.random.Generator(np.random.Philox(key=seed)).standard_normal(shape, dtype=np.float32)`.

    One Philox generator is re-keyed in place per call (about 3 us), where building a new seeded
    generator costs about 12 us, as much as decoding one image. Thread-safe (a lock per call).
    """

    def __init__(self) -> None:
        self._bits = np.random.Philox(key=0)
        self._gen = np.random.Generator(self._bits)
        self._state = self._bits.state
        self._lock = threading.Lock()

    def draw(self, seed: int, shape: tuple[int, ...]) -> np.ndarray:
        seed = check_seed(seed)
        with self._lock:
            state = self._state
            state["state"]["key"][:] = (seed & 0xFFFF_FFFF_FFFF_FFFF, seed >> 64)
            state["state"]["counter"][:] = 0
            state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0
            self._bits.state = state
            return self._gen.standard_normal(shape, dtype=np.float32)


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

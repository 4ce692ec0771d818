"""The public API: `VAE` samples, encodes, decodes, reconstructs, interpolates, measures and scores.

    from edgevae.runtime import VAE
    vae = VAE()                      # packaged model, device="auto"
    digits = vae.sample(16, seed=0)  # (16, 28, 28) float32 in [0, 1]

`VAE` is four layers, one module each: core.py (the loaded model from model.py, options, input
checks, pickling), operations.py (sample, encode, decode, reconstruct, interpolate), estimates.py
(elbo, log_likelihood) and scoring.py (score, with the scores defined in scores.py). Every seeded
draw comes from one noise scheme (noise.py). One instance is safe to use from many threads.
"""

from __future__ import annotations

from .scoring import ScoreResult, Scoring

__all__ = ["VAE", "ScoreResult"]


class VAE(Scoring):
    """A loaded encoder/decoder pair on one device.

    model_dir: a folder from `make export`, or an already verified `ModelFiles`.
    model: or the name of a model shipped in this package ("default", "large"; `edgevae info` lists
    them). With neither: $EDGEVAE_MODEL (a name), else $EDGEVAE_MODEL_DIR, else "default".
    device: "auto" (CUDA when its provider is available, else CPU), "cpu" or "cuda".
    variant: which build of the graphs to run ("fp32", "int8", "fp16", "b1", "ort"; `edgevae info` lists
    those in the folder with their size and cost in nats); b1 graphs run one image per call.
    threads, optimization_level: onnxruntime intra-op threads and graph optimization level
    ("disable", "basic", "extended", "all"); session_options: a base ort.SessionOptions.
    threads=None (default) on the CPU: batches under sessions.WIDE_ROWS rows run on single-thread
    sessions (no thread-pool wake-up: fastest for these small graphs, and many request threads scale),
    larger ones on sessions using every core with spinning off, made on first need (docs/speed.md).
    chunk_size: rows per `run` call for large batches (default 2048, fewer when the budget is small).
    memory_budget: bytes (or "8G") that bound every amount of work held in memory (n, steps, k,
    chunk_size); default $EDGEVAE_MEMORY_BUDGET, else 2 GiB (`limits`). Refused before allocating.
    Seeds: ints in [0, 2**128); the same seed gives the same values, however the work is split.
    """

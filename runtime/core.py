"""What every `VAE` operation stands on: the loaded model, the amounts of work, input checks, pickling.

`Core.__init__` gets the model ready in one call (model.open_model: verified files, variant, sessions)
and sizes the chunks of work under the memory budget (limits.py). The operations (operations.py),
the likelihood (estimates.py) and the scores (scoring.py) are built on top of it; `VAE` (vae.py)
is all of them together.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from . import contract, limits
from .files import ModelFiles, verify_model_files
from .inputs import as_float_images, check_images, check_latent, image_rows
from .limits import check_amount, check_int
from .model import Model, open_model
from .noise import Noise
from .prior import prior_of
from .sessions import Runner

DEFAULT_CHUNK = 2048


class Core:
    """A loaded model with its options; see `VAE` for the arguments."""

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
        self.memory_budget = limits.memory_budget(memory_budget)
        self._options = {
            "memory_budget": self.memory_budget,
            "device": device,
            "threads": threads,
            "optimization_level": optimization_level,
            "chunk_size": chunk_size,
            "custom_session_options": session_options is not None,
        }
        self.loaded: Model = open_model(
            model_dir,
            device,
            name=model,
            variant=variant,
            threads=threads,
            optimization_level=optimization_level,
            session_options=session_options,
        )
        self.files, self.encoder, self.decoder = self.loaded.files, self.loaded.encoder, self.loaded.decoder
        self.layout, self.graphs, self.fixed_batch = self.loaded.layout, self.loaded.graphs, self.files.fixed_batch
        self.latent, self.image_shape, self.pixels = self.files.latent, self.files.image_shape, self.layout.pixels
        self.channels = self.layout.channels
        self.output_shape = self.layout.shape  # (H, W) grey, (H, W, C) colour: what images come back as
        self.chunk_size = 1 if self.fixed_batch is not None else self._plan_chunks(chunk_size)
        self._noise = Noise()
        self.prior = prior_of(self.files.config, self.files.extras, self.files.folder)  # None: N(0, I)
        # decode's hot path at small batches, fixed once: the runner, the output asked for, the shape
        self._decode_one = self.loaded.runners["decoder"]
        self._mean_only, self._image_rows = [contract.MEAN], (-1, *self.output_shape)

    def _plan_chunks(self, chunk_size: int | None) -> int:
        """Rows per run: chunk_size, else as many as the budget holds up to DEFAULT_CHUNK."""
        row_bytes = 16 * (self.pixels + self.latent)  # a run's feeds, outputs and the likelihood's temporaries
        if chunk_size is None:
            chunk_size = max(1, min(DEFAULT_CHUNK, self.memory_budget // row_bytes))
        chunk_size = check_int(chunk_size, "chunk_size")
        check_amount("chunk_size", chunk_size, row_bytes, self.memory_budget, " rows")
        return chunk_size

    # -- what is loaded ---------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """Execution providers the sessions actually run on, in priority order."""
        return self.loaded.providers

    @property
    def device(self) -> str:
        """'cuda' or 'cpu': what `device` resolved to."""
        return self.loaded.device

    @property
    def metadata(self) -> dict[str, str]:
        """The encoder graph's metadata_props (config, source checkpoint, versions, opset)."""
        return dict(self.encoder.get_modelmeta().custom_metadata_map)

    @property
    def likelihood(self) -> str:
        """'bernoulli', 'gaussian' or 'discretized_logistic': the model's p(x|z), from the manifest's config."""
        return self.loaded.likelihood

    @property
    def image_bytes(self) -> int:
        """Bytes of one float32 image and its latent: the unit of the memory bounds on n and steps."""
        return 4 * (self.pixels + self.latent)

    @property
    def _wide(self) -> dict[str, Runner]:
        """The all-cores runners made so far; absent without them (threads given, a GPU, fixed batch)."""
        if self.loaded.wide is None:
            raise AttributeError("_wide")
        return self.loaded.wide.runners

    def run_graph(self, graph: str, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime run of "encoder" or "decoder" on checked feeds (the self-test's raw access);
        an onnxruntime failure is a RunError naming the graph and the provider."""
        return self.loaded.run(graph, names, feeds)

    # -- pickling: a VAE travels to worker processes (multiprocessing, ProcessPoolExecutor, Ray) --
    def __getstate__(self) -> dict[str, Any]:
        """The verified model bytes (graphs of this variant, every other listed file, the manifest)
        and the options; sessions are rebuilt on the other side, where every sha256 is checked again.
        Seeded results are the same there."""
        if self._options["custom_session_options"]:
            raise TypeError(
                "a VAE made with session_options cannot be pickled (onnxruntime's SessionOptions "
                "cannot be); use threads= and optimization_level= instead"
            )
        f = self.files
        return {
            "folder": str(f.folder),
            "manifest": f.manifest,
            "blobs": f.graphs,  # the key of 0.1's pickles, so they still load
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

    # -- inputs ----------------------------------------------------------------------------
    def image_rows(self, shape: tuple[int, ...], name: str = contract.X) -> tuple[int, bool]:
        """(images, is-one-image) for an array of `shape`: (N, pixels), (N, H, W), (N, 1, H, W), or one
        image (pixels,) or (H, W); any other shape, or no image, is a ValueError saying what was expected."""
        return image_rows(self.layout, shape, name)

    def input_rule(self, name: str, bytes_per_image: int = 0) -> Callable[[tuple[int, ...], np.dtype], None]:
        """A check of an input file's header (shape, dtype) before its data is read: the shapes
        `image_rows` accepts, and images * (their own bytes + `bytes_per_image` of work) within the budget."""

        def rule(shape: tuple[int, ...], dtype: np.dtype) -> None:
            n, _ = self.image_rows(shape, name)
            check_amount(f"{name}: images", n, dtype.itemsize * self.pixels + bytes_per_image, self.memory_budget)

        return rule

    def _check_images(self, x: Any, name: str = contract.X) -> tuple[np.ndarray, bool]:
        return check_images(x, self.layout, self.chunk_size, name)

    def _check_latent(
        self, z: Any, name: str, batch: int | None = None, limit: float | None = None
    ) -> tuple[np.ndarray, bool]:
        return check_latent(z, name, self.latent, batch, limit)

    def _one_image(self, x: Any, name: str) -> np.ndarray:
        xs, _ = self._check_images(x, name)
        if len(xs) != 1:
            raise ValueError(f"{name}: expected one image; got a batch of {len(xs)}")
        return xs[0]

    def _noise_rows(self, seed: int | None, n: int) -> np.ndarray:
        """LATENT noise rows 0 .. n-1 (noise.py), within the memory budget; seed=None: a fresh seed."""
        check_amount("n", n, 4 * self.latent, self.memory_budget, " latents")
        return self._noise.latent(seed, n, self.latent)

    # -- running in chunks ------------------------------------------------------------------
    def _encode_rows(self, xs: np.ndarray, eps: np.ndarray | None, names: tuple[str, ...]) -> list[np.ndarray]:
        """The encoder's outputs `names` for checked images xs (N, pixels) and noise eps (zeros when None)."""
        outs = [np.empty((len(xs), self.latent), np.float32) for _ in names]
        for lo in range(0, len(xs), self.chunk_size):
            x = as_float_images(xs[lo : lo + self.chunk_size])
            e = np.zeros((len(x), self.latent), np.float32) if eps is None else eps[lo : lo + len(x)]
            got = self.loaded.run("encoder", list(names), {contract.X: x, contract.EPS: e})
            for out, part in zip(outs, got, strict=True):
                out[lo : lo + len(x)] = part
        return outs

    def _decode_chunk(self, z: np.ndarray) -> np.ndarray:
        return self.loaded.run("decoder", [contract.MEAN], {contract.Z: z})[0].reshape(-1, *self.output_shape)

    def _decode_rows(self, zs: np.ndarray) -> np.ndarray:
        if len(zs) <= self.chunk_size:
            return self._decode_chunk(zs)
        out = np.empty((len(zs), *self.output_shape), np.float32)
        for lo in range(0, len(zs), self.chunk_size):
            out[lo : lo + self.chunk_size] = self._decode_chunk(zs[lo : lo + self.chunk_size])
        return out

"""The graph contract: the single source of names, axes, dtypes, opset and tolerances.

Export writes graphs to this contract and validates them against it; the runtime feeds and
reads graphs by it. Nothing else in the project spells a graph name.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH = "batch"  # the one dynamic axis, in every input and output
PIXELS = "pixels"  # symbolic: image height * width * channels (784 for MNIST)
LATENT = "latent"  # symbolic: latent size (20 for the reference model)

# Tensor names. Export, validation and runtime refer to tensors only through these.
X, EPS = "x", "eps"  # encoder inputs: images in [0, 1], standard normal noise
MU, LOGVAR, Z = "mu", "logvar", "z"  # encoder outputs (Z is also the decoder input)
MEAN, LOGITS = "mean", "logits"  # decoder outputs: pixel means in [0, 1], their logits
LOG_SCALE = "log_scale"  # third decoder output of discretized-logistic models: each pixel's log scale

# Layout of images in the graphs (every model, grey or colour, MLP or convolutional): x, mean and
# logits are flat rows of PIXELS = H * W * C values in channels-last order (row, column, channel),
# the order of an (N, H, W, C) array and of image files, so a row reshapes to (H, W, C) with no copy.
# A convolutional graph turns rows into (N, C, H, W) inside itself (Reshape + Transpose) and back.
# With one channel this is the (N, H * W) layout of the first MNIST models, which load unchanged.
# The model config in the manifest carries "channels" (absent = 1); the runtime returns images as
# (N, H, W) for grey and (N, H, W, C) for colour (runtime/layout.py).
CHANNELS_DEFAULT = 1
# p(x|z) per pixel, named in the manifest config. bernoulli: from logits; gaussian: mean, variance 1/2;
# discretized_logistic: 8-bit levels under a logistic with location `mean` and scale exp(log_scale),
# binned to 1/255 (Salimans et al. 2017, PixelCNN++, one component), so log p is a probability and
# -log2 p / pixels is bits per dimension.
LIKELIHOODS = ("bernoulli", "gaussian", "discretized_logistic")
SCALED_LIKELIHOODS = ("discretized_logistic",)  # decoders with the LOG_SCALE output


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: a name, a dtype and a shape of axis names."""

    name: str
    shape: tuple[str, ...]
    dtype: str = "float32"

    def concrete_shape(self, sizes: dict[str, int]) -> list[int | str]:
        """The shape with fixed axes filled in from `sizes`; the batch axis stays symbolic."""
        return [BATCH if axis == BATCH else int(sizes[axis]) for axis in self.shape]


# The contract's dtypes as ONNX names them: TensorProto elem_type numbers and onnxruntime type strings.
ONNX_ELEM_TYPES = {"float32": 1, "float16": 10, "int64": 7}
ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "int64": "tensor(int64)"}

# (name, dtype, shape) with None for a dynamic axis: what both sides compare a real graph with.
Signature = list[tuple[str, str, list[int | None]]]


@dataclass(frozen=True)
class GraphSpec:
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def signature(self, kind: str, sizes: dict[str, int], batch: int | None = None) -> Signature:
        """The contract's inputs or outputs (kind) with fixed axes from `sizes`; the batch axis is
        None (dynamic) or a fixed batch size."""
        specs = self.inputs if kind == "input" else self.outputs
        return [(t.name, t.dtype, [batch if axis == BATCH else int(sizes[axis]) for axis in t.shape]) for t in specs]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's dynamic_axes: the batch axis of every input and output."""
        return {t.name: {t.shape.index(BATCH): BATCH} for t in self.inputs + self.outputs}


# encoder: (x, eps) -> (mu, logvar, z); z = mu + exp(0.5 * logvar) * eps, eps given by the caller.
ENCODER = GraphSpec(
    file="encoder.onnx",
    inputs=(TensorSpec(X, (BATCH, PIXELS)), TensorSpec(EPS, (BATCH, LATENT))),
    outputs=(TensorSpec(MU, (BATCH, LATENT)), TensorSpec(LOGVAR, (BATCH, LATENT)), TensorSpec(Z, (BATCH, LATENT))),
)
# decoder: z -> (mean, logits); mean = sigmoid(logits) are the pixel means in [0, 1]; logits give a
# stable bernoulli log p(x|z) = -softplus(-logits) * x - softplus(logits) * (1 - x).
DECODER = GraphSpec(
    file="decoder.onnx",
    inputs=(TensorSpec(Z, (BATCH, LATENT)),),
    outputs=(TensorSpec(MEAN, (BATCH, PIXELS)), TensorSpec(LOGITS, (BATCH, PIXELS))),
)
GRAPHS = {"encoder": ENCODER, "decoder": DECODER}
# decoder of a discretized-logistic model: z -> (mean, logits, log_scale); mean = sigmoid(logits) is
# the logistic's location, exp(log_scale) its scale (per pixel, per image).
DECODER_SCALED = GraphSpec(
    file=DECODER.file,
    inputs=DECODER.inputs,
    outputs=DECODER.outputs + (TensorSpec(LOG_SCALE, (BATCH, PIXELS)),),
)


def graphs_for(likelihood: str | None) -> dict[str, GraphSpec]:
    """The graph specs of a model with this likelihood: GRAPHS, or the three-output decoder for
    discretized_logistic."""
    if likelihood in SCALED_LIKELIHOODS:
        return {"encoder": ENCODER, "decoder": DECODER_SCALED}
    return GRAPHS


MANIFEST_FILE = "manifest.json"
# Files beside the graphs, each listed in the manifest with its sha256 like the graphs.
# Golden vectors (fixed inputs and the PyTorch outputs for them, arrays "<graph>.<tensor>") in a form
# any language reads without numpy: GOLDEN_DATA_FILE holds every array as little-endian float32,
# concatenated in sorted name order; GOLDEN_SPEC_FILE indexes it ("tensors": name -> dtype, shape,
# byte offset, byte length) and gives per-output tolerances and how to check them.
GOLDEN_DATA_FILE = "golden.bin"
GOLDEN_SPEC_FILE = "golden.json"
GOLDEN_DTYPE = "float32"  # the one dtype of golden.bin, as the index names it
GOLDEN_NUMPY_DTYPE = "<f4"  # ... and as numpy reads it: little-endian on every machine
GOLDEN_LEGACY_FILE = "golden.npz"  # what exports before golden.bin wrote instead; still read by the runtime
SCORE_STATS_FILE = "score_stats.json"  # statistics of normal (training) images for the unusual-input score
# a Gaussian mixture over normal images' score features (log_weights, means, prec_chol): the density score
SCORE_DENSITY_FILE = "score_density.npz"
# A learned prior (models trained with --prior vamp; config "prior": "vamp"): the mixture's means and
# log-variances, (prior_components, latent) each, little-endian float32 (runtime/prior.py). A model
# without a "prior" in its config has N(0, I) and no such file.
PRIOR_FILE = "prior.bin"
# The likelihood graph (export/likelihood_graph.py), built from the fp32 decoder graph: inputs x (N,
# pixels), mu and logvar (N, latent), eps (K, N, latent); output log_w (K, N) float64, each importance sample's
# log p(x|z) + log p(z) - log q(z|x) with z = mu + exp(logvar / 2) * eps, so only K x N numbers leave
# the execution provider. For the likelihoods listed; discretized-logistic models go through numpy.
LIKELIHOOD_FILE = "likelihood.onnx"
LOG_W = "log_w"
LIKELIHOOD_INPUTS = (X, MU, LOGVAR, EPS)
GRAPH_LIKELIHOODS = ("bernoulli", "gaussian")
LIKELIHOOD_GRAPH_NATS = 1e-3  # export's gate: max |graph - numpy formulas| of log p(x) per image, nats
GOLDEN_FORMAT = "edgevae-golden"
SCORE_STATS_FORMAT = "edgevae-score-stats"
SCORE_STATS_VERSION = 2  # 2: per-score statistics, made under noise.NOISE_SCHEME (1: numpy default_rng(seed) noise)
MANIFEST_FORMAT = "edgevae-model"
MANIFEST_VERSION = 1

OPSET = 17
# IR 8 is what the TorchScript exporter writes for opset 17. onnxruntime 1.16 (built on onnx 1.14)
# reads IR <= 9 and opset 17 (from 1.14 on); 1.31 reads IR <= 13. Export refuses anything newer
# than MAX_IR_VERSION so graphs of this contract load in onnxruntime >= MIN_ONNXRUNTIME.
MAX_IR_VERSION = 9
MIN_ONNXRUNTIME = "1.16"

# Max absolute difference allowed between ONNX Runtime and PyTorch on the same inputs.
# cpu: float32 GEMMs summed in another order than PyTorch's, through up to three layers (the large
# model's gated stack: 1.4e-5 measured on noise images at batch 4096; the textbook model: 5e-6);
# cuda: other GEMM kernels and reduction orders (TF32 off).
TOLERANCE = {"cpu": 5e-5, "cuda": 1e-4}
# Logits are unbounded (background pixels reach about -50, where one float32 ulp is 3.8e-6), so they
# are compared like numpy.allclose: |diff| <= TOLERANCE + RELATIVE_TOLERANCE[name] * |reference|.
# Every other output (mu, logvar, z, mean) is held to the absolute tolerance alone.
RELATIVE_TOLERANCE = {LOGITS: 1e-6}


MNIST_PIXELS = 28 * 28  # the image size the variants' nll_budget and budget were set on


@dataclass(frozen=True)
class Variant:
    """One build of the graph pair. Each is written by export, checked against fp32 on real test
    digits before it is written, and listed in the manifest with its cost in nats."""

    name: str
    suffix: str  # graph file = f"{graph}{suffix}", e.g. decoder.int8.onnx
    description: str
    batch: int | None = None  # a fixed batch size, or None for the dynamic batch axis
    # Budget: max |variant - fp32| per output on real test digits. Exact builds use the parity
    # tolerance on every output; lossy ones leave logits out (they saturate to about -50 where a
    # large difference changes nothing) and are held to their likelihood cost instead.
    budget: tuple[tuple[str, float], ...] = ()
    nll_budget: float = 0.0  # max |change| of the importance-weighted log-likelihood, nats per image
    # the same for models of other shapes than MNIST's 28x28 grey (own images, colour, conv): bits per
    # dimension, so the budget grows with the image (fp16 convolutions drift more than fp16 Gemms)
    bpd_budget: float = 1e-5
    # The devices (devices.py names) this build is for; the manifest records them per variant, and the
    # runtime refuses any other before a session starts (device="auto" picks the first one it can).
    devices: tuple[str, ...] = ("cpu", "cuda")
    not_for: str = ""  # why the devices left out are, for the refusal and `edgevae info`
    on_cuda: str = ""  # what a user on CUDA should know of this build, where it is not the obvious (info, docs)

    def file(self, graph: str) -> str:
        return f"{graph}{self.suffix}"

    @property
    def exact(self) -> bool:
        return not self.budget

    # per-output budgets for shapes other than MNIST's (own images, colour, conv), where they differ:
    # a convolution sums more products per output than the MLPs' layers, and fp16 drifts further
    other_budget: tuple[tuple[str, float], ...] = ()

    def tolerance(self, output: str, pixels: int = MNIST_PIXELS) -> float | None:
        """The output's budget against fp32 (None: not compared for this variant), for images of `pixels` values."""
        if self.exact:
            return TOLERANCE["cpu"]
        table = self.other_budget if pixels != MNIST_PIXELS and self.other_budget else self.budget
        return dict(table).get(output)


_LOSSY_OUTPUTS = (MU, LOGVAR, Z, MEAN)
VARIANTS = {
    v.name: v
    for v in (
        Variant("fp32", ".onnx", "float32, dynamic batch (the default)", nll_budget=1e-3),
        Variant(
            "int8",
            ".int8.onnx",
            "weights int8 per channel, dynamic quantization (MatMulInteger); encoder layers after the first: float16",
            # z gets 0.3: z = mu + sigma * eps carries logvar's quantization error times sigma |eps| / 2, and a
            # VampPrior encoder gives the golden noise image sigma 25 (large: 0.1497 measured against 0.15)
            budget=tuple((o, b) for o, b in zip(_LOSSY_OUTPUTS, (0.15, 0.15, 0.3, 0.5), strict=True)),
            # the measured change itself varies with the noise: default 0.09-0.13 nats over seeds 0-3
            # (0.08-0.13 under the noise before noise.py), large 0.05-0.10; 0.1 was met by seed 0's draw
            nll_budget=0.15,
            bpd_budget=1e-2,
            # onnxruntime has no CUDA kernels for its DynamicQuantizeLinear and the uint8 x int8
            # MatMulInteger, so it places them on the CPU provider (issue 24, onnxruntime-gpu 1.31.1)
            on_cuda="a CPU model in disguise: its quantized matrix products have no CUDA kernels, so "
            "onnxruntime runs them on the CPU with copies around them; on CUDA use fp16 or fp32",
        ),
        Variant(
            "fp16",
            ".fp16.onnx",
            "weights and compute float16, float32 inputs and outputs (GPUs, ARM)",
            # z gets 0.02: z = mu + sigma * eps is computed in float16, whose spacing is 0.016 for |z| in
            # [16, 32); a VampPrior encoder gives the golden noise image sigma 25 and |z| 19 (large)
            budget=tuple((o, 0.02 if o == Z else 0.01) for o in _LOSSY_OUTPUTS),
            nll_budget=0.01,
            bpd_budget=1e-2,
            other_budget=tuple((o, b) for o, b in zip(_LOSSY_OUTPUTS, (0.05, 0.05, 0.05, 0.02), strict=True)),
        ),
        Variant(
            "b1", ".b1.onnx", "float32, batch fixed at 1: fully usable by NNAPI and CoreML", batch=1, nll_budget=1e-3
        ),
        Variant(
            "ort",
            ".ort",
            "float32 in ORT format, for ONNX Runtime Mobile and minimal builds",
            nll_budget=1e-3,
            devices=("cpu",),
            # onnxruntime-gpu 1.31.1 on an H200: "CUDA failure 700: an illegal memory access" on the
            # first run, after which no CUDA session starts in that process (issue 21)
            not_for="ORT-format files hold kernels chosen for the CPU provider; on CUDA use variant fp32 or fp16",
        ),
    )
}
DEFAULT_VARIANT = "fp32"
REQUIRED_OPERATORS_FILE = "required_operators.config"  # operators of the .ort graphs, for a minimal build
VARIANT_NLL_EVAL = {"images": 256, "k": 100, "seed": 0}  # how export measures each variant's cost in nats

RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)

# ONNX metadata_props keys written by export and read by the runtime.
META_GRAPH = "edgevae.graph"  # "encoder" or "decoder"
META_CONFIG = "edgevae.config"  # JSON of the model config (image_shape, hidden, latent, likelihood, beta)
META_CHECKPOINT_SHA256 = "edgevae.checkpoint_sha256"
META_VERSIONS = "edgevae.versions"  # JSON: edgevae, torch, onnx
META_OPSET = "edgevae.opset"

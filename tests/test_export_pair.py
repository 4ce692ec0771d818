"""export_pair: any encoder/decoder nn.Module pair meeting the contract goes through export's gates;
one that cannot is refused, naming the rule, before anything is written. The examples/ script runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "onnx")
import torch  # noqa: E402
from torch import nn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
H = W = 8
LATENT = 3


class Encoder(nn.Module):
    """(N, 3, 8, 8) -> (mu, logvar); `extra` returns a third output, `noisy` adds fresh noise."""

    def __init__(self, extra: bool = False, noisy: bool = False, branchy: bool = False, wide: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 4, stride=2, padding=1)
        self.head = nn.Linear(4 * 4 * 4, 2 * LATENT + (2 if wide else 0))
        self.extra, self.noisy, self.branchy = extra, noisy, branchy

    def forward(self, x):  # noqa: ANN001, ANN201
        h = torch.relu(self.conv(x)).flatten(1)
        if self.noisy:
            h = h + torch.randn_like(h)
        if self.branchy and float(x[0].max()) > 2.0:  # data-dependent Python control flow (never taken)
            h = -h
        mu, logvar = self.head(h).split([LATENT, self.head.out_features - LATENT], dim=1)
        return (mu, logvar, h) if self.extra else (mu, logvar)


class Decoder(nn.Module):
    """z -> logits (N, 3, 8, 8), or (logits, log_scale) with `scaled`."""

    def __init__(self, scaled: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(LATENT, 4 * 4 * 4)
        self.up = nn.ConvTranspose2d(4, 3 * (2 if scaled else 1), 4, stride=2, padding=1)
        self.scaled = scaled

    def forward(self, z):  # noqa: ANN001, ANN201
        out = self.up(torch.relu(self.fc(z)).view(-1, 4, 4, 4))
        return (out[:, :3], out[:, 3:] - 3.0) if self.scaled else out


def examples(n: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, H, W, 3), dtype=np.uint8)


def export(tmp: Path, encoder: nn.Module, decoder: nn.Module, likelihood: str = "gaussian") -> list[Path]:
    from edgevae.export import export_pair

    torch.manual_seed(0)
    return export_pair(
        encoder, decoder, tmp / "out", image_shape=(H, W), channels=3, latent=LATENT,
        likelihood=likelihood, example_images=examples(),
    )  # fmt: skip


@pytest.mark.parametrize("likelihood", ["gaussian", "discretized_logistic"])
def test_a_conforming_pair_exports_and_runs(tmp_path: Path, likelihood: str) -> None:
    from edgevae.runtime import VAE
    from edgevae.runtime.cli import main
    from edgevae.runtime.selftest import run_selftest

    torch.manual_seed(1)
    encoder, decoder = Encoder(), Decoder(scaled=likelihood == "discretized_logistic")
    paths = export(tmp_path, encoder, decoder, likelihood)
    written = {p.name for p in paths}
    assert written >= {"encoder.onnx", "decoder.int8.onnx", "golden.bin", "golden.json", "manifest.json"}
    for variant in ("fp32", "int8", "fp16", "b1", "ort"):
        vae = VAE(tmp_path / "out", device="cpu", variant=variant)
        assert run_selftest(vae).passed, variant
    vae = VAE(tmp_path / "out", device="cpu")
    x = examples(5)
    with torch.no_grad():
        mu, _ = encoder(torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2))
    np.testing.assert_allclose(vae.encode(x)[0], mu.numpy(), atol=1e-5)
    assert vae.sample(2, seed=0).shape == (2, H, W, 3)
    assert np.isfinite(vae.log_likelihood(x, k=4, seed=0)).all()
    assert main(["sample", "--model", str(tmp_path / "out"), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0


@pytest.mark.parametrize(
    ("encoder", "decoder", "rule"),
    [
        (lambda: Encoder(extra=True), Decoder, "the encoder returns (mu, logvar)"),
        (lambda: Encoder(wide=True), Decoder, "mu and logvar are (N, latent)"),
        (Encoder, lambda: Decoder(scaled=True), "the decoder returns logits (N, 3, 8, 8)"),
        (lambda: Encoder(noisy=True), Decoder, "deterministic modules"),
        (lambda: Encoder(branchy=True), Decoder, "no data-dependent control flow"),
        (lambda: lambda x: x, Decoder, "the encoder is a torch.nn.Module"),
    ],
    ids=["three-outputs", "wrong-shape", "decoder-outputs", "random-op", "control-flow", "not-a-module"],
)
def test_a_pair_that_breaks_the_contract_is_refused_before_writing(
    tmp_path: Path, encoder: object, decoder: object, rule: str
) -> None:
    from edgevae.export import ContractError

    with pytest.raises(ContractError) as err:
        export(tmp_path, encoder(), decoder())  # type: ignore[operator]
    assert f"breaks the contract rule '{rule}" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a training run and an export in a new process: about 40 s
def test_the_example_script_trains_and_exports(tmp_path: Path) -> None:
    out = tmp_path / "my_vae"
    cmd = [sys.executable, str(REPO / "examples" / "own_conv_vae.py"), "--out", str(out), "--images", "400"]
    result = subprocess.run([*cmd, "--epochs", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "epoch 2/2" in result.stdout and "exported to" in result.stdout
    from edgevae.runtime import VAE
    from edgevae.runtime.selftest import run_selftest

    assert run_selftest(VAE(out, device="cpu", variant="int8")).passed

"""The README's embed snippet, as a script: the packaged model through numpy + onnxruntime, no torch.

    python examples/embed.py   # on a device: pip install 'edgevae-0.1.0-py3-none-any.whl[cpu]' first

The import and the body of main() are the README's "Embed it (no torch)" block, line for line
(tests/test_readme.py keeps them equal and runs this file with torch blocked; tests/test_wheel.py
runs it in a clean venv with the wheel installed).
"""

from edgevae.runtime import VAE


def main() -> None:
    vae = VAE(device="auto")  # packaged model; CUDA when available, else CPU
    digits = vae.sample(16, seed=0)  # (16, 28, 28) float32 in [0, 1], same on every run and provider
    mu, logvar = vae.encode(digits)  # q(z|x); a draw z: vae.encode_z(digits, seed=1) or eps=eps
    recon = vae.reconstruct(digits)  # also: vae.decode(z), vae.interpolate(a, b, steps=10)
    ll = vae.log_likelihood(digits, k=100, seed=0)  # importance-weighted log p(x), nats per image
    unusual = vae.score(digits)  # .score (higher = more unusual), .nll, .complexity_nats, .density_nll
    large = VAE(model="large")  # the other packaged model: better likelihood, bigger
    small = VAE(variant="int8")  # 27% of the bytes, costs 0.093 nat
    print(recon.shape, ll.mean(), unusual.score.max(), large.latent, small.sample(4, seed=0).shape)


if __name__ == "__main__":
    main()

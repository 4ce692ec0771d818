"""How much could a learned prior give a trained model? Fit one to it and measure: `make prior-fit`.

    .venv/bin/python bench/prior_fit.py --data-dir ../shared/data/mnist [--checkpoints artifacts/checkpoints-large]

Keeps the encoder and decoder fixed and fits a mixture of K diagonal Gaussians (train/prior.py's
density) to the model's aggregate posterior q(z) = mean over the 60,000 training digits of q(z|x):
Adam on E_q(z)[log p(z)], the only term of the ELBO the prior enters (Hoffman & Johnson 2016: the
best prior for fixed networks is q(z) itself). The components start at the posteriors of K random
training digits. Then the importance-weighted bound (k, first 1000 test images binarized as
train/evaluate.py does) is computed under N(0, I) and under the fitted mixture with the same noise,
so their difference is the gain of the prior alone. Writes artifacts/prior_fit.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from edgevae.runtime.atomic import write_bytes_atomic
from edgevae.train.checkpoint import load_pair
from edgevae.train.data import load_split
from edgevae.train.evaluate import EVAL_SEED, prepare_eval_images
from edgevae.train.model import log_likelihood, log_normal, reparameterize
from edgevae.train.prior import log_mixture

REPO = Path(__file__).resolve().parents[1]


def posteriors(encoder: torch.nn.Module, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) of q(z|x) for every image, binarized once with `seed`."""
    x = torch.bernoulli(images, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        parts = [encoder(x[s : s + 2000]) for s in range(0, len(x), 2000)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def fit_mixture(mu: torch.Tensor, logvar: torch.Tensor, components: int, steps: int, lr: float) -> dict:
    """Means and log-variances (K, D) maximizing E_q(z)[log p(z)], z drawn 1000 at a time from q(z)."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randperm(len(mu), generator=gen)[:components]
    means, logvars = mu[start].clone().requires_grad_(True), logvar[start].clone().requires_grad_(True)
    opt = torch.optim.Adam([means, logvars], lr=lr)
    for step in range(steps):
        rows = torch.randint(0, len(mu), (1000,), generator=gen)
        z = reparameterize(mu[rows], logvar[rows], torch.randn(1000, mu.shape[1], generator=gen))
        loss = -log_mixture(z, means, logvars).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step}/{steps}: E_q[log p(z)] {-float(loss):.3f}", flush=True)
    return {"means": means.detach(), "logvars": logvars.detach()}


def expected_log_prior(mu: torch.Tensor, logvar: torch.Tensor, prior: dict | None) -> float:
    """E_q(z)[log p(z)] on 10,000 draws (fixed noise): N(0, I) when prior is None."""
    gen = torch.Generator().manual_seed(1)
    z = reparameterize(mu[:10000], logvar[:10000], torch.randn(len(mu[:10000]), mu.shape[1], generator=gen))
    with torch.no_grad():
        return float(log_density(z, prior).mean())


def log_density(z: torch.Tensor, prior: dict | None) -> torch.Tensor:
    if prior is None:
        return log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    return log_mixture(z, prior["means"].to(z.dtype), prior["logvars"].to(z.dtype))


@torch.no_grad()
def iw_nll(encoder, decoder, x: torch.Tensor, k: int, prior: dict | None) -> float:
    """-mean log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), noise from EVAL_SEED + 1 as train/evaluate.py."""
    gen = torch.Generator().manual_seed(EVAL_SEED + 1)
    total = 0.0
    for s in range(0, len(x), 20):
        xb = x[s : s + 20]
        mu, logvar = encoder(xb)
        z = reparameterize(mu, logvar, torch.randn((k, len(xb), mu.shape[1]), generator=gen))
        logits = decoder(z.reshape(-1, z.shape[-1])).reshape(k, len(xb), -1)
        z64 = z.double()
        log_w = (
            log_likelihood(xb.double().expand(k, -1, -1), logits.double(), encoder.config.likelihood)
            + log_density(z64, prior)
            - log_normal(z64, mu.double(), logvar.double())
        )
        total += float((torch.logsumexp(log_w, dim=0) - math.log(k)).sum())
    return -total / len(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="MNIST folder (required)")
    ap.add_argument("--checkpoints", default="artifacts/checkpoints-large", help="default: %(default)s")
    ap.add_argument("--components", type=int, default=500, help="mixture components K (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=800, help="Adam steps of 1000 draws (default: %(default)s)")
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default: %(default)s)")
    ap.add_argument("--k", type=int, default=1000, help="importance samples (default: %(default)s)")
    ap.add_argument("--images", type=int, default=1000, help="first N test images (default: %(default)s)")
    ap.add_argument("--out", default=str(REPO / "artifacts" / "prior_fit.json"), help="default: %(default)s")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    encoder, decoder = load_pair(args.checkpoints)
    train, _ = load_split(args.data_dir, "train")
    test, _ = load_split(args.data_dir, "test")
    as_rows = lambda a: torch.from_numpy(a.reshape(len(a), -1).copy()).float() / 255  # noqa: E731
    mu, logvar = posteriors(encoder, as_rows(train), EVAL_SEED + 2)
    prior = fit_mixture(mu, logvar, args.components, args.steps, args.lr)
    x = prepare_eval_images(as_rows(test[: args.images]), encoder.config.likelihood)
    standard, fitted = iw_nll(encoder, decoder, x, args.k, None), iw_nll(encoder, decoder, x, args.k, prior)
    result = {
        "checkpoints": args.checkpoints,
        "components": args.components,
        "steps": args.steps,
        "k": args.k,
        "images": args.images,
        "expected_log_prior": {
            "standard": expected_log_prior(mu, logvar, None),
            "fitted": expected_log_prior(mu, logvar, prior),
        },
        "nll": {"standard": standard, "fitted": fitted},
        "gain": standard - fitted,
        "minutes": (time.perf_counter() - t0) / 60,
    }
    write_bytes_atomic(Path(args.out), (json.dumps(result, indent=2) + "\n").encode())
    print(
        f"-log p(x), first {args.images} test images, k={args.k}: N(0, I) {standard:.2f}, fitted mixture "
        f"of {args.components} {fitted:.2f} (gain {standard - fitted:.2f} nat); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bounds on log p(x) and what they say of the latent space: the importance-weighted bound, active units.

The importance weights live here, apart from the `vae.evaluate` command; their log densities are
the distributions' own (vae/distributions.py), the ones the training objectives use. A model with
one stochastic layer is encoded once per batch and decoded image-major; one with several runs its
forward for each chunk of samples, and its weights are `vae.losses.log_weights`, the training bound's.
"""

from __future__ import annotations

import math

import torch

from vae.distributions import DiagonalGaussian
from vae.likelihoods import likelihood_of
from vae.losses import log_weights
from vae.model import VAE
from vae.runtime import autocast_context

# Decodes per call in the IWAE loop: on CPU, 512 keep the decoder's activations in the cache and
# are 3x faster than 4096 (experiments/bench/README.md); a GPU wants large calls.
DECODES_PER_CALL = {"cpu": 512, "cuda": 16384}


def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    posterior: DiagonalGaussian,
    eps: torch.Tensor,
    *,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for z = posterior.rsample(eps): eps (K, B, L) -> (K, B), in fp32.

    One stochastic layer: `posterior` is q(z|x) (fp32), the prior the model's. log p(x|z) is the model's
    likelihood's (`log_prob_samples`; the Bernoulli's is one batched matmul, so the K copies of x are
    never materialised). log q is computed from eps (`log_prob_of_noise`). Only the decoder runs under `autocast_dtype`:
    log p(x|z), a sum of hundreds of nats, is always summed in fp32 (in bf16 its 8-bit mantissa
    rounds it in steps of 2-4 nats, and log-sum-exp over such noisy weights biases the bound low).
    """
    num_samples, batch = eps.shape[:2]
    z = posterior.rsample(eps)  # (K, B, L)
    # Decode image-major, so each image's K outputs are one contiguous block.
    with autocast_context(str(x.device), autocast_dtype):
        params = model.decode(z.transpose(0, 1).reshape(batch * num_samples, -1))  # (B*K, P, H, W)
    with torch.autocast(device_type=x.device.type, enabled=False):  # fp32 even under an outer autocast
        params = params.float().reshape(batch, num_samples, *params.shape[1:])  # (B, K, P, H, W)
        log_px_z = likelihood_of(model).log_prob_samples(params, x.float())  # (B, K)
    log_pz = model.prior.log_prob(z)
    log_qz_x = posterior.log_prob_of_noise(eps)
    return log_px_z.t() + log_pz - log_qz_x


def model_log_weights(
    model, x: torch.Tensor, eps: torch.Tensor, *, autocast_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The log importance weights of any model from its forward: eps (K, B, sum(latent_dims)) -> (K, B), fp32."""
    with autocast_context(str(x.device), autocast_dtype):
        output = model(x, eps)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return log_weights(output.logits, x, output.layers, likelihood=likelihood_of(model))[0]


@torch.no_grad()
def iwae_log_likelihood(
    model: VAE,
    x: torch.Tensor,
    *,
    num_samples: int,
    chunk: int = 100,
    generator: torch.Generator | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Burda et al.'s bound log (1/K) sum_k p(x, z_k) / q(z_k|x) per image: (B,). K=1 is a one-sample ELBO.

    With several stochastic layers, every layer's p and q are in the weights.
    """
    device = x.device
    one_layer = len(model.latent_dims) == 1
    posterior = model.encode(x).float() if one_layer else None
    noise_shape = (x.shape[0], sum(model.latent_dims))
    weights = []
    for start in range(0, num_samples, chunk):
        count = min(chunk, num_samples - start)
        eps = torch.randn(count, *noise_shape, generator=generator).to(device)
        if one_layer:
            weights.append(log_importance_weights(model, x, posterior, eps, autocast_dtype=autocast_dtype))
        else:
            weights.append(model_log_weights(model, x, eps, autocast_dtype=autocast_dtype))
    weights = torch.cat(weights)  # (K, B)
    return torch.logsumexp(weights, 0) - math.log(num_samples)


@torch.no_grad()
def layer_posterior_means(model, x: torch.Tensor) -> list[torch.Tensor]:
    """Each stochastic layer's posterior mean (from x up), every layer drawn at its posterior mean (eps = 0).

    For the layers under the top one, E[z_l | x, z_>l] at the means above: a deterministic stand-in
    for E_q[z_l | x] (the two agree where q is narrow), so active units per layer count the units
    that move with x, not with the noise of the layers above.
    """
    output = model(x, torch.zeros(x.shape[0], sum(model.latent_dims), device=x.device))
    return [layer.posterior.mean.float() for layer in output.layers]


def active_units(mu: torch.Tensor, *, threshold: float = 0.01) -> int:
    """Latent dims whose posterior mean varies over the data: Var_x(E[z_u|x]) > threshold (Burda et al. 2015)."""
    return int((mu.var(0) > threshold).sum())

"""Bounds on log p(x) and what they say of the latent space: the importance-weighted bound, active units.

The importance weights live here, apart from the `vae.evaluate` command, so that training
objectives and evaluation use the same code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vae.model import VAE
from vae.runtime import autocast_context

LOG_2PI = math.log(2 * math.pi)


# Decodes per call in the IWAE loop: on CPU, 512 keep the decoder's activations in the cache and
# are 3x faster than 4096 (experiments/bench/README.md); a GPU wants large calls.
DECODES_PER_CALL = {"cpu": 512, "cuda": 16384}


def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    eps: torch.Tensor,
    *,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for z = mu + sigma * eps: eps (K, B, L) -> (K, B), in fp32.

    The Bernoulli likelihood is BCE with logits summed over pixels; on gray-level images it is
    the same bound under BCE on gray levels, not a likelihood. It is computed as
    log p(x|z) = sum_p x_p * l_p - softplus(l_p), the x-term one batched matmul, so the K copies
    of x are never materialised. Only the decoder runs under `autocast_dtype`: log p(x|z), a sum
    of hundreds of nats, is always summed in fp32 (in bf16 its 8-bit mantissa rounds it in
    steps of 2-4 nats, and log-sum-exp over such noisy weights biases the bound low).
    """
    num_samples, batch = eps.shape[:2]
    sigma = torch.exp(0.5 * log_var)
    z = mu.unsqueeze(0) + sigma.unsqueeze(0) * eps  # (K, B, L)
    # Decode image-major, so each image's K logits are one contiguous (K, P) block.
    with autocast_context(str(x.device), autocast_dtype):
        logits = model.decode(z.transpose(0, 1).reshape(batch * num_samples, -1))  # (B*K, C, H, W)
    with torch.autocast(device_type=x.device.type, enabled=False):  # fp32 even under an outer autocast
        logits = logits.float().reshape(batch, num_samples, -1)  # (B, K, P); a view for C = 1 or NCHW logits
        target = x.float().reshape(batch, -1, 1)  # (B, P, 1)
        log_px_z = torch.bmm(logits, target).squeeze(-1) - F.softplus(logits).sum(-1)  # (B, K)
    log_pz = (-0.5 * (z.pow(2) + LOG_2PI)).sum(-1)
    log_qz_x = (-0.5 * (eps.pow(2) + LOG_2PI) - 0.5 * log_var.unsqueeze(0)).sum(-1)
    return log_px_z.t() + log_pz - log_qz_x


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
    """Burda et al.'s bound log (1/K) sum_k p(x, z_k) / q(z_k|x) per image: (B,). K=1 is a one-sample ELBO."""
    device = x.device
    mu, log_var = model.encode(x)
    mu, log_var = mu.float(), log_var.float()
    log_weights = []
    for start in range(0, num_samples, chunk):
        count = min(chunk, num_samples - start)
        eps = torch.randn(count, *mu.shape, generator=generator).to(device)
        log_weights.append(log_importance_weights(model, x, mu, log_var, eps, autocast_dtype=autocast_dtype))
    log_weights = torch.cat(log_weights)  # (K, B)
    return torch.logsumexp(log_weights, 0) - math.log(num_samples)


def active_units(mu: torch.Tensor, *, threshold: float = 0.01) -> int:
    """Latent dims whose posterior mean varies over the data: Var_x(E[z_u|x]) > threshold (Burda et al. 2015)."""
    return int((mu.var(0) > threshold).sum())

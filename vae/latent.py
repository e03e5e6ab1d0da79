"""Views of the latent space as tensors: the decoded grid, and the dims that carry information."""

from __future__ import annotations

import torch
from torch.distributions import Normal
from torchvision.utils import make_grid

from vae.model import VAE


def grid_quantiles(grid_size: int, *, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """The lecture's grid coordinates: the Gaussian inverse CDF at linspace(low, high, grid_size)."""
    return Normal(0.0, 1.0).icdf(torch.linspace(low, high, grid_size, dtype=torch.float64)).float()


def grid_latents(
    grid_size: int, *, latent_dim: int, dims: tuple[int, int] = (0, 1), low: float = 0.05, high: float = 0.95
) -> torch.Tensor:
    """z for a grid_size x grid_size grid over `dims` (the other dims at 0): (grid_size**2, latent_dim).

    Row r, column c holds z[dims[0]] = q[c] and z[dims[1]] = q[grid_size - 1 - r], so the
    picture's y axis points up, as in a plot.
    """
    quantiles = grid_quantiles(grid_size, low=low, high=high)
    z = torch.zeros(grid_size, grid_size, latent_dim)
    z[:, :, dims[0]] = quantiles.view(1, -1)
    z[:, :, dims[1]] = quantiles.flip(0).view(-1, 1)
    return z.view(-1, latent_dim)


@torch.no_grad()
def decode_images(model: VAE, z: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """sigmoid(decoder(z)) on CPU as float32, in batches: (N, C, H, W)."""
    device = next(model.parameters()).device
    images = [torch.sigmoid(model.decode(chunk.to(device)).float()).cpu() for chunk in z.split(batch_size)]
    return torch.cat(images)


def decoded_grid(model: VAE, *, grid_size: int = 15, dims: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """The decoded latent grid as one image (C, H, W), tiles touching as in the lecture."""
    z = grid_latents(grid_size, latent_dim=model.latent_dim, dims=dims)
    return make_grid(decode_images(model, z), nrow=grid_size, padding=0)


def top_kl_dims(kl_per_dim: torch.Tensor, count: int = 2) -> list[int]:
    """Indices of the `count` latent dims with the largest mean KL, largest first."""
    return kl_per_dim.topk(min(count, kl_per_dim.numel())).indices.tolist()

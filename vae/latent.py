"""Views of the latent space as tensors: the decoded grid, and the dims that carry information.

They need one latent: for a model with several stochastic layers, the top one (the prior's N(0, I)
layer, the one `model.encode` returns and `model.decode` takes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Normal
from torchvision.utils import make_grid

from vae.distributions import DiagonalGaussian, StandardNormal
from vae.errors import ConfigError
from vae.likelihoods import likelihood_of
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
    """The mean images of decoder(z) (the model's likelihood's mean) on CPU as float32, in batches: (N, C, H, W)."""
    device = next(model.parameters()).device
    mean = likelihood_of(model).mean
    images = [mean(model.decode(chunk.to(device)).float()).cpu() for chunk in z.split(batch_size)]
    return torch.cat(images)


def decoded_grid(model: VAE, *, grid_size: int, dims: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """The decoded latent grid as one image (C, H, W), tiles touching as in the lecture."""
    z = grid_latents(grid_size, latent_dim=model.latent_dim, dims=dims)
    return make_grid(decode_images(model, z), nrow=grid_size, padding=0)


def layer_note(model) -> str:
    """What a one-latent view of `model` shows: nothing to add for one stochastic layer; for several, which layer.

    Views encode to the top layer (`model.encode`) and decode from it (`model.decode`, the lower
    layers at the mean of their priors), so their titles say so.
    """
    dims = tuple(getattr(model, "latent_dims", (model.latent_dim,)))
    if len(dims) == 1:
        return ""
    return f"; top layer z{len(dims)} of {len(dims)} (lower layers at their prior mean)"


def top_kl_dims(kl_per_dim: torch.Tensor, count: int = 2) -> list[int]:
    """Indices of the `count` latent dims with the largest mean KL, largest first."""
    return kl_per_dim.topk(min(count, kl_per_dim.numel())).indices.tolist()


@torch.no_grad()
def encode_images(model: VAE, images: torch.Tensor, *, batch_size: int = 1000) -> DiagonalGaussian:
    """The (top layer's) posterior of uint8 or [0, 1] images, on CPU in fp32: mean and log_var (N, latent_dim)."""
    device = next(model.parameters()).device
    mus, log_vars = [], []
    for batch in images.split(batch_size):
        x = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
        posterior = model.encode(x.to(device))
        mus.append(posterior.mean.float().cpu())
        log_vars.append(posterior.log_var.float().cpu())
    return DiagonalGaussian(torch.cat(mus), torch.cat(log_vars))


def mean_kl_per_dim(posterior: DiagonalGaussian) -> torch.Tensor:
    """KL(q(z|x) || N(0, 1)) of each latent dim, averaged over the images: (latent_dim,)."""
    return posterior.kl(StandardNormal(posterior.dim)).mean(0)


def interpolate(z_start: torch.Tensor, z_end: torch.Tensor, steps: int, *, method: str = "linear") -> torch.Tensor:
    """Points from z_start to z_end inclusive: (steps, latent_dim). `slerp` follows the great circle."""
    t = torch.linspace(0.0, 1.0, steps, dtype=z_start.dtype).view(-1, 1)
    if method == "linear":
        return (1 - t) * z_start + t * z_end
    if method != "slerp":
        raise ValueError(f"method must be linear or slerp (got {method!r})")
    cos_angle = torch.dot(z_start, z_end) / (z_start.norm() * z_end.norm()).clamp(min=1e-12)
    angle = torch.arccos(cos_angle.clamp(-1.0, 1.0))
    if angle.abs() < 1e-6:  # (anti)parallel ends: the great circle is undefined, a line is the limit
        return (1 - t) * z_start + t * z_end
    path = (torch.sin((1 - t) * angle) * z_start + torch.sin(t * angle) * z_end) / torch.sin(angle)
    path[0], path[-1] = z_start, z_end  # exact ends, whatever the rounding
    return path


def class_mean_latents(mu: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The average latent of each class: (num_classes, latent_dim); NaN rows for absent classes."""
    means = torch.full((num_classes, mu.shape[1]), float("nan"))
    for label in range(num_classes):
        members = mu[labels == label]
        if len(members):
            means[label] = members.mean(0)
    return means


def attribute_vector(mu: torch.Tensor, has_attribute: torch.Tensor) -> torch.Tensor:
    """s = mean latent of the images with the attribute minus the mean latent of the rest (the lecture's edit)."""
    if has_attribute.all() or not has_attribute.any():
        raise ValueError("an attribute vector needs images with and without the attribute")
    return mu[has_attribute].mean(0) - mu[~has_attribute].mean(0)


def edit_latents(mu: torch.Tensor, direction: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """mu + k * s for every image and every k: (N, len(ks), latent_dim)."""
    return mu.unsqueeze(1) + ks.view(1, -1, 1) * direction.view(1, 1, -1)


def thick_strokes(images: torch.Tensor) -> torch.Tensor:
    """The pixel attribute "thick strokes": ink mass (sum of intensities) above the median."""
    ink = images.float().flatten(1).sum(1)
    return ink > ink.median()


def project_2d(
    mu: torch.Tensor, *, kl_per_dim: torch.Tensor | None = None, method: str = "auto"
) -> tuple[torch.Tensor, str]:
    """Two coordinates per image for a scatter: the latent itself at latent_dim 2, else PCA (or the top-KL dims)."""
    if mu.shape[1] == 2:
        return mu, "z[0], z[1]"
    if method == "top_kl" and kl_per_dim is not None:
        dims = top_kl_dims(kl_per_dim)
        return mu[:, dims], f"z[{dims[0]}], z[{dims[1]}] (largest KL)"
    centred = mu - mu.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, "PC 1, PC 2 of mu"


@dataclass
class AttributeSource:
    """Where the attribute vectors come from: a split's images and, per attribute, which of them have it."""

    split: str  # the split's name, said in the figures' titles
    images: torch.Tensor  # (N, C, H, W) uint8
    groups: dict[str, tuple[torch.Tensor, str]]  # file-name part -> (has the attribute, (N,) bool; its title)


def attribute_source(
    splits, *, attribute: str | None = None, attribute_class: int = 0, val_source: str = "holdout"
) -> AttributeSource:
    """An attribute from the validation split, the rule `vae.explore` and `vae.serve` share: a data set's named
    attribute (CelebA's; `attribute`, default Smiling), else a class (by name or number, or `attribute_class`)
    against the rest and thick strokes against thin. A value that names none raises ConfigError naming it."""
    val = splits.val
    names = splits.attribute_names
    if names:  # a data set with labelled attributes (CelebA)
        name = attribute or ("Smiling" if "Smiling" in names else names[0])
        if name not in names:
            raise ConfigError(f"attribute must be one of the data set's attributes: {', '.join(names)} (got {name!r})")
        return AttributeSource("validation", val.images, {name: (val.attributes[:, names.index(name)], name)})
    class_names = splits.class_names
    if attribute is None:
        index = attribute_class
    elif attribute in class_names:
        index = class_names.index(attribute)
    else:
        index = int(attribute) if attribute.lstrip("-").isdigit() else -1
    if not 0 <= index < len(class_names):
        key, value = ("attribute", attribute) if attribute is not None else ("attribute_class", attribute_class)
        choices = ", ".join(f"{i} ({c})" for i, c in enumerate(class_names))
        raise ConfigError(f"{key} must be a class: {choices} (got {value!r})")
    split = "validation = test (the lecture's protocol)" if val_source == "test" else "validation"
    return AttributeSource(
        split,
        val.images,
        {
            f"class_{index}": (val.labels == index, f"class {class_names[index]}"),
            "thick_strokes": (thick_strokes(val.images), "thick strokes"),
        },
    )

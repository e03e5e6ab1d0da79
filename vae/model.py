"""The VAE: an encoder to the posterior q(z|x), the reparameterization, a decoder to logits.

The convolutional model is the lecture's *intended* network (Shusen Wang's Keras VAE):
its code feeds conv2's output to conv4 (conv3 is dead) and ends the decoder in a ReLU,
which cannot be a Bernoulli mean. Here the convs run in sequence and the decoder returns
logits; images are `sigmoid(logits)`. The model computes no loss (see `vae.losses`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from vae.distributions import DiagonalGaussian, LatentLayer, StandardNormal
from vae.layers import ConvTranspose2d, FewChannelsConv2d
from vae.likelihoods import likelihood_of


class VAEOutput(NamedTuple):
    """A model's forward: the decoder's logits and one `LatentLayer` (posterior, prior, z) per stochastic layer.

    `layers` runs from the layer next to x up to the top one, whose prior is N(0, I); `mu`, `log_var`,
    `z` and `posterior` are the top layer's, for callers that need one latent.
    """

    logits: (
        torch.Tensor
    )  # (B, C, H, W), or (K, B, C, H, W) for K samples: Bernoulli logits / Gaussian mean before sigmoid
    layers: tuple[LatentLayer, ...]

    @property
    def posterior(self) -> DiagonalGaussian:
        return self.layers[-1].posterior

    @property
    def mu(self) -> torch.Tensor:
        return self.layers[-1].posterior.mean  # (B, L)

    @property
    def log_var(self) -> torch.Tensor:
        return self.layers[-1].posterior.log_var  # (B, L)

    @property
    def z(self) -> torch.Tensor:
        return self.layers[-1].z  # (B, L) or (K, B, L)


class FlattenHWC(nn.Module):
    """Flatten (B, C, H, W) in (H, W, C) order, as Keras' Flatten does: a view for channels_last input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)  # (B, H * W * C)


def _downsampled(size: int) -> int:
    """Spatial size after a 3x3 conv with stride 2 and padding 1 ("same" in Keras)."""
    return (size + 1) // 2


class ConvEncoder(nn.Module):
    """Convs in sequence (the second with stride 2), a dense layer, then mu and log_var."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: tuple[int, ...],
        hidden_dim: int,
    ):
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 entries (got {list(channels)})")
        in_channels, height, width = image_shape
        layers: list[nn.Module] = []
        for index, out_channels in enumerate(channels):
            stride = 2 if index == 1 else 1
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.feature_shape = (channels[-1], _downsampled(height), _downsampled(width))
        self.dense = nn.Sequential(
            FlattenHWC(), nn.Linear(math.prod(self.feature_shape), hidden_dim), nn.ReLU(inplace=True)
        )
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.log_var = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        hidden = self.dense(self.convs(x))  # (B, hidden_dim)
        return DiagonalGaussian(self.mu(hidden), self.log_var(hidden))  # (B, latent_dim) each


class ConvDecoder(nn.Module):
    """Dense layers up to the encoder's feature map, a stride-2 transposed conv, a conv to logits."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: tuple[int, ...],
        hidden_dim: int,
    ):
        super().__init__()
        out_channels, height, width = image_shape
        self.feature_shape = (channels[-1], _downsampled(height), _downsampled(width))
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, math.prod(self.feature_shape)),
            nn.ReLU(inplace=True),
        )
        _, feature_h, feature_w = self.feature_shape
        # A stride-2 transposed conv gives 2h - 1 rows; output_padding adds the last one for
        # even sizes, so every input size comes back exactly.
        output_padding = (height - (2 * feature_h - 1), width - (2 * feature_w - 1))
        self.upsample = nn.Sequential(
            ConvTranspose2d(channels[-1], channels[0], 3, stride=2, padding=1, output_padding=output_padding),
            nn.ReLU(inplace=True),
        )
        self.to_logits = FewChannelsConv2d(channels[0], out_channels, 3, padding=1)

    @property
    def output_bias(self) -> torch.Tensor:
        """The last conv's bias: one logit offset per channel, (C,)."""
        return self.to_logits.bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.feature_shape
        # The dense output is in (H, W, C) order: the permuted view is channels_last, no copy.
        features = self.dense(z).view(-1, height, width, channels).permute(0, 3, 1, 2)  # (B, C_f, H/2, W/2)
        return self.to_logits(self.upsample(features))  # (B, C, H, W)


# model.activation -> the module: one table for every model (the config accepts these names).
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "elu": nn.ELU}


def _hidden_layers(width: int, hidden_dims, activation: str) -> tuple[list[nn.Module], int]:
    """Linear + activation for each hidden width in turn, from `width`; returns the layers and the last width."""
    layers: list[nn.Module] = []
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    return layers, width


class MLPEncoder(nn.Module):
    """Kingma & Welling's encoder: flatten, hidden layers (ReLU or tanh), then mu and log_var."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        hidden_dims: tuple[int, ...],
        activation: str = "relu",
    ):
        super().__init__()
        layers, width = _hidden_layers(math.prod(image_shape), hidden_dims, activation)
        self.body = nn.Sequential(nn.Flatten(), *layers)
        self.mu = nn.Linear(width, latent_dim)
        self.log_var = nn.Linear(width, latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        hidden = self.body(x)  # (B, hidden)
        return DiagonalGaussian(self.mu(hidden), self.log_var(hidden))  # (B, latent_dim) each


class MLPDecoder(nn.Module):
    """The mirror of MLPEncoder, ending in one logit per pixel."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        hidden_dims: tuple[int, ...],
        activation: str = "relu",
    ):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers, width = _hidden_layers(latent_dim, reversed(hidden_dims), activation)
        layers.append(nn.Linear(width, math.prod(image_shape)))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.image_shape)  # (B, C, H, W)

    @property
    def output_bias(self) -> torch.Tensor:
        """The last layer's bias: one logit offset per pixel value, (C * H * W,)."""
        return self.body[-1].bias


class VAE(nn.Module):
    """Encoder -> q(z|x) -> reparameterized z -> decoder, with the prior N(0, I): one stochastic layer.

    What the trainer and the tools ask of a model (another model, e.g. with several stochastic
    layers, provides the same): `forward(x, eps)` -> `VAEOutput` (eps: the reparameterization noise
    of every layer side by side, (B, sum(latent_dims)) or (K, B, sum(latent_dims))); `latent_dims`, each
    layer's size from x up; `latent_dim`, the top layer's; `encode(x)`, the top layer's posterior;
    `decode(z)`, logits from a top-layer z; `sample(n)`, images from the prior; `prior`, the top
    layer's prior (the evaluation bound of a one-layer model reads it).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, latent_dim: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = StandardNormal(latent_dim)  # a learned prior would go here (vae/distributions.py)
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)

    @property
    def latent_dims(self) -> tuple[int, ...]:
        return (self.latent_dim,)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """The posterior q(z|x): mean and log_var, each (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of the images decoded from z; `torch.sigmoid` of them is the image."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> VAEOutput:
        """One z per image (eps (B, L) or None), or K per image (eps (K, B, L): logits (K, B, C, H, W), z (K, B, L))."""
        posterior = self.encode(x)
        z = posterior.rsample(eps)  # the lecture's sampling layer: z = mu + exp(0.5 log_var) * eps
        if z.dim() == 2:
            return VAEOutput(self.decode(z), (LatentLayer(posterior, self.prior, z),))
        logits = self.decode(z.reshape(-1, z.shape[-1]))  # sample-major: (K * B, C, H, W)
        return VAEOutput(logits.view(*z.shape[:2], *logits.shape[1:]), (LatentLayer(posterior, self.prior, z),))

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images decoded from z ~ N(0, temperature^2 I), values in [0, 1]."""
        device = next(self.parameters()).device
        z = self.prior.sample(num_samples, generator=generator, device=device)
        return likelihood_of(self).mean(self.decode(z * temperature).float())


def init_glorot(module: nn.Module) -> None:
    """Keras' default initialisation: glorot-uniform weights, zero biases.

    With PyTorch's default (kaiming-uniform with a=sqrt(5), uniform biases) the lecture's
    network sits at the mean image for epochs; experiments/lecture/README.md measures why.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


# The pixel means are clipped before the logit: some MNIST pixels are 0 in every training image.
OUTPUT_BIAS_CLIP = 1e-3


@torch.no_grad()
def init_output_bias(model: VAE, pixel_means: torch.Tensor) -> None:
    """Start the decoder at the data's mean image: its last bias = logit of the means clipped to [1e-3, 1 - 1e-3].

    `pixel_means` is (C, H, W) in [0, 1]; the conv decoder, with one bias per channel, takes each
    channel's mean. Burda et al. (2015) start their MLPs so.
    """
    bias = model.decoder.output_bias
    means = pixel_means.float().reshape(pixel_means.shape[0], -1)  # (C, H * W)
    means = means.flatten() if bias.numel() == means.numel() else means.mean(1)
    if means.numel() != bias.numel():
        raise ValueError(f"pixel means of shape {tuple(pixel_means.shape)} do not fit an output bias of {bias.numel()}")
    bias.copy_(torch.logit(means.clamp(OUTPUT_BIAS_CLIP, 1 - OUTPUT_BIAS_CLIP)).to(bias.dtype))


def output_shape(image_shape: tuple[int, ...], output_channels: int | None) -> tuple[int, int, int]:
    """The decoder's output: the image's height and width, with the channels the likelihood reads (default: the image's)."""
    channels, height, width = (int(v) for v in image_shape)
    return (int(output_channels) if output_channels is not None else channels, height, width)


def conv_vae(
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    channels: tuple[int, ...],
    hidden_dim: int,
    output_channels: int | None = None,
) -> VAE:
    """The lecture's convolutional VAE for images of `image_shape` (C, H, W), with PyTorch's initialisation; its
    decoder outputs `output_channels` maps (the likelihood's parameters; default C)."""
    image_shape = tuple(int(s) for s in image_shape)
    kwargs = dict(image_shape=image_shape, latent_dim=latent_dim, channels=tuple(channels), hidden_dim=hidden_dim)
    encoder = ConvEncoder(**kwargs)  # built first, as before: the same draws of torch's RNG, the same initial weights
    decoder = ConvDecoder(**{**kwargs, "image_shape": output_shape(image_shape, output_channels)})
    return VAE(encoder, decoder, latent_dim=latent_dim, image_shape=image_shape)


def mlp_vae(
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    hidden_dims: tuple[int, ...],
    activation: str = "relu",
    output_channels: int | None = None,
) -> VAE:
    """Kingma & Welling's MLP VAE for images of `image_shape` (C, H, W), with PyTorch's initialisation; its
    decoder outputs `output_channels` maps (default C)."""
    image_shape = tuple(int(s) for s in image_shape)
    kwargs = dict(image_shape=image_shape, latent_dim=latent_dim, hidden_dims=tuple(hidden_dims), activation=activation)
    encoder = MLPEncoder(**kwargs)  # built first, as before: the same draws of torch's RNG, the same initial weights
    decoder = MLPDecoder(**{**kwargs, "image_shape": output_shape(image_shape, output_channels)})
    return VAE(encoder, decoder, latent_dim=latent_dim, image_shape=image_shape)

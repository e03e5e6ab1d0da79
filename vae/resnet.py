"""Residual conv encoders and decoders: `model=resnet` (one stochastic layer) and the feature maps of `model=hvae`.

A stage halves the image (a 3x3 conv with stride 2, "same" padding: 28 -> 14 -> 7, 64 -> 32 -> 16 -> 8)
and then runs `blocks` residual blocks at its width. Each block is pre-activation,
x + alpha * conv(act(conv(act(x)))), with no normalization (batch statistics would couple the K
samples of an importance-weighted batch and differ between training and evaluation) and alpha a
learned scalar that starts at 0 (ReZero, Bachlechner et al. 2021): every block starts as the
identity, whatever `model.init` does to the convs, so a deep stack trains from the first step.
The decoder mirrors the encoder: a nearest-neighbour upsampling to the encoder's size at that
stage (so odd sizes such as 7 -> 14 -> 28 come back exactly) and a conv, then the stage's blocks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vae.distributions import DiagonalGaussian
from vae.layers import FewChannelsConv2d
from vae.model import ACTIVATIONS, VAE, output_shape


def _halved(size: int) -> int:
    """Spatial size after a 3x3 conv with stride 2 and padding 1."""
    return (size + 1) // 2


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """(height, width) of the image and after each of `stages` halvings: [(28, 28), (14, 14), (7, 7)] for 2."""
    sizes = [(height, width)]
    for _ in range(stages):
        sizes.append((_halved(sizes[-1][0]), _halved(sizes[-1][1])))
    return sizes


class ResidualBlock(nn.Module):
    """x + alpha * conv3x3(act(conv3x3(act(x)))), alpha a learned scalar starting at 0 (the block starts as x)."""

    def __init__(self, channels: int, activation: str):
        super().__init__()
        self.body = nn.Sequential(
            ACTIVATIONS[activation](),
            nn.Conv2d(channels, channels, 3, padding=1),
            ACTIVATIONS[activation](),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.body(x)


class ResNetFeatures(nn.Module):
    """The encoder's bottom-up path: image (B, C, H, W) -> a flat feature vector (B, features)."""

    def __init__(self, *, image_shape: tuple[int, int, int], channels: tuple[int, ...], blocks: int, activation: str):
        super().__init__()
        if not channels:
            raise ValueError("model.channels needs at least one stage")
        in_channels, height, width = image_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers.append(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1))
            layers += [ResidualBlock(out_channels, activation) for _ in range(blocks)]
            in_channels = out_channels
        layers += [ACTIVATIONS[activation](), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        final_h, final_w = stage_sizes(height, width, len(channels))[-1]
        self.features = channels[-1] * final_h * final_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResNetImageDecoder(nn.Module):
    """A flat vector (N, in_features) -> logits (N, C, H, W): a dense layer to the smallest map, then the stages upward."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        in_features: int,
        channels: tuple[int, ...],
        blocks: int,
        activation: str,
    ):
        super().__init__()
        out_channels, height, width = image_shape
        sizes = stage_sizes(height, width, len(channels))
        self.start_shape = (channels[-1], *sizes[-1])
        self.dense = nn.Sequential(nn.Linear(in_features, math.prod(self.start_shape)), ACTIVATIONS[activation]())
        layers: list[nn.Module] = []
        widths = list(channels)
        for stage in reversed(range(len(channels))):
            layers += [ResidualBlock(widths[stage], activation) for _ in range(blocks)]
            below = widths[stage - 1] if stage > 0 else widths[0]
            layers += [
                nn.Upsample(size=sizes[stage], mode="nearest"),
                nn.Conv2d(widths[stage], below, 3, padding=1),
            ]
        layers.append(ACTIVATIONS[activation]())
        self.body = nn.Sequential(*layers)
        self.to_logits = FewChannelsConv2d(widths[0], out_channels, 3, padding=1)

    @property
    def output_bias(self) -> torch.Tensor:
        """The last conv's bias: one logit offset per channel, (C,)."""
        return self.to_logits.bias

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        features = self.dense(h).view(-1, *self.start_shape)  # (N, C_last, h, w)
        return self.to_logits(self.body(features))  # (N, C, H, W)


class ResNetEncoder(nn.Module):
    """ResNetFeatures, a dense layer, then mu and log_var: the posterior q(z|x)."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: tuple[int, ...],
        blocks: int,
        hidden_dim: int,
        activation: str,
    ):
        super().__init__()
        self.features = ResNetFeatures(image_shape=image_shape, channels=channels, blocks=blocks, activation=activation)
        self.dense = nn.Sequential(nn.Linear(self.features.features, hidden_dim), ACTIVATIONS[activation]())
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.log_var = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        hidden = self.dense(self.features(x))  # (B, hidden_dim)
        return DiagonalGaussian(self.mu(hidden), self.log_var(hidden))


class ResNetDecoder(nn.Module):
    """z (N, latent_dim) -> a dense layer -> ResNetImageDecoder -> logits (N, C, H, W)."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: tuple[int, ...],
        blocks: int,
        hidden_dim: int,
        activation: str,
    ):
        super().__init__()
        self.dense = nn.Sequential(nn.Linear(latent_dim, hidden_dim), ACTIVATIONS[activation]())
        self.image = ResNetImageDecoder(
            image_shape=image_shape, in_features=hidden_dim, channels=channels, blocks=blocks, activation=activation
        )

    @property
    def output_bias(self) -> torch.Tensor:
        return self.image.output_bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.image(self.dense(z))


def resnet_vae(
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    channels: tuple[int, ...],
    blocks: int,
    hidden_dim: int,
    activation: str = "silu",
    output_channels: int | None = None,
) -> VAE:
    """A one-layer VAE with a residual conv encoder and decoder, for images of `image_shape` (C, H, W); its
    decoder outputs `output_channels` maps (default C)."""
    image_shape = tuple(int(s) for s in image_shape)
    kwargs = dict(
        image_shape=image_shape,
        latent_dim=latent_dim,
        channels=tuple(channels),
        blocks=blocks,
        hidden_dim=hidden_dim,
        activation=activation,
    )
    encoder = ResNetEncoder(**kwargs)  # built first, as before: the same draws of torch's RNG, the same initial weights
    decoder = ResNetDecoder(**{**kwargs, "image_shape": output_shape(image_shape, output_channels)})
    return VAE(encoder, decoder, latent_dim=latent_dim, image_shape=image_shape)

"""The VAE: an encoder to (mu, log_var), the reparameterization, a decoder to logits.

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

# log_var is clamped to this range before exp(): sigma from about 3e-7 to 2e4. Outside it
# exp() over- or underflows in bf16/fp32 and one bad batch turns the run into NaN.
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 20.0


class VAEOutput(NamedTuple):
    logits: torch.Tensor  # (B, C, H, W): Bernoulli logits / Gaussian mean before sigmoid
    mu: torch.Tensor  # (B, L)
    log_var: torch.Tensor  # (B, L)
    z: torch.Tensor  # (B, L)


class Reparameterize(nn.Module):
    """The lecture's sampling network: sigma = exp(0.5 log_var), z = mu + sigma * eps."""

    def forward(self, mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        if eps is None:
            eps = torch.randn_like(mu)
        sigma = torch.exp(0.5 * log_var)
        return mu + sigma * eps


class ConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` with its bias added after the convolution instead of inside it.

    Same parameters and result; on CPU, oneDNN's deconvolution computes the bias gradient
    about 80x slower than a sum over (B, H, W) (11 ms against 0.14 ms at batch 128 for the
    lecture decoder's layer, most of its backward); experiments/bench/README.md measures it.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        output_padding = self._output_padding(
            x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        y = nn.functional.conv_transpose2d(
            x, self.weight, None, self.stride, self.padding, output_padding, self.groups, self.dilation
        )
        # In place: y is this layer's own output, which autograd does not keep; bf16 stays bf16 under autocast.
        return y if self.bias is None else y.add_(self.bias.to(y.dtype).view(1, -1, 1, 1))


class FewChannelsConv2d(nn.Conv2d):
    """`nn.Conv2d` for few output channels (the decoder's last layer), computed as a grouped conv and a sum.

    Same parameters and result: out[o] = sum_c conv(x[c], w[o, c]) + b[o], done as a depthwise
    conv with `out_channels` filters per input channel, then a sum over the input channels.
    oneDNN's kernels are built for many output channels; with one they run this layer (32 -> 1,
    3x3) at a few percent of the machine's rate, and this form is about twice as fast forward and
    backward on CPU (experiments/bench/README.md).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups != 1 or self.padding_mode != "zeros":
            return super().forward(x)
        out_channels, in_channels = self.out_channels, self.in_channels
        # (O, C, kh, kw) -> (C * O, 1, kh, kw): filter c * O + o is w[o, c].
        weight = self.weight.transpose(0, 1).reshape(in_channels * out_channels, 1, *self.kernel_size)
        per_channel = nn.functional.conv2d(x, weight, None, self.stride, self.padding, self.dilation, in_channels)
        batch, _, height, width = per_channel.shape
        y = per_channel.view(batch, in_channels, out_channels, height, width).sum(1)  # (B, O, H, W)
        return y if self.bias is None else y.add_(self.bias.to(y.dtype).view(1, -1, 1, 1))


class FlattenHWC(nn.Module):
    """Flatten (B, C, H, W) in (H, W, C) order, as Keras' Flatten does: a view for channels_last input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)  # (B, H * W * C)


def _downsampled(size: int) -> int:
    """Spatial size after a 3x3 conv with stride 2 and padding 1 ("same" in Keras)."""
    return (size + 1) // 2


class ConvEncoder(nn.Module):
    """Convs in sequence (the second with stride 2), a dense layer, then mu and log_var."""

    _version = 2  # 2: the dense layer reads the feature map in (H, W, C) order (1: (C, H, W))

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: tuple[int, ...] = (32, 64, 64, 64),
        hidden_dim: int = 32,
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

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        key = prefix + "dense.1.weight"
        if local_metadata.get("version") == 1 and key in state_dict:  # written before the (H, W, C) order
            weight = state_dict[key]  # (hidden, C * H * W)
            state_dict[key] = weight.view(weight.shape[0], *self.feature_shape).permute(0, 2, 3, 1).flatten(1)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.dense(self.convs(x))  # (B, hidden_dim)
        return self.mu(hidden), self.log_var(hidden).clamp(LOG_VAR_MIN, LOG_VAR_MAX)


class ConvDecoder(nn.Module):
    """Dense layers up to the encoder's feature map, a stride-2 transposed conv, a conv to logits."""

    _version = 2  # 2: the last dense layer writes the feature map in (H, W, C) order (1: (C, H, W))

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        channels: tuple[int, ...] = (32, 64, 64, 64),
        hidden_dim: int = 32,
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

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        if local_metadata.get("version") == 1:  # written before the (H, W, C) order
            weight, bias = prefix + "dense.2.weight", prefix + "dense.2.bias"
            if weight in state_dict:  # (C * H * W, hidden)
                rows = state_dict[weight]
                state_dict[weight] = rows.view(*self.feature_shape, -1).permute(1, 2, 0, 3).reshape(rows.shape)
            if bias in state_dict:
                state_dict[bias] = state_dict[bias].view(self.feature_shape).permute(1, 2, 0).flatten()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.feature_shape
        # The dense output is in (H, W, C) order: the permuted view is channels_last, no copy.
        features = self.dense(z).view(-1, height, width, channels).permute(0, 3, 1, 2)  # (B, C_f, H/2, W/2)
        return self.to_logits(self.upsample(features))  # (B, C, H, W)


class MLPEncoder(nn.Module):
    """Kingma & Welling's encoder: flatten, ReLU hidden layers, then mu and log_var."""

    def __init__(self, *, image_shape: tuple[int, int, int], latent_dim: int, hidden_dims: tuple[int, ...] = (400,)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(image_shape)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.mu = nn.Linear(width, latent_dim)
        self.log_var = nn.Linear(width, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(x)  # (B, hidden)
        return self.mu(hidden), self.log_var(hidden).clamp(LOG_VAR_MIN, LOG_VAR_MAX)


class MLPDecoder(nn.Module):
    """The mirror of MLPEncoder, ending in one logit per pixel."""

    def __init__(self, *, image_shape: tuple[int, int, int], latent_dim: int, hidden_dims: tuple[int, ...] = (400,)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for hidden in reversed(hidden_dims):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, math.prod(image_shape)))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.image_shape)  # (B, C, H, W)


class VAE(nn.Module):
    """Encoder -> (mu, log_var) -> Reparameterize -> decoder; forward returns logits and the posterior."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, latent_dim: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.encoder = encoder
        self.reparameterize = Reparameterize()
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's parameters (mu, log_var), each (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of the images decoded from z; `torch.sigmoid` of them is the image."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> VAEOutput:
        mu, log_var = self.encode(x)
        z = self.reparameterize(mu, log_var, eps)
        return VAEOutput(self.decode(z), mu, log_var, z)

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images decoded from z ~ N(0, temperature^2 I), values in [0, 1]."""
        device = next(self.parameters()).device
        z = torch.randn(num_samples, self.latent_dim, generator=generator, device="cpu").to(device)
        return torch.sigmoid(self.decode(z * temperature).float())


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


def build_vae(
    *,
    name: str,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    init: str = "glorot",
    channels: tuple[int, ...] = (32, 64, 64, 64),
    hidden_dim: int = 32,
    hidden_dims: tuple[int, ...] = (400,),
) -> VAE:
    """A conv or MLP VAE for images of `image_shape` (C, H, W)."""
    image_shape = tuple(int(s) for s in image_shape)
    if name == "conv":
        kwargs = dict(image_shape=image_shape, latent_dim=latent_dim, channels=tuple(channels), hidden_dim=hidden_dim)
        encoder, decoder = ConvEncoder(**kwargs), ConvDecoder(**kwargs)
    elif name == "mlp":
        kwargs = dict(image_shape=image_shape, latent_dim=latent_dim, hidden_dims=tuple(hidden_dims))
        encoder, decoder = MLPEncoder(**kwargs), MLPDecoder(**kwargs)
    else:
        raise ValueError(f"model.name must be conv or mlp (got {name!r})")
    model = VAE(encoder, decoder, latent_dim=latent_dim, image_shape=image_shape)
    if init == "glorot":
        init_glorot(model)
    elif init != "torch":
        raise ValueError(f"model.init must be glorot or torch (got {init!r})")
    return model

"""`model=hvae`: a hierarchy of stochastic layers with top-down inference (Ladder VAE, Sønderby et al. 2016; NVAE).

Layers z_1 (next to x) ... z_L (the top, `latent_dim`, under the prior N(0, I)); the sizes of z_1 ..
z_{L-1} are `model.lower_latent_dims`, from x up. Both passes share one top-down path, as in the
bidirectional encoder of Ladder VAE and NVAE:

- bottom-up (inference only): x -> residual conv features (vae.resnet) -> d_1 -> d_2 ... -> d_L,
  one dense layer each;
- top-down (shared): s_L = f(z_L); for l = L-1 .. 1 the prior p(z_l | z_{>l}) is a diagonal
  Gaussian computed from s_{l+1}, the posterior q(z_l | x, z_{>l}) one computed from [d_l, s_{l+1}]
  (bottom-up features with the top-down state the generative model uses), and
  s_l = s_{l+1} + g([s_{l+1}, z_l]) (a residual step); q(z_L | x) is computed from d_L;
- the residual conv decoder (vae.resnet) maps s_1 to the logits of p(x | z).

The model's output lists one `LatentLayer` per stochastic layer (from x up); the ELBO sums their
KLs (each in closed form: against N(0, I) for the top, between the two Gaussians below it), the
IWAE log-weights sum their log-densities. `encode` and `decode` are the top layer's, for the tools
that show one latent: `decode(z)` puts every lower layer at its prior mean.
"""

from __future__ import annotations

import torch
from torch import nn

from vae.distributions import DiagonalGaussian, LatentLayer, StandardNormal
from vae.likelihoods import likelihood_of
from vae.model import VAEOutput, output_shape
from vae.resnet import ACTIVATIONS, ResNetFeatures, ResNetImageDecoder


def _gaussian(parameters: torch.Tensor) -> DiagonalGaussian:
    mean, log_var = parameters.chunk(2, -1)
    return DiagonalGaussian(mean, log_var)


class HierarchicalVAE(nn.Module):
    """The model of the module docstring; `forward(x, eps)` -> VAEOutput, eps (B, sum(latent_dims)) or (K, B, ...)."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        latent_dims: tuple[int, ...],
        channels: tuple[int, ...],
        blocks: int,
        hidden_dim: int,
        activation: str = "silu",
        output_channels: int | None = None,
    ):
        super().__init__()
        if len(latent_dims) < 2:
            raise ValueError(f"model=hvae needs at least 2 stochastic layers (got latent dims {list(latent_dims)})")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dims = tuple(int(d) for d in latent_dims)
        self.latent_dim = self.latent_dims[-1]
        act = ACTIVATIONS[activation]
        self.features = ResNetFeatures(
            image_shape=self.image_shape, channels=channels, blocks=blocks, activation=activation
        )
        widths = [self.features.features] + [hidden_dim] * len(latent_dims)
        self.bottom_up = nn.ModuleList(
            nn.Sequential(nn.Linear(widths[i], hidden_dim), act()) for i in range(len(latent_dims))
        )
        # q(z_L | x) from d_L; q(z_l | x, z_>l) from [d_l, s_{l+1}]; p(z_l | z_>l) from s_{l+1}.
        self.top_posterior = nn.Linear(hidden_dim, 2 * self.latent_dim)
        below = self.latent_dims[:-1]
        self.posteriors = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), act(), nn.Linear(hidden_dim, 2 * d)) for d in below
        )
        self.priors = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden_dim, hidden_dim), act(), nn.Linear(hidden_dim, 2 * d)) for d in below
        )
        self.top_state = nn.Sequential(nn.Linear(self.latent_dim, hidden_dim), act())
        self.steps = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden_dim + d, hidden_dim), act(), nn.Linear(hidden_dim, hidden_dim))
            for d in below
        )
        self.decoder = ResNetImageDecoder(
            image_shape=output_shape(self.image_shape, output_channels),
            in_features=hidden_dim,
            channels=channels,
            blocks=blocks,
            activation=activation,
        )
        self.prior = StandardNormal(self.latent_dim)

    def bottom_up_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """d_1 .. d_L, each (B, hidden_dim)."""
        d, features = self.features(x), []
        for layer in self.bottom_up:
            d = layer(d)
            features.append(d)
        return features

    def _step(self, index: int, state: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return state + self.steps[index](torch.cat([state, z], -1))

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> VAEOutput:
        batch = x.shape[0]
        if eps is None:
            eps = torch.randn(batch, sum(self.latent_dims), device=x.device)
        lead = eps.shape[:-1]  # (B,) or (K, B)
        noise = eps.split(self.latent_dims, -1)
        d = self.bottom_up_features(x)
        top = _gaussian(self.top_posterior(d[-1]))  # (B, L)
        z = top.rsample(noise[-1])  # (B, L) or (K, B, L)
        layers = [LatentLayer(top, self.prior, z)]
        state = self.top_state(z)  # (..., hidden)
        for index in reversed(range(len(self.latent_dims) - 1)):
            features = d[index].expand(*lead, -1)  # the bottom-up d_l for every sample
            prior = _gaussian(self.priors[index](state))
            posterior = _gaussian(self.posteriors[index](torch.cat([features, state], -1)))
            z = posterior.rsample(noise[index])
            layers.insert(0, LatentLayer(posterior, prior, z))
            state = self._step(index, state, z)
        logits = self.decoder(state.reshape(-1, state.shape[-1]))  # (prod(lead), C, H, W)
        return VAEOutput(logits.view(*lead, *logits.shape[1:]), tuple(layers))

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """The top layer's posterior q(z_L | x), (B, latent_dim)."""
        return _gaussian(self.top_posterior(self.bottom_up_features(x)[-1]))

    def _generate(
        self, z: torch.Tensor, temperature: float | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Logits from a top-layer z, each lower layer at its prior mean (None) or drawn at `temperature`
        (its noise from `generator` when given, drawn on the CPU: the same images on every device)."""
        state = self.top_state(z)
        for index in reversed(range(len(self.latent_dims) - 1)):
            prior = _gaussian(self.priors[index](state))
            if temperature is None:
                lower = prior.mean
            else:
                if generator is None:
                    noise = torch.randn_like(prior.mean)
                else:
                    noise = torch.randn(prior.mean.shape, generator=generator).to(prior.mean)
                lower = prior.rsample(temperature * noise)
            state = self._step(index, state, lower)
        return self.decoder(state)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from a top-layer z (N, latent_dim), every lower layer at the mean of its prior."""
        return self._generate(z, None)

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images drawn from the whole hierarchy (every layer sampled at `temperature`), values in [0, 1].

        Every layer's noise comes from `generator` when given (the same images on every device, and torch's
        own RNG untouched: a training run's image logging does not shift its later draws); else torch's RNG.
        """
        device = next(self.parameters()).device
        z = self.prior.sample(num_samples, generator=generator, device=device) * temperature
        return likelihood_of(self).mean(self._generate(z, temperature, generator).float())

    @property
    def output_bias(self) -> torch.Tensor:
        return self.decoder.output_bias


def hvae(
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    lower_latent_dims: tuple[int, ...],
    channels: tuple[int, ...],
    blocks: int,
    hidden_dim: int,
    activation: str = "silu",
    output_channels: int | None = None,
) -> HierarchicalVAE:
    """`model=hvae`: the top layer of `latent_dim` over layers of `lower_latent_dims` (from x up); the decoder
    outputs `output_channels` maps (default C)."""
    return HierarchicalVAE(
        image_shape=image_shape,
        latent_dims=(*lower_latent_dims, latent_dim),
        channels=tuple(channels),
        blocks=blocks,
        hidden_dim=hidden_dim,
        activation=activation,
        output_channels=output_channels,
    )

"""The discretized mixture of logistics (`gen_loss=dmol`): Salimans et al. (2017), PixelCNN++'s decoder, as in
NVAE and VDVAE: the standard likelihood for bits/dim on 8-bit images.

Each pixel is a mixture of `gen_loss.components` (K) components, one mixture weight per component shared
by the pixel's channels. Under component k, channel c is a logistic of mean mu_ck + sum_{j<c} a_cjk x_j
(channels coupled linearly to the ones before them, PixelCNN++'s red -> green -> blue; no coupling for one
channel) and scale s_ck, discretized to the 256 values of an 8-bit pixel: on the data mapped to [-1, 1],
value v has probability F((v + 1/255 - m) / s) - F((v - 1/255 - m) / s), with the whole tail below 0
and above 255 given to those two edge values, so the probabilities of the 256 values sum to 1
(tests/test_dmol.py sums them). log p of the pixel is log sum_k pi_k prod_c P_ck(x_c); it is spread
evenly over the pixel's channels, so a sum over an image is its log-likelihood and a mean is per pixel
value (the interface's convention, vae/likelihoods/base.py).

The decoder outputs K * (1 + 2C + C(C-1)/2) maps per pixel: K mixture logits, then C*K means, C*K log
scales (floored at -7, as PixelCNN++) and K * C(C-1)/2 coupling coefficients (through tanh). Unlike
PixelCNN++ the difference of the two logistic CDFs is computed in closed form in log space
(log(sigmoid(a) - sigmoid(b)) = a + log(-expm1(b - a)) - softplus(a) - softplus(b)) rather than falling
back to the density at the bin's centre, so the probabilities stay exact however small they are.

It reads the pixel values themselves (x = k / 255, no dequantization): its -ELBO in nats is a bound on
the discrete negative log-likelihood, bits/dim = nats / (D ln 2). Binarized data (data.binarize) is
refused: two values are not 8-bit images. The mean image is the mixture of the components' means
(each channel's mean given the preceding channels' component means), clipped to the pixel range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING

from vae.likelihoods.base import LIKELIHOODS, Likelihood
from vae.schema import Get, LikelihoodConfig, check

MIN_LOG_SCALE = -7.0  # PixelCNN++'s floor on a component's log scale
BIN = 1.0 / 255.0  # half a bin's width on [-1, 1]


def _coupling_pairs(channels: int) -> list[tuple[int, int]]:
    """(c, j) for every channel c coupled to an earlier channel j: (1, 0), (2, 0), (2, 1) for RGB."""
    return [(c, j) for c in range(channels) for j in range(c)]


class DiscretizedLogisticMixture(Likelihood):
    """p(x|z) of 8-bit pixels: a mixture of `components` discretized logistics per pixel (the module docstring)."""

    name = "dmol"
    dequantize = False
    note = (
        "discretized mixture of logistics: the probability of each 8-bit pixel value (vae.likelihoods.dmol); "
        "bits/dim = nats / (D ln 2), an upper bound on the discrete NLL"
    )

    def __init__(self, components: int):
        super().__init__()
        if not (isinstance(components, int) and components >= 1):
            raise ValueError(f"gen_loss.components must be an integer >= 1 (got {components!r})")
        self.components = components

    def param_channels(self, image_channels: int) -> int:
        pairs = image_channels * (image_channels - 1) // 2
        return self.components * (1 + 2 * image_channels + pairs)

    def _split(self, params: torch.Tensor, channels: int):
        """(..., P, H, W) -> mixture logits (..., K, H, W); means, log scales (..., C, K, H, W); coefficients
        (..., C(C-1)/2, K, H, W)."""
        k = self.components
        lead, (height, width) = params.shape[:-3], params.shape[-2:]
        logits, means, log_scales, coeffs = torch.split(
            params.float(), [k, channels * k, channels * k, len(_coupling_pairs(channels)) * k], dim=-3
        )
        means = means.reshape(*lead, channels, k, height, width)
        log_scales = log_scales.reshape(*lead, channels, k, height, width).clamp(min=MIN_LOG_SCALE)
        coeffs = torch.tanh(coeffs.reshape(*lead, -1, k, height, width))
        return logits, means, log_scales, coeffs

    def _channels(self, params: torch.Tensor) -> int:
        for channels in range(1, 65):
            if self.param_channels(channels) == params.shape[-3]:
                return channels
        raise ValueError(
            f"gen_loss=dmol: {params.shape[-3]} maps are no image's parameters for {self.components} components"
        )

    def _coupled_means(self, means: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each channel's component means shifted by the earlier channels' values x (..., C, 1, H, W)."""
        shifted = [means[..., c, :, :, :] for c in range(means.shape[-4])]
        for index, (c, j) in enumerate(_coupling_pairs(means.shape[-4])):
            shifted[c] = shifted[c] + coeffs[..., index, :, :, :] * x[..., j, :, :, :]
        return torch.stack(shifted, dim=-4)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[-3]
        logits, means, log_scales, coeffs = self._split(params, channels)
        x = (x.float() * 2 - 1).unsqueeze(-3)  # (..., C, 1, H, W) on [-1, 1]
        centred = x - self._coupled_means(means, coeffs, x)
        inv_scale = torch.exp(-log_scales)
        upper = inv_scale * (centred + BIN)  # a: the bin's upper edge, standardized
        lower = inv_scale * (centred - BIN)  # b: its lower edge
        log_cdf_upper = upper - F.softplus(upper)  # value 0: everything below its upper edge
        log_survival_lower = -F.softplus(lower)  # value 255: everything above its lower edge
        log_bin = upper + torch.log(-torch.expm1(lower - upper)) - F.softplus(upper) - F.softplus(lower)
        log_probs = torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_survival_lower, log_bin))
        joint = log_probs.sum(-4) + torch.log_softmax(logits, dim=-3)  # (..., K, H, W): over the pixel's channels
        per_pixel = torch.logsumexp(joint, dim=-3).unsqueeze(-3)  # (..., 1, H, W)
        return (per_pixel / channels).expand(*per_pixel.shape[:-3], channels, *per_pixel.shape[-2:])

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        channels = self._channels(params)
        logits, means, _, coeffs = self._split(params, channels)
        shifted = [means[..., 0, :, :, :].clamp(-1, 1)]
        for c in range(1, channels):
            mean_c = means[..., c, :, :, :]
            for index, (cc, j) in enumerate(_coupling_pairs(channels)):
                if cc == c:
                    mean_c = mean_c + coeffs[..., index, :, :, :] * shifted[j]
            shifted.append(mean_c.clamp(-1, 1))
        weights = torch.softmax(logits, dim=-3).unsqueeze(-4)  # (..., 1, K, H, W)
        return (((torch.stack(shifted, dim=-4) * weights).sum(-3) + 1) / 2).clamp(0, 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        channels = self._channels(params)
        logits, means, log_scales, coeffs = self._split(params, channels)

        def uniform(shape) -> torch.Tensor:
            draw = torch.rand(shape, generator=generator, device="cpu" if generator else params.device)
            return draw.to(params.device).clamp(1e-5, 1 - 1e-5)

        # One component per pixel (Gumbel-max), shared by its channels.
        gumbel = -torch.log(-torch.log(uniform(logits.shape)))
        chosen = F.one_hot((logits + gumbel).argmax(-3), self.components).movedim(-1, -3).float()  # (..., K, H, W)
        pick = chosen.unsqueeze(-4)  # (..., 1, K, H, W)
        mu, log_s = (means * pick).sum(-3), (log_scales * pick).sum(-3)  # (..., C, H, W)
        noise = uniform(mu.shape)
        values: list[torch.Tensor] = []
        for c in range(channels):
            mean_c = mu[..., c, :, :]
            for index, (cc, j) in enumerate(_coupling_pairs(channels)):
                if cc == c:
                    mean_c = mean_c + (coeffs[..., index, :, :, :] * chosen).sum(-3) * values[j]
            logistic = mean_c + torch.exp(log_s[..., c, :, :]) * (
                torch.log(noise[..., c, :, :]) - torch.log1p(-noise[..., c, :, :])
            )
            values.append(torch.round((logistic.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1)  # one of the 256 values
        return (torch.stack(values, dim=-3) + 1) / 2


@dataclass
class DmolConfig(LikelihoodConfig):
    components: int = MISSING  # mixture components per pixel (conf/gen_loss/dmol.yaml)

    @classmethod
    def check(cls, get: Get) -> None:
        components = get("gen_loss.components")
        check(isinstance(components, int) and components >= 1, "gen_loss.components", "an integer >= 1", components)
        binarize = get("data.binarize")
        check(
            binarize == "none",
            "data.binarize",
            "none with gen_loss=dmol (a likelihood of 8-bit pixel values)",
            binarize,
        )
        bias = get("model.output_bias")
        check(
            bias == "init", "model.output_bias", "init with gen_loss=dmol (data_mean sets one logit per channel)", bias
        )


@LIKELIHOODS.register("dmol", schema=DmolConfig)
def _dmol(config: Mapping[str, Any]) -> Likelihood:
    return DiscretizedLogisticMixture(config["gen_loss"]["components"])

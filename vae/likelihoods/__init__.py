"""The decoder's likelihood p(x|z), one module per option: the interface and the 8-bit protocol in
vae/likelihoods/base.py, Bernoulli and l2 in bernoulli.py, the calibrated Gaussian in gaussian.py, and
every other module of this package (imported here, so that adding a likelihood is adding its module).

`build_likelihood(config)` builds the run config's (its `gen_loss` group, or the string a run saved
before gen_loss was a group held); `likelihood_of(model)` is the model's, Bernoulli for a model built
without one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from torch import nn

from vae.likelihoods.base import LIKELIHOODS, Likelihood, bits_per_dim_8bit, dequantize, dequantize_fixed
from vae.likelihoods.bernoulli import Bernoulli, SquaredError
from vae.likelihoods.gaussian import DECODER_SIGMAS, MIN_LOG_SIGMA, OPTIMAL_SIGMA_MOMENTUM, Gaussian, softclip_min
from vae.schema import likelihood_group

for _module in pkgutil.iter_modules(__path__):  # every likelihood module registers itself on import
    importlib.import_module(f"{__name__}.{_module.name}")

BERNOULLI = Bernoulli()

__all__ = [
    "BERNOULLI",
    "DECODER_SIGMAS",
    "LIKELIHOODS",
    "MIN_LOG_SIGMA",
    "OPTIMAL_SIGMA_MOMENTUM",
    "Bernoulli",
    "Gaussian",
    "Likelihood",
    "SquaredError",
    "bits_per_dim_8bit",
    "build_likelihood",
    "dequantize",
    "dequantize_fixed",
    "likelihood_of",
    "softclip_min",
]


def build_likelihood(config: Mapping[str, Any]) -> Likelihood:
    """The run config's likelihood, by its gen_loss group's name (a config saved without one is bce's)."""
    return LIKELIHOODS.get(likelihood_group(config.get("gen_loss"))["name"])(config)


def likelihood_of(model: nn.Module) -> Likelihood:
    """The model's likelihood; Bernoulli for a model built without one."""
    return getattr(model, "likelihood", BERNOULLI)

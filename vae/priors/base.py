"""prior=<name>: the registry of the top layer's prior p(z), and what a prior provides.

A prior is what `vae.distributions.StandardNormal` is (the reference): `log_prob(z)` summed over the last
dim (any leading axes: a sample axis), `log_density(z)` per dim, `sample(n, generator=, device=)`,
`float()`, and `kl_estimator`, how a layer's KL against it is computed (closed form, or at the layer's
sample: `vae.distributions.LatentLayer.kl`). A learned prior is an `nn.Module`: `vae.build.build_model`
sets it as `model.prior`, so its parameters are the model's (optimizer, checkpoints). A builder is
`@PRIORS.register("<name>", schema=<Name>PriorConfig)` taking (the run config, the built model).
"""

from __future__ import annotations

from vae.registry import Registry

# prior.name -> builder(run config, model) -> the model's top-layer prior.
PRIORS = Registry("prior.name")

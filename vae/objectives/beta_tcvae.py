"""objective=beta_tcvae: the beta-TCVAE of Chen et al. (2018), minibatch-weighted sampling.

The ELBO's KL term, E_x KL(q(z|x) || p(z)), splits into the index-code mutual information, the total
correlation of the aggregate posterior q(z) and the dimension-wise KL:

    E log q(z|x) - log p(z) = [E log q(z|x) - log q(z)] + [E log q(z) - log prod_d q(z_d)]
                              + [E log prod_d q(z_d) - log p(z)]
                            = MI + TC + DWKL,

and beta-TCVAE minimises -E log p(x|z) + alpha MI + beta TC + gamma DWKL (per image sums, z one sample
per image). q(z) and q(z_d) are the data set's mixtures of posteriors, estimated on the batch by
minibatch-weighted sampling (the paper's MWS, its eq. S6): with M images in the batch and N in the
training split, log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(N M), and the same per dimension for
q(z_id). The split's size comes from the objective's context (`ObjectiveContext.num_train`).

At alpha = beta = gamma = 1 the three terms sum to log q(z|x) - log p(z) at the sampled z: the loss is
the single-sample ELBO with that KL estimate (tests/test_beta_tcvae.py). The reported `kl` and
`neg_elbo_nats` are the closed-form KL's, as the ELBO's, so runs compare; MI, TC and DWKL (nats per image)
are this objective's own terms (`extra_names`): metrics.json, TensorBoard and the sweep report show them.
Their keys and defaults are in conf/objective/beta_tcvae.yaml (alpha = gamma = 1, beta = 6 as in the
paper's dSprites runs). One stochastic layer; reduction=sum, kl_weight=1 and no free bits (the weights are
alpha, beta and gamma); the KL warm-up's share scales all three.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from omegaconf import MISSING

from vae.losses import LossTerms, default_likelihood
from vae.objectives.base import OBJECTIVES, Objective, ObjectiveContext, as_context
from vae.schema import Get, ObjectiveConfig, check


def mws_terms(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, prior, num_train: int):
    """Per-image (B,) log q(z|x), the MWS estimates of log q(z) and log prod_d q(z_d), and log p(z), in fp32.

    z, mean, log_var: (B, L), z_i drawn from q(z | x_i) = N(mean_i, exp(log_var_i)).
    """
    batch = z.shape[0]
    # log q(z_i,d | x_j,d): (B_i, B_j, L)
    pairs = -0.5 * (
        (z.unsqueeze(1) - mean.unsqueeze(0)).pow(2) * torch.exp(-log_var.unsqueeze(0)) + log_var.unsqueeze(0)
    )
    pairs = pairs - 0.5 * math.log(2 * math.pi)
    log_norm = math.log(num_train * batch)
    log_qz_x = pairs.diagonal(dim1=0, dim2=1).sum(0)  # (B,): log q(z_i | x_i)
    log_qz = torch.logsumexp(pairs.sum(-1), dim=1) - log_norm
    log_prod_qzd = (torch.logsumexp(pairs, dim=1) - log_norm).sum(-1)
    return log_qz_x, log_qz, log_prod_qzd, prior.log_prob(z)


@dataclass(frozen=True)
class BetaTCVAE(Objective):
    """-E log p(x|z) + alpha MI + beta TC + gamma DWKL, per image, batch mean (the module docstring)."""

    name: ClassVar[str] = "beta_tcvae"
    extra_names: ClassVar[tuple[str, ...]] = ("mi_nats", "tc_nats", "dwkl_nats")
    alpha: float
    beta: float
    gamma: float
    likelihood: Any = field(default=None, compare=False, repr=False)

    @property
    def samples(self) -> int:
        return 1

    def __call__(self, output, x: torch.Tensor, context: ObjectiveContext | float = 1.0) -> LossTerms:
        context = as_context(context)
        if context.num_train is None:
            raise ValueError("objective=beta_tcvae needs the training split's size (ObjectiveContext.num_train)")
        if len(output.layers) != 1:
            raise ValueError(f"objective=beta_tcvae takes one stochastic layer (this model has {len(output.layers)})")
        layer = output.layers[0].float()
        likelihood = self.likelihood if self.likelihood is not None else default_likelihood()
        loss_per_pixel, log_px_z = likelihood.terms(output.logits.float(), x)
        gen = loss_per_pixel.flatten(1).sum(1).mean()
        rec_nats = -log_px_z.flatten(1).sum(1).mean()
        posterior = layer.posterior
        log_qz_x, log_qz, log_prod, log_pz = mws_terms(
            layer.z, posterior.mean, posterior.log_var, layer.prior, context.num_train
        )
        mi, tc, dwkl = (log_qz_x - log_qz).mean(), (log_qz - log_prod).mean(), (log_prod - log_pz).mean()
        weighted = context.kl_scale * (self.alpha * mi + self.beta * tc + self.gamma * dwkl)
        kl_nats = layer.kl().sum(-1).mean()  # closed form against N(0, I): the ELBO's, so runs compare
        return LossTerms(
            loss=gen + weighted,
            gen_loss=gen,
            kl=kl_nats,
            neg_elbo_nats=rec_nats + kl_nats,
            rec_nats=rec_nats,
            kl_nats=kl_nats,
            extras=(("mi_nats", mi), ("tc_nats", tc), ("dwkl_nats", dwkl)),
        )


@dataclass
class BetaTCVAEConfig(ObjectiveConfig):
    alpha: float = MISSING  # the mutual information's weight
    beta: float = MISSING  # the total correlation's weight
    gamma: float = MISSING  # the dimension-wise KL's weight

    @classmethod
    def check(cls, get: Get) -> None:
        for key in ("objective.alpha", "objective.beta", "objective.gamma"):
            check(get(key) >= 0, key, "a number >= 0", get(key))
        check(
            get("reduction") == "sum",
            "reduction",
            "sum with objective=beta_tcvae (its terms are per image)",
            get("reduction"),
        )
        check(
            get("kl_weight") == 1,
            "kl_weight",
            "1 with objective=beta_tcvae (objective.alpha, beta, gamma weigh the KL's parts)",
            get("kl_weight"),
        )
        check(get("free_bits") == 0, "free_bits", "0 with objective=beta_tcvae", get("free_bits"))
        lower = get("model.lower_latent_dims")
        check(
            lower == MISSING or not lower,
            "model.lower_latent_dims",
            "absent with objective=beta_tcvae (one stochastic layer)",
            lower,
        )


@OBJECTIVES.register("beta_tcvae", schema=BetaTCVAEConfig)
def _beta_tcvae(config: Mapping[str, Any], likelihood=None) -> BetaTCVAE:
    objective = config["objective"]
    return BetaTCVAE(float(objective["alpha"]), float(objective["beta"]), float(objective["gamma"]), likelihood)

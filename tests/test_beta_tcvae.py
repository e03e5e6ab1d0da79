"""objective=beta_tcvae: its minibatch-weighted-sampling estimator against brute force, and its reduction to the ELBO."""

from __future__ import annotations

import math

import pytest
import torch

from vae.config import ConfigError, validate
from vae.distributions import DiagonalGaussian, LatentLayer, StandardNormal
from vae.model import VAEOutput
from vae.objectives import ELBO, ObjectiveContext
from vae.objectives.beta_tcvae import BetaTCVAE, mws_terms

from conftest import TINY, compose_config


def _batch(seed: int = 0, batch: int = 5, dims: int = 3):
    g = torch.Generator().manual_seed(seed)
    mean, log_var = torch.randn(batch, dims, generator=g), torch.randn(batch, dims, generator=g) * 0.5
    z = mean + torch.exp(0.5 * log_var) * torch.randn(batch, dims, generator=g)
    return z, mean, log_var


def test_the_estimator_is_the_brute_force_mixture_over_the_batch():
    """log q(z_i) = log (1/(N M)) sum_j q(z_i|x_j) and log prod_d q(z_id), each q a torch.distributions.Normal,
    computed image by image and dimension by dimension."""
    z, mean, log_var = _batch()
    num_train = 60
    log_qz_x, log_qz, log_prod, log_pz = mws_terms(z, mean, log_var, StandardNormal(3), num_train)
    normal = torch.distributions.Normal
    batch = z.shape[0]
    for i in range(batch):
        densities = [normal(mean[j], torch.exp(0.5 * log_var[j])).log_prob(z[i]) for j in range(batch)]  # (L,) each
        joint = torch.logsumexp(torch.stack([d.sum() for d in densities]), 0) - math.log(num_train * batch)
        marginals = sum(
            torch.logsumexp(torch.stack([d[k] for d in densities]), 0) - math.log(num_train * batch) for k in range(3)
        )
        assert log_qz[i].item() == pytest.approx(joint.item(), abs=1e-5)
        assert log_prod[i].item() == pytest.approx(float(marginals), abs=1e-5)
        assert log_qz_x[i].item() == pytest.approx(densities[i].sum().item(), abs=1e-5)
        assert log_pz[i].item() == pytest.approx(normal(0.0, 1.0).log_prob(z[i]).sum().item(), abs=1e-5)


def _output(seed: int = 0):
    z, mean, log_var = _batch(seed)
    logits = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(seed + 1))
    return VAEOutput(logits, (LatentLayer(DiagonalGaussian(mean, log_var), StandardNormal(3), z),))


def test_at_alpha_beta_gamma_one_it_is_the_elbo_with_the_one_sample_kl():
    """MI + TC + DWKL = log q(z|x) - log p(z) at the same z: the loss is the ELBO's with that KL (whatever N)."""
    output = _output()
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(7)).round()
    terms = BetaTCVAE(1.0, 1.0, 1.0)(output, x, ObjectiveContext(num_train=1000))
    layer = output.layers[0]
    one_sample_kl = (layer.posterior.log_prob(layer.z) - layer.prior.log_prob(layer.z)).mean()
    elbo = ELBO(1.0, "bce", "sum")(output, x)
    assert terms.loss.item() == pytest.approx((elbo.gen_loss + one_sample_kl).item(), abs=1e-4)
    assert terms.neg_elbo_nats.item() == pytest.approx(elbo.neg_elbo_nats.item(), abs=1e-4)  # closed-form KL
    mi, tc, dwkl = (value for _, value in terms.extras)
    assert (mi + tc + dwkl).item() == pytest.approx(one_sample_kl.item(), abs=1e-4)
    heavier = BetaTCVAE(1.0, 6.0, 1.0)(output, x, ObjectiveContext(num_train=1000))
    assert heavier.loss.item() == pytest.approx((terms.loss + 5 * tc).item(), abs=1e-4)


def test_it_needs_the_training_set_s_size():
    with pytest.raises(ValueError, match="num_train"):
        BetaTCVAE(1.0, 6.0, 1.0)(_output(), torch.zeros(5, 1, 4, 4))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("reduction=mean", "reduction"),
        ("kl_weight=0.5", "kl_weight"),
        ("objective.beta=-1", "objective.beta"),
        ("model=hvae", "model.lower_latent_dims"),
    ],
)
def test_settings_it_cannot_mean_are_refused_by_name(override, key):
    base = ["objective=beta_tcvae", "reduction=sum", "kl_weight=1"]
    validate(compose_config(base))
    with pytest.raises(ConfigError, match=rf"^{key} must be"):
        validate(compose_config([*base, override]))


def test_it_trains_an_epoch_and_logs_its_terms(tmp_path):
    import json

    from vae.train import train

    run_dir = tmp_path / "run"
    train(compose_config([*TINY, "objective=beta_tcvae", "reduction=sum", "kl_weight=1", "epochs=1"]), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["objective_terms"] == ["mi_nats", "tc_nats", "dwkl_nats"]
    val = metrics["val"]
    assert all(math.isfinite(val[name]) for name in ("mi_nats", "tc_nats", "dwkl_nats"))

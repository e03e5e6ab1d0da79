"""The loss: closed-form KL against torch.distributions and Monte Carlo, BCE and L2 by hand, reductions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from vae.distributions import DiagonalGaussian, StandardNormal
from vae.losses import beta_effective, nats_to_bits_per_dim
from vae.objectives import ELBO

from conftest import one_layer_output


def kl_divergence(mu, log_var):
    """The closed-form KL per dim of N(mu, exp(log_var)) against N(0, I)."""
    return DiagonalGaussian(mu, log_var).kl(StandardNormal(mu.shape[-1]))


def vae_loss(logits, x, mu, log_var, *, kl_weight, gen_loss, reduction, free_bits=0.0):
    """The ELBO objective's terms for decoder logits and a one-layer posterior (mu, log_var)."""
    return ELBO(kl_weight, gen_loss, reduction, free_bits)(one_layer_output(logits, mu, log_var), x)


def _posterior(seed: int = 0, batch: int = 4, latent_dim: int = 3, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, latent_dim, generator=generator, dtype=dtype).requires_grad_()
    log_var = (0.8 * torch.randn(batch, latent_dim, generator=generator, dtype=dtype)).requires_grad_()
    return mu, log_var


def test_kl_matches_torch_distributions_in_value_and_gradient():
    mu, log_var = _posterior()
    ours = kl_divergence(mu, log_var)
    ours_grad = torch.autograd.grad(ours.sum(), (mu, log_var))
    reference = torch_kl(Normal(mu, torch.exp(0.5 * log_var)), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    reference_grad = torch.autograd.grad(reference.sum(), (mu, log_var))
    assert torch.allclose(ours, reference, atol=1e-12)
    for a, b in zip(ours_grad, reference_grad):
        assert torch.allclose(a, b, atol=1e-12)


def test_kl_matches_a_float64_monte_carlo_estimate_in_value_and_gradient():
    mu, log_var = _posterior(seed=1, batch=2, latent_dim=2)
    generator = torch.Generator().manual_seed(2)
    eps = torch.randn(400_000, *mu.shape, generator=generator, dtype=torch.float64)
    sigma = torch.exp(0.5 * log_var)
    z = mu + sigma * eps  # reparameterized, so the estimate has a gradient
    log_q = Normal(mu, sigma).log_prob(z)
    log_p = Normal(0.0, 1.0).log_prob(z)
    monte_carlo = (log_q - log_p).mean(0)
    mc_grad = torch.autograd.grad(monte_carlo.sum(), (mu, log_var))
    closed = kl_divergence(mu, log_var)
    closed_grad = torch.autograd.grad(closed.sum(), (mu, log_var))
    assert torch.allclose(monte_carlo, closed, atol=0.01, rtol=0.01)
    for a, b in zip(mc_grad, closed_grad):
        assert torch.allclose(a, b, atol=0.02, rtol=0.02)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zero = torch.zeros(1, 4)
    assert torch.equal(kl_divergence(zero, zero), zero)
    assert (kl_divergence(torch.tensor([[0.1]]), torch.tensor([[0.0]])) > 0).all()
    assert (kl_divergence(torch.tensor([[0.0]]), torch.tensor([[0.3]])) > 0).all()


def test_bce_equals_a_hand_computation():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.3, 0.9]]]])
    p = torch.sigmoid(logits)
    by_hand = -(x * torch.log(p) + (1 - x) * torch.log(1 - p))
    zeros = torch.zeros(1, 2)
    terms = vae_loss(logits, x, zeros, zeros, kl_weight=1.0, gen_loss="bce", reduction="mean")
    assert math.isclose(terms.gen_loss.item(), by_hand.mean().item(), rel_tol=1e-6)
    terms = vae_loss(logits, x, zeros, zeros, kl_weight=1.0, gen_loss="bce", reduction="sum")
    assert math.isclose(terms.gen_loss.item(), by_hand.sum().item(), rel_tol=1e-6)


def test_l2_equals_squared_error_of_the_sigmoid_output():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]]]]).repeat(2, 1, 1, 1)
    x = torch.tensor([[[[1.0, 0.0], [0.3, 0.9]]]]).repeat(2, 1, 1, 1)
    by_hand = (torch.sigmoid(logits) - x) ** 2
    zeros = torch.zeros(2, 3)
    mean = vae_loss(logits, x, zeros, zeros, kl_weight=0.0, gen_loss="l2", reduction="mean")
    total = vae_loss(logits, x, zeros, zeros, kl_weight=0.0, gen_loss="l2", reduction="sum")
    assert math.isclose(mean.gen_loss.item(), by_hand.mean().item(), rel_tol=1e-6)
    assert math.isclose(total.gen_loss.item(), by_hand[0].sum().item(), rel_tol=1e-6)  # per image, batch mean


def test_mean_reduction_is_a_beta_vae_in_per_image_sums():
    torch.manual_seed(0)
    num_pixels, latent_dim, kl_weight = 784, 2, 1e-3
    logits, x = torch.randn(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    mu, log_var = torch.randn(5, latent_dim), torch.randn(5, latent_dim)
    mean = vae_loss(logits, x, mu, log_var, kl_weight=kl_weight, gen_loss="bce", reduction="mean")
    beta = beta_effective(kl_weight=kl_weight, reduction="mean", num_pixels=num_pixels, latent_dim=latent_dim)
    total = vae_loss(logits, x, mu, log_var, kl_weight=beta, gen_loss="bce", reduction="sum")
    assert math.isclose(beta, 0.392, rel_tol=1e-12)  # docs/design.md: MNIST at latent_dim 2
    assert math.isclose(mean.gen_loss.item() * num_pixels, total.gen_loss.item(), rel_tol=1e-5)
    assert math.isclose(mean.kl.item() * latent_dim, total.kl.item(), rel_tol=1e-5)
    assert math.isclose(mean.loss.item() * num_pixels, total.loss.item(), rel_tol=1e-5)


def test_neg_elbo_is_bce_plus_kl_summed_per_image_whatever_the_objective():
    torch.manual_seed(1)
    logits, x = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    mu, log_var = torch.randn(3, 2), torch.randn(3, 2)
    expected = (
        torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        + kl_divergence(mu, log_var).sum(1)
    ).mean()
    for gen_loss in ("bce", "l2"):
        for reduction in ("mean", "sum"):
            terms = vae_loss(logits, x, mu, log_var, kl_weight=0.37, gen_loss=gen_loss, reduction=reduction)
            assert math.isclose(terms.neg_elbo_nats.item(), expected.item(), rel_tol=1e-6)
            assert math.isclose(terms.rec_nats.item() + terms.kl_nats.item(), expected.item(), rel_tol=1e-6)


def test_kl_weight_zero_leaves_only_the_generation_loss():
    logits, x = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    terms = vae_loss(logits, x, torch.ones(2, 2), torch.ones(2, 2), kl_weight=0.0, gen_loss="bce", reduction="mean")
    assert terms.loss.item() == terms.gen_loss.item()
    assert terms.kl.item() > 0


def test_sum_reduction_beta_is_the_kl_weight():
    assert beta_effective(kl_weight=0.7, reduction="sum", num_pixels=784, latent_dim=32) == 0.7


def test_bits_per_dim_converts_nats():
    assert math.isclose(nats_to_bits_per_dim(784 * math.log(2.0), 784), 1.0)


def test_unknown_gen_loss_and_reduction_are_refused_by_name():
    logits, x, z = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 2)
    with pytest.raises(ValueError, match="huber"):
        vae_loss(logits, x, z, z, kl_weight=1.0, gen_loss="huber", reduction="mean")
    with pytest.raises(ValueError, match="avg"):
        vae_loss(logits, x, z, z, kl_weight=1.0, gen_loss="bce", reduction="avg")


def test_kl_warmup_rises_linearly_to_one_over_its_steps():
    from vae.losses import kl_warmup_factor

    assert [kl_warmup_factor(step, warmup_steps=4) for step in (0, 1, 2, 4, 10)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert kl_warmup_factor(0, warmup_steps=0) == 1.0


def test_free_bits_floor_the_kl_in_the_objective_only():
    logits, x = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    mu = torch.tensor([[0.1, 3.0], [0.1, 3.0]], requires_grad=True)  # dim 0: KL 0.005, dim 1: KL 4.5
    log_var = torch.zeros(2, 2)
    terms = vae_loss(logits, x, mu, log_var, kl_weight=1.0, gen_loss="bce", reduction="sum", free_bits=0.5)
    assert math.isclose(terms.kl.item(), 0.005 + 4.5, rel_tol=1e-5)  # reported: the true KL
    assert math.isclose(terms.loss.item() - terms.gen_loss.item(), 0.5 + 4.5, rel_tol=1e-5)  # objective: floored
    terms.loss.backward()
    assert mu.grad[:, 0].abs().max() == 0  # under the floor: no pull towards the prior
    assert (mu.grad[:, 1] > 0).all()


def test_the_gray_level_entropy_floor_is_the_least_bce_any_decoder_can_reach():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("entropy_floor", REPO / "experiments/likelihood/entropy_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    floor = module.entropy_floor(images)
    x = images.double() / 255
    exact = F.binary_cross_entropy(x.clamp(1e-12, 1 - 1e-12), x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(floor, exact, atol=1e-6)
    for seed in range(3):  # any other decoder output costs more
        logits = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        assert (bce > floor).all()

"""The posterior and the prior as objects, against torch.distributions: samples, log densities, the KL, the clamp."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vae.distributions import LOG_VAR_MAX, LOG_VAR_MIN, DiagonalGaussian, LatentLayer, StandardNormal


def _gaussian(seed: int = 0, batch: int = 4, latent_dim: int = 3, dtype=torch.float64) -> DiagonalGaussian:
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(batch, latent_dim, generator=generator, dtype=dtype).requires_grad_()
    log_var = (0.8 * torch.randn(batch, latent_dim, generator=generator, dtype=dtype)).requires_grad_()
    return DiagonalGaussian(mean, log_var)


def _torch_normal(q: DiagonalGaussian) -> Normal:
    return Normal(q.mean, torch.exp(0.5 * q.log_var))


def test_parameters_std_and_mode():
    q = _gaussian()
    assert torch.equal(q.std, torch.exp(0.5 * q.log_var)) and q.mode is q.mean and q.dim == 3


def test_log_var_is_clamped_once_at_construction_and_float_and_detach_keep_it():
    q = DiagonalGaussian(torch.zeros(1, 3), torch.tensor([[-1e4, 0.5, 1e4]]))
    assert q.log_var.tolist() == [[LOG_VAR_MIN, 0.5, LOG_VAR_MAX]]
    assert torch.isfinite(q.std).all() and torch.isfinite(q.log_prob(torch.zeros(1, 3))).all()
    half = DiagonalGaussian(torch.zeros(2, 2, dtype=torch.bfloat16), torch.full((2, 2), 3.0, dtype=torch.bfloat16))
    assert half.float().log_var.dtype == torch.float32 and torch.equal(half.float().log_var, half.log_var.float())
    assert not _gaussian().detach().mean.requires_grad


@pytest.mark.parametrize("shape", [(4, 3), (5, 4, 3)])
def test_rsample_is_mean_plus_sigma_eps_for_one_or_k_samples_per_image(shape):
    q = _gaussian()
    eps = torch.randn(shape, dtype=torch.float64)
    z = q.rsample(eps)
    assert z.shape == shape
    assert torch.equal(z, q.mean + torch.exp(0.5 * q.log_var) * eps)
    d_mean, d_log_var = torch.autograd.grad(z.sum(), (q.mean, q.log_var))  # both reached through z
    per_sample = 0.5 * torch.exp(0.5 * q.log_var) * eps  # dz / dlog_var: the 0.5 the book drops
    assert torch.allclose(d_mean, torch.full_like(q.mean, eps.numel() / q.mean.numel()))
    assert torch.allclose(d_log_var, per_sample if eps.dim() == 2 else per_sample.sum(0))


def test_rsample_draws_noise_when_none_is_given():
    torch.manual_seed(0)
    q = DiagonalGaussian(torch.tensor([1.0, -2.0]).expand(100_000, 2), torch.tensor([0.0, 1.0]).expand(100_000, 2))
    z = q.rsample()
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02)
    assert torch.allclose(z.var(0), torch.tensor([0.0, 1.0]).exp(), rtol=0.02)


@pytest.mark.parametrize("samples", [(), (6,)])
def test_log_prob_is_independent_normals_summed_over_the_last_dim_in_value_and_gradient(samples):
    q = _gaussian()
    z = torch.randn(*samples, 4, 3, dtype=torch.float64)
    ours = q.log_prob(z)
    reference = Independent(_torch_normal(q), 1).log_prob(z)
    assert ours.shape == (*samples, 4)
    assert torch.allclose(ours, reference, atol=1e-12)
    assert torch.allclose(q.log_density(z), _torch_normal(q).log_prob(z), atol=1e-12)
    ours_grad = torch.autograd.grad(ours.sum(), (q.mean, q.log_var))
    reference_grad = torch.autograd.grad(reference.sum(), (q.mean, q.log_var))
    for a, b in zip(ours_grad, reference_grad, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_log_prob_of_noise_is_log_prob_at_the_sample_it_draws():
    q = _gaussian()
    eps = torch.randn(5, 4, 3, dtype=torch.float64)
    assert torch.allclose(q.log_prob_of_noise(eps), q.log_prob(q.rsample(eps)), atol=1e-10)


def test_kl_against_the_standard_normal_is_torch_distributions_per_dim_in_value_and_gradient():
    q = _gaussian()
    ours = q.kl(StandardNormal(3))
    reference = kl_divergence(_torch_normal(q), Normal(torch.zeros_like(q.mean), torch.ones_like(q.mean)))
    assert ours.shape == (4, 3) and torch.allclose(ours, reference, atol=1e-12)
    ours_grad = torch.autograd.grad(ours.sum(), (q.mean, q.log_var))
    reference_grad = torch.autograd.grad(reference.sum(), (q.mean, q.log_var))
    for a, b in zip(ours_grad, reference_grad, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    p = _gaussian(seed=1)  # another diagonal Gaussian: the closed form too
    assert torch.allclose(q.kl(p), kl_divergence(_torch_normal(q), _torch_normal(p)), atol=1e-12)
    with pytest.raises(TypeError, match="StandardNormal or DiagonalGaussian, not Normal"):
        q.kl(Normal(0.0, 1.0))


def test_standard_normal_log_prob_and_sample():
    prior = StandardNormal(3)
    z = torch.randn(7, 2, 3, dtype=torch.float64)
    reference = Independent(Normal(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)), 1)
    assert torch.allclose(prior.log_prob(z), reference.log_prob(z), atol=1e-12)
    draws = prior.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(draws, torch.randn(5, 3, generator=torch.Generator().manual_seed(3)))


def test_a_layers_kl_is_closed_form_under_a_gaussian_prior_and_log_q_minus_log_p_at_z_otherwise():
    q = _gaussian(batch=2, latent_dim=2)
    closed = LatentLayer(q, StandardNormal(2), torch.zeros(2, 2, dtype=torch.float64)).kl()
    assert torch.equal(closed, q.kl(StandardNormal(2)))
    # A conditional prior, e.g. p(z1|z2): the closed form between the two Gaussians, whatever z is.
    p = DiagonalGaussian(torch.tensor([[0.5, -1.0]], dtype=torch.float64), torch.tensor([[0.3, -0.2]]).double())
    z = q.rsample(torch.randn(200_000, 2, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    reference = kl_divergence(_torch_normal(q), _torch_normal(p))
    assert torch.allclose(LatentLayer(q, p, z).kl(), reference, atol=1e-12)
    assert torch.allclose((q.log_density(z) - p.log_density(z)).mean(0), reference, atol=0.02, rtol=0.02)

    class Laplace:  # a prior with no closed form against q: the estimate at the layer's z
        def log_density(self, z):
            return -z.abs() - math.log(2)

        def float(self):
            return self

    estimate = LatentLayer(q, Laplace(), z).kl()
    assert torch.equal(estimate, q.log_density(z) - Laplace().log_density(z))

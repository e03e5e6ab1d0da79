"""The VAE module: shapes, the reparameterization, and that training moves every weight."""

from __future__ import annotations

import pytest
import torch

from vae.build import build_model
from vae.config import compose_dict
from vae.data import make_synthetic, to_model_input
from vae.distributions import DiagonalGaussian
from vae.objectives import ELBO

from conftest import MNIST_LIKE, make_vae


@pytest.mark.parametrize("latent_dim", [1, 2, 16])
@pytest.mark.parametrize("name", ["conv", "mlp"])
def test_forward_shapes_for_each_model_and_latent_dim(name, latent_dim):
    model = make_vae(name, image_shape=(1, 28, 28), latent_dim=latent_dim)
    x = torch.rand(3, 1, 28, 28)
    output = model(x)
    assert output.logits.shape == (3, 1, 28, 28)
    assert output.mu.shape == output.log_var.shape == output.z.shape == (3, latent_dim)
    assert model.decode(torch.zeros(5, latent_dim)).shape == (5, 1, 28, 28)


@pytest.mark.parametrize("image_shape", [(3, 32, 32), (1, 27, 27), (3, 64, 48)])
def test_conv_model_builds_for_other_image_shapes(image_shape):
    model = make_vae("conv", image_shape=image_shape, latent_dim=4, channels=(8, 16, 16, 16), hidden_dim=16)
    assert model(torch.rand(2, *image_shape)).logits.shape == (2, *image_shape)


def test_conv_encoder_runs_its_convs_in_sequence():
    # The lecture's slip fed conv2's output to conv4; here all four convs are on the path.
    model = make_vae("conv", image_shape=(1, 28, 28), latent_dim=2)
    convs = [m for m in model.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64, 64]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (1, 1), (1, 1)]
    output = model(torch.rand(2, 1, 28, 28))
    output.mu.sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)


def test_decoder_emits_logits_with_both_signs():
    # The lecture's last ReLU made outputs >= 0; logits must be free to go negative.
    model = make_vae("conv", image_shape=(1, 28, 28), latent_dim=2)
    logits = model.decode(torch.randn(16, 2))
    assert (logits < 0).any() and (logits > 0).any()


def test_reparameterize_gradients_reach_mu_and_log_var():
    mu = torch.tensor([[0.5, -1.0]], requires_grad=True)
    log_var = torch.tensor([[0.2, -0.4]], requires_grad=True)
    eps = torch.tensor([[1.5, -0.3]])
    z = DiagonalGaussian(mu, log_var).rsample(eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    # dz/dlog_var = 0.5 * exp(0.5 * log_var) * eps: the 0.5 the book drops.
    assert torch.allclose(log_var.grad, 0.5 * torch.exp(0.5 * log_var.detach()) * eps)


def test_reparameterize_z_has_mean_mu_and_variance_sigma_squared():
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0, 0.0]).expand(200_000, 3)
    log_var = torch.tensor([0.0, 1.0, -2.0]).expand(200_000, 3)
    z = DiagonalGaussian(mu, log_var).rsample()
    assert torch.allclose(z.mean(0), mu[0], atol=0.02)
    assert torch.allclose(z.var(0), log_var[0].exp(), rtol=0.02)


@pytest.mark.parametrize("name", ["conv", "mlp"])
def test_optimizer_steps_change_every_weight_and_lower_the_loss(name):
    torch.manual_seed(0)
    model = make_vae(name, image_shape=(1, 28, 28), latent_dim=2)
    x = to_model_input(make_synthetic(16, **MNIST_LIKE, seed=1).images)
    eps = torch.randn(16, 2)  # fixed noise, so the loss is a deterministic function of the weights
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {key: value.clone() for key, value in model.state_dict().items()}

    def loss() -> torch.Tensor:
        return ELBO(kl_weight=1e-3, gen_loss="bce", reduction="mean")(model(x, eps), x).loss

    first = loss().item()
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    unchanged = [key for key, value in model.state_dict().items() if torch.equal(value, before[key])]
    assert unchanged == []
    assert loss().item() < first


def test_forward_draws_fresh_noise_unless_eps_is_given():
    model = make_vae("conv", image_shape=(1, 28, 28), latent_dim=2).eval()
    x, eps = torch.rand(4, 1, 28, 28), torch.randn(4, 2)
    with torch.no_grad():
        first, second = model(x), model(x)
        given, given_again = model(x, eps), model(x, eps)
    assert torch.equal(first.mu, second.mu) and not torch.equal(first.z, second.z)
    assert torch.equal(given.z, given_again.z) and torch.equal(given.logits, given_again.logits)
    torch.testing.assert_close(given.z, given.mu + torch.exp(0.5 * given.log_var) * eps)


def test_sample_returns_images_in_unit_range():
    model = make_vae("conv", image_shape=(1, 28, 28), latent_dim=3)
    images = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1


def test_log_var_is_clamped_so_sigma_stays_finite():
    model = make_vae("mlp", image_shape=(1, 28, 28), latent_dim=2)
    with torch.no_grad():
        model.encoder.log_var.bias.fill_(1e4)
    posterior = model.encode(torch.rand(2, 1, 28, 28))
    assert torch.isfinite(posterior.std).all()


def test_unknown_model_name_is_refused_by_name():
    config = compose_dict()
    config["model"]["name"] = "transformer"  # past the config's own check: the builder refuses it too
    with pytest.raises(ValueError, match="transformer"):
        build_model(config)

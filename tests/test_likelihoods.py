"""The calibrated Gaussian decoder (gen_loss=gaussian, decoder_sigma=learned|optimal|<number>) and its dequantization."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Normal

from vae.bounds import iwae_log_likelihood
from vae.build import build_model
from vae.config import ConfigError, compose_dict, validate
from vae.config import compose as compose_config
from vae.data import make_synthetic
from vae.likelihoods import (
    MIN_LOG_SIGMA,
    Bernoulli,
    Gaussian,
    bits_per_dim_8bit,
    dequantize,
    dequantize_fixed,
    likelihood_of,
    softclip_min,
)
from vae.objectives import build_objective
from vae.step import dataset_loss_terms

from conftest import MNIST_LIKE, TINY, one_layer_output

GAUSSIAN = ["gen_loss=gaussian", "reduction=sum", "kl_weight=1"]


def _logits_and_x(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 5, 5, generator=generator), torch.rand(4, 1, 5, 5, generator=generator)


def test_the_gaussian_is_the_normal_density_of_the_sigmoid_mean_with_its_sigma():
    logits, x = _logits_and_x()
    fixed = Gaussian(0.1)
    expected = Normal(torch.sigmoid(logits), 0.1).log_prob(x)
    torch.testing.assert_close(fixed.log_prob(logits, x), expected, rtol=1e-5, atol=1e-5)  # 0.1: far above the floor
    learned = Gaussian("learned")
    with torch.no_grad():
        learned.log_sigma.fill_(math.log(0.3))
    sigma = math.exp(float(softclip_min(torch.tensor(math.log(0.3)), MIN_LOG_SIGMA)))
    torch.testing.assert_close(learned.log_prob(logits, x), Normal(torch.sigmoid(logits), sigma).log_prob(x))
    assert learned.sigma() == pytest.approx(sigma, rel=1e-6)  # the soft-clipped sigma the density used
    with torch.no_grad():
        learned.log_sigma.fill_(-50.0)  # the soft floor of the sigma-VAE keeps the density finite
    assert learned.sigma() == pytest.approx(math.exp(MIN_LOG_SIGMA), rel=1e-6)
    bernoulli = Bernoulli().log_prob(logits, x)
    torch.testing.assert_close(
        bernoulli, x * torch.nn.functional.logsigmoid(logits) + (1 - x) * torch.nn.functional.logsigmoid(-logits)
    )


def test_the_optimal_sigma_is_the_batch_rmse_in_training_and_its_running_average_in_evaluation():
    logits, x = _logits_and_x(1)
    optimal = Gaussian("optimal")
    rmse = float((x - torch.sigmoid(logits)).pow(2).mean().sqrt())
    got = optimal.log_prob(logits, x)
    torch.testing.assert_close(got, Normal(torch.sigmoid(logits), rmse).log_prob(x), rtol=1e-4, atol=1e-4)
    # The running variance moved 10% of the way from 1 towards the batch's.
    assert float(optimal.running_var) == pytest.approx(0.9 + 0.1 * rmse**2, rel=1e-6)
    optimal.eval()
    before = float(optimal.running_var)
    torch.testing.assert_close(
        optimal.log_prob(logits, x), Normal(torch.sigmoid(logits), math.sqrt(before)).log_prob(x), rtol=1e-4, atol=1e-4
    )
    assert float(optimal.running_var) == before  # evaluation leaves it alone
    assert optimal.sigma() == pytest.approx(math.sqrt(before), rel=1e-5)


@pytest.mark.parametrize("sigma", ["sometimes", 0, -1.0, True])
def test_a_decoder_sigma_that_cannot_work_is_refused_naming_the_key(sigma):
    with pytest.raises(ConfigError, match="decoder_sigma"):
        validate(compose_config([*GAUSSIAN, f"decoder_sigma={str(sigma).lower() if sigma is True else sigma}"]))


def test_the_model_carries_its_likelihood_and_a_learned_sigma_is_a_parameter_the_checkpoint_keeps():
    config = compose_dict([*GAUSSIAN, "model=mlp", "decoder_sigma=learned"])
    model = build_model(config)
    assert isinstance(likelihood_of(model), Gaussian)
    assert "likelihood.log_sigma" in dict(model.named_parameters())
    assert (
        "likelihood.running_var"
        in build_model(compose_dict([*GAUSSIAN, "model=mlp", "decoder_sigma=optimal"])).state_dict()
    )
    bernoulli = build_model(compose_dict(["model=mlp"]))
    assert isinstance(likelihood_of(bernoulli), Bernoulli)
    assert not any(name.startswith("likelihood.") for name in bernoulli.state_dict())  # old checkpoints still load


def test_the_elbo_of_the_gaussian_decoder_is_its_full_negative_log_density_plus_the_kl():
    config = compose_dict([*GAUSSIAN, "model=mlp", "decoder_sigma=0.2"])
    objective = build_objective(config, likelihood=Gaussian(0.2))
    logits, x = _logits_and_x(2)
    mu, log_var = torch.randn(4, 3), torch.randn(4, 3) * 0.1
    terms = objective(one_layer_output(logits, mu, log_var), x)
    rec = -Normal(torch.sigmoid(logits), 0.2).log_prob(x).flatten(1).sum(1).mean()
    kl = torch.distributions.kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(terms.rec_nats, rec, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.neg_elbo_nats, rec + kl, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.loss, rec + kl, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="gen_loss=gaussian needs the model.s likelihood"):
        build_objective(config)(one_layer_output(logits, mu, log_var), x)  # without the model's likelihood


def test_the_gaussian_iwae_bound_at_one_sample_is_the_single_sample_elbo_with_the_same_noise():
    torch.manual_seed(0)
    model = build_model(
        compose_dict([*GAUSSIAN, "model=mlp", "latent_dim=3", "model.hidden_dims=[32]", "decoder_sigma=0.3"])
    )
    model.eval()
    x = dequantize_fixed(make_synthetic(5, **MNIST_LIKE, seed=0).images, 0, seed=0)
    bound = iwae_log_likelihood(model, x, num_samples=1, generator=torch.Generator().manual_seed(7))
    eps = torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(7))[0]
    with torch.no_grad():
        posterior = model.encode(x)
        z = posterior.mean + posterior.std * eps
        log_px_z = Normal(torch.sigmoid(model.decode(z)), 0.3).log_prob(x).flatten(1).sum(1)
        log_q = Normal(posterior.mean, posterior.std).log_prob(z).sum(1)
        log_p = Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(bound, log_px_z + log_p - log_q, rtol=1e-5, atol=1e-3)


def test_dequantization_spreads_each_level_over_its_bin_and_the_fixed_noise_ignores_the_batching():
    images = make_synthetic(6, **MNIST_LIKE, seed=4).images
    torch.manual_seed(0)
    y = dequantize(images)
    scaled = y * 256 - images.float()  # the noise u, in [0, 1)
    assert 0 <= float(scaled.min()) and float(scaled.max()) < 1 and abs(float(scaled.mean()) - 0.5) < 0.01
    assert float(y.max()) < 1.0
    whole = dequantize_fixed(images, 0, seed=3)
    halves = torch.cat([dequantize_fixed(images[:2], 0, seed=3), dequantize_fixed(images[2:], 2, seed=3)])
    assert torch.equal(whole, halves)
    assert not torch.equal(whole, dequantize_fixed(images, 0, seed=4))
    assert bits_per_dim_8bit(0.0, 784) == pytest.approx(8.0)  # a density of 1 on [0, 1]^D is 8 bits per 8-bit value


def test_validation_of_a_gaussian_model_reports_its_sigma_on_dequantized_images():
    config = compose_dict([*GAUSSIAN, "model=mlp", "latent_dim=2", "decoder_sigma=0.25"])
    model = build_model(config)
    images = make_synthetic(8, **MNIST_LIKE, seed=0).images
    terms = dataset_loss_terms(model, images, objective=build_objective(config, likelihood_of(model)), batch_size=3)
    assert terms["decoder_sigma"] == pytest.approx(0.25, rel=1e-6)
    assert "decoder_sigma" not in dataset_loss_terms(
        build_model(compose_dict(["model=mlp", "latent_dim=2"])),
        images,
        objective=build_objective(compose_dict(["model=mlp"])),
        batch_size=3,
    )


@pytest.mark.slow  # trains two epochs and runs vae.evaluate
def test_a_gaussian_run_learns_its_sigma_logs_it_and_evaluates_in_nats_and_bits_per_dim(tmp_path):
    from vae.evaluate import main as evaluate
    from vae.train import train

    run_dir = tmp_path / "run"
    train(compose_config([*TINY, *GAUSSIAN, "epochs=2", "latent_dim=2", "decoder_sigma=learned"]), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val"]["decoder_sigma"] < 0.99  # learned: it left its initial 1 (the images are far closer)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert math.exp(float(checkpoint["model"]["likelihood.log_sigma"])) == pytest.approx(
        metrics["val"]["decoder_sigma"], rel=1e-2
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir)).Reload()
    assert {"val/decoder_sigma", "z_train_step/decoder_sigma"} <= set(events.Tags()["scalars"])
    results = evaluate([f"run={run_dir}", "iwae_k=4", "max_images=16", "batch_size=8", "checkpoint=last"])
    assert results["decoder_sigma"] == pytest.approx(metrics["val"]["decoder_sigma"], rel=1e-2)
    assert results["iwae_nll_nats"] <= results["neg_elbo_nats"] + 1.0
    assert results["neg_elbo_bits_per_dim"] == pytest.approx(bits_per_dim_8bit(results["neg_elbo_nats"], 784))
    assert "dequantized" in results["likelihood"]

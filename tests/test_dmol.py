"""gen_loss=dmol: the discretized mixture of logistics (vae/likelihoods/dmol.py), against brute force."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from vae.config import ConfigError, validate
from vae.likelihoods.dmol import DiscretizedLogisticMixture

from conftest import TINY, compose_config

LEVELS = torch.arange(256).float() / 255  # every value of an 8-bit pixel, as the model reads it


def _params(model, channels: int, seed: int = 0) -> torch.Tensor:
    """One pixel's decoder output (1, P, 1, 1), spread enough that some components sit near the edges."""
    return torch.randn(1, model.param_channels(channels), 1, 1, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize(("components", "seed"), [(1, 0), (3, 1), (10, 2)])
def test_the_256_values_of_a_gray_pixel_have_probabilities_that_sum_to_one(components, seed):
    model = DiscretizedLogisticMixture(components)
    params = _params(model, 1, seed)
    log_p = model.log_prob(params.expand(256, -1, -1, -1), LEVELS.reshape(256, 1, 1, 1))
    assert torch.exp(log_p.double()).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_the_65536_values_of_a_two_channel_pixel_sum_to_one_with_the_channels_coupled():
    """Coupling (the second channel's mean moves with the first's value) keeps the joint normalised; the
    log-probability of the pixel is spread over its channels, so the joint is their sum."""
    model = DiscretizedLogisticMixture(3)
    params = _params(model, 2, seed=3)
    pairs = torch.tensor(list(itertools.product(range(256), repeat=2))).float() / 255  # (65536, 2)
    log_p = model.log_prob(params.expand(len(pairs), -1, -1, -1), pairs.reshape(-1, 2, 1, 1)).sum((1, 2, 3))
    assert torch.exp(log_p.double()).sum().item() == pytest.approx(1.0, abs=1e-5)
    # and the coupling matters: the same pixel values with the coefficients zeroed give other probabilities
    uncoupled = params.clone()
    uncoupled[:, -3:] = 0  # the K = 3 coefficients (tanh(0) = 0)
    other = model.log_prob(uncoupled.expand(4, -1, -1, -1), pairs[:4].reshape(-1, 2, 1, 1)).sum((1, 2, 3))
    assert not torch.allclose(other, log_p[:4])


def test_one_component_is_the_logistic_cdf_difference_computed_by_hand():
    """K = 1, one channel: P(v) = sigmoid((v + 1/255 - m) / s) - sigmoid((v - 1/255 - m) / s) on [-1, 1],
    the tails to the edge values, in float64 by hand."""
    model = DiscretizedLogisticMixture(1)
    mean, log_scale = 0.3, -2.0
    params = torch.tensor([0.0, mean, log_scale]).reshape(1, 3, 1, 1)
    log_p = model.log_prob(params.expand(256, -1, -1, -1), LEVELS.reshape(256, 1, 1, 1)).flatten().double()
    v = LEVELS.double() * 2 - 1
    s = math.exp(log_scale)
    upper = torch.sigmoid((v + 1 / 255 - mean) / s)
    lower = torch.sigmoid((v - 1 / 255 - mean) / s)
    by_hand = torch.where(v < -0.999, upper, torch.where(v > 0.999, 1 - lower, upper - lower))
    assert torch.allclose(log_p, torch.log(by_hand), atol=1e-4)


def test_a_sharp_component_puts_its_mass_on_the_value_nearest_its_mean_and_samples_it():
    model = DiscretizedLogisticMixture(1)
    params = torch.tensor([0.0, 2 * 100 / 255 - 1, -7.0]).reshape(1, 3, 1, 1)  # value 100, the floor scale
    log_p = model.log_prob(params.expand(256, -1, -1, -1), LEVELS.reshape(256, 1, 1, 1)).flatten()
    # scale e^-7: 2 sigmoid(-(1/255) e^7) = 2.7 % of the mass falls outside the value's bin
    assert int(log_p.argmax()) == 100 and math.exp(float(log_p[100])) == pytest.approx(0.973, abs=0.002)
    draws = model.sample(params.expand(64, -1, 4, 4), generator=torch.Generator().manual_seed(0)) * 255
    assert (draws.round() == 100).float().mean() > 0.95 and (draws - 100).abs().max() <= 3
    assert model.mean(params).item() == pytest.approx(100 / 255, abs=1e-6)


def test_samples_are_8_bit_values_with_the_model_s_frequencies():
    model = DiscretizedLogisticMixture(2)
    params = _params(model, 1, seed=5)
    draws = model.sample(params.expand(20000, -1, -1, -1), generator=torch.Generator().manual_seed(1)).flatten()
    assert torch.allclose(draws * 255, (draws * 255).round(), atol=1e-3)  # one of the 256 values
    probabilities = torch.exp(model.log_prob(params.expand(256, -1, -1, -1), LEVELS.reshape(256, 1, 1, 1))).flatten()
    mean_by_model = float((probabilities * LEVELS).sum())
    assert float(draws.mean()) == pytest.approx(mean_by_model, abs=0.01)  # 20,000 draws: sd of the mean < 0.003


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.binarize=dynamic", "data.binarize"),
        ("model.output_bias=data_mean", "model.output_bias"),
        ("gen_loss.components=0", "gen_loss.components"),
    ],
)
def test_binarized_data_and_a_data_mean_bias_are_refused_by_name(override, key):
    validate(compose_config(["gen_loss=dmol"]))
    with pytest.raises(ConfigError, match=rf"^{key} must be"):
        validate(compose_config(["gen_loss=dmol", override]))


@pytest.mark.slow  # trains an epoch and runs vae.evaluate
def test_a_dmol_run_trains_and_evaluates_in_bits_per_dim(tmp_path):
    from vae.evaluate import main as evaluate
    from vae.train import train

    run_dir = tmp_path / "run"
    overrides = [*TINY, "gen_loss=dmol", "gen_loss.components=3", "reduction=sum", "kl_weight=1", "epochs=2"]
    train(compose_config(overrides), run_dir)
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert history[-1]["val_neg_elbo_nats"] < history[0]["val_neg_elbo_nats"]  # it learns
    results = evaluate([f"run={run_dir}", "iwae_k=4", "max_images=16", "batch_size=8", "checkpoint=last"])
    assert results["iwae_nll_nats"] <= results["neg_elbo_nats"] + 1.0
    assert results["neg_elbo_bits_per_dim"] == pytest.approx(results["neg_elbo_nats"] / (784 * math.log(2)))
    assert 0 < results["neg_elbo_bits_per_dim"] < 8 and "discretized mixture" in results["likelihood"]

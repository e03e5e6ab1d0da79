"""prior=vamp: the VampPrior's density against torch.distributions' mixture, its sampling, and a run that trains it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vae.build import build_model
from vae.config import ConfigError, compose_dict, validate
from vae.priors.vamp import VampPrior

from conftest import TINY_DATA, compose_config


def _model(components: int = 4):
    config = compose_dict([*TINY_DATA, "model=mlp", "latent_dim=3", "prior=vamp", f"prior.components={components}"])
    return build_model(config)


def test_the_density_is_the_mixture_of_the_pseudo_inputs_posteriors():
    model = _model()
    prior = model.prior
    assert isinstance(prior, VampPrior)
    with torch.no_grad():
        posterior = model.encode(prior.pseudo_inputs())  # the model's own encoder, on the learned images
        mixture = MixtureSameFamily(
            Categorical(logits=torch.zeros(4)), Independent(Normal(posterior.mean, posterior.std), 1)
        )
        z = torch.randn(2, 5, 3)
        assert torch.allclose(prior.log_prob(z), mixture.log_prob(z), atol=1e-5)


def test_its_parameters_are_the_model_s_and_the_encoder_is_shared_not_copied():
    model = _model()
    names = [name for name, _ in model.named_parameters()]
    assert "prior.pseudo_logits" in names and not any(name.startswith("prior.") and "encoder" in name for name in names)
    assert model.prior.pseudo_inputs().shape == (4, 1, 28, 28)
    images = model.prior.pseudo_inputs().detach()
    assert 0 <= float(images.min()) and float(images.max()) <= 1


def test_samples_come_from_the_components_in_equal_shares():
    """With far-apart, narrow components, each draw sits at one component's mean, each about 1/K of the time."""
    model = _model(components=2)
    means = torch.tensor([[-5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    prior = model.prior
    object.__setattr__(prior, "components", lambda: (means, torch.full((2, 3), -10.0)))
    draws = prior.sample(2000, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (2000, 3) and torch.allclose(draws[:, 0].abs(), torch.full((2000,), 5.0), atol=0.1)
    assert float((draws[:, 0] > 0).float().mean()) == pytest.approx(0.5, abs=0.04)  # sd of the share: 0.011


def test_free_bits_and_a_bad_component_count_are_refused_by_name():
    validate(compose_config(["prior=vamp"]))
    for override, key in (("free_bits=0.5", "free_bits"), ("prior.components=0", "prior.components")):
        with pytest.raises(ConfigError, match=rf"^{key} must be"):
            validate(compose_config(["prior=vamp", override]))


def test_a_run_trains_the_pseudo_inputs_and_says_its_kl_is_estimated(tmp_path):
    from vae.train import train

    run_dir = tmp_path / "run"
    overrides = [
        *TINY_DATA,
        "model=mlp",
        "prior=vamp",
        "prior.components=8",
        "reduction=sum",
        "kl_weight=1",
        "epochs=1",
    ]
    train(compose_config(overrides), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["kl_estimator"] == "one sample" and math.isfinite(metrics["val"]["neg_elbo_nats"])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["model"]["prior.pseudo_logits"].shape == (8, 1, 28, 28)
    # the optimizer trained the pseudo-inputs: Adam's moment of a (8, 1, 28, 28) parameter is not zero
    moments = [state["exp_avg"] for state in checkpoint["optimizer"]["state"].values()]
    assert any(m.shape == (8, 1, 28, 28) and m.abs().sum() > 0 for m in moments)

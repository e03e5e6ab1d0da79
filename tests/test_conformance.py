"""The model and likelihood contracts (docs/design.md section 4), checked for every registered option of each.

Parametrized over `vae.build.MODELS`, each built from its own YAML file at its defaults (small images,
a batch of 3): shapes with and without a sample axis, gradients that reach every parameter, a
save/load round trip, the IWAE bound at k = 1 against the single-sample ELBO computed with
torch.distributions at the same z, and what the latent tools call (encode, decode, sample). And over
`vae.likelihoods.LIKELIHOODS` (every gen_loss): shapes per pixel value with and without a sample axis,
gradients, the mean image and a seeded sample, a state round trip.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from vae.build import build_model
from vae.config import compose_dict, registries
from vae.distributions import StandardNormal
from vae.losses import iwae_loss
from vae.objectives import build_objective

from conftest import TINY_DATA

NAMES = registries()["model.name"].names()  # through the config: every option module imported, as a run sees them


def _config(name: str) -> dict:
    return compose_dict([*TINY_DATA, f"model={name}", "latent_dim=3", "reduction=sum", "kl_weight=1"])


@pytest.fixture(params=NAMES)
def case(request):
    torch.manual_seed(0)
    config = _config(request.param)
    model = build_model(config)
    x = torch.rand(3, *config["data"]["image_shape"]).round()
    return request.param, config, model, x


def _eps(model, *leading: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*leading, sum(model.latent_dims), generator=torch.Generator().manual_seed(seed))


def test_every_registered_model_is_in_the_suite():
    assert {"conv", "mlp", "resnet", "hvae"} <= set(NAMES)


def test_forward_shapes_with_and_without_a_sample_axis(case):
    from vae.contracts import VAEModel

    name, config, model, x = case
    assert isinstance(model, VAEModel), name  # the typing.Protocol's members, then their behaviour
    out = model(x, _eps(model, 3))
    assert out.logits.shape == x.shape, name
    assert len(out.layers) == len(model.latent_dims) and model.latent_dims[-1] == model.latent_dim == 3
    assert [layer.z.shape for layer in out.layers] == [torch.Size([3, d]) for d in model.latent_dims]
    many = model(x, _eps(model, 4, 3))
    assert many.logits.shape == (4, *x.shape), name
    assert [layer.z.shape for layer in many.layers] == [torch.Size([4, 3, d]) for d in model.latent_dims]
    assert isinstance(out.layers[-1].prior, StandardNormal)  # the top layer's prior is N(0, I)


def test_gradients_reach_every_parameter(case):
    name, config, model, x = case
    terms = build_objective(config, model.likelihood)(model(x, _eps(model, 3)), x)
    terms.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == [], f"{name}: no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_saved_state_loads_into_a_fresh_build_and_decodes_the_same(case, tmp_path):
    name, config, model, x = case
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(123)  # a differently initialised twin
    twin = build_model(config)
    twin.load_state_dict(torch.load(path, weights_only=True))
    model.eval(), twin.eval()
    eps = _eps(model, 3)
    with torch.no_grad():
        assert torch.equal(model(x, eps).logits, twin(x, eps).logits), name


def test_the_iwae_bound_at_k1_is_the_single_sample_elbo_at_the_same_z(case):
    """-log w at one z, computed with torch.distributions from the output's parameters, against iwae_loss."""
    name, config, model, x = case
    model.eval()
    with torch.no_grad():
        out = model(x, _eps(model, 3))
        log_w = Bernoulli(logits=out.logits.float()).log_prob(x).flatten(1).sum(-1)
        for layer in out.layers:
            prior = layer.prior
            p = Normal(0.0, 1.0) if isinstance(prior, StandardNormal) else Normal(prior.mean, prior.std)
            q = Normal(layer.posterior.mean, layer.posterior.std)
            log_w = log_w + p.log_prob(layer.z).sum(-1) - q.log_prob(layer.z).sum(-1)
        bound = iwae_loss(out.logits, x, out.layers).loss
    assert bound.item() == pytest.approx(-log_w.mean().item(), rel=1e-5, abs=1e-3), name


def test_what_the_latent_tools_call(case):
    name, config, model, x = case
    model.eval()
    with torch.no_grad():
        posterior = model.encode(x)
        assert posterior.mean.shape == (3, model.latent_dim) and posterior.log_var.shape == (3, model.latent_dim)
        assert model.decode(torch.zeros(5, model.latent_dim)).shape == (5, *x.shape[1:]), name
        images = model.sample(4, generator=torch.Generator().manual_seed(0))
        again = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, *x.shape[1:]) and 0 <= images.min() and images.max() <= 1, name
    assert torch.equal(images, again)  # seeded: the explorer's and the grids' samples are reproducible
    assert tuple(model.image_shape) == tuple(x.shape[1:])


# -- likelihoods: every registered gen_loss --------------------------------------------------------------------

LIKELIHOOD_NAMES = registries()["gen_loss.name"].names()


def _likelihood_config(name: str) -> dict:
    """A run config choosing `name` from its YAML file (its keys at their defaults); a Gaussian's sigma fixed."""
    return compose_dict([*TINY_DATA, f"gen_loss={name}", "decoder_sigma=0.2"])


@pytest.fixture(params=LIKELIHOOD_NAMES)
def likelihood(request):
    from vae.likelihoods import build_likelihood

    return request.param, build_likelihood(_likelihood_config(request.param))


def _params_and_x(model, channels: int = 1, seed: int = 0):
    """Random decoder output for (2, channels, 5, 5) images, and 8-bit images k / 255: data every likelihood reads."""
    generator = torch.Generator().manual_seed(seed)
    params = torch.randn(2, model.param_channels(channels), 5, 5, generator=generator)
    x = torch.randint(0, 256, (2, channels, 5, 5), generator=generator).float() / 255
    return params, x


def test_the_likelihood_registry_holds_the_documented_names_each_a_likelihood(likelihood):
    from vae.contracts import LikelihoodModel
    from vae.likelihoods import Likelihood

    assert {"bce", "l2", "gaussian"} <= set(LIKELIHOOD_NAMES)
    name, model = likelihood
    assert isinstance(model, Likelihood) and isinstance(model, LikelihoodModel), name
    assert model.param_channels(3) >= 3, name


@pytest.mark.parametrize("channels", [1, 3])
def test_log_prob_has_the_image_s_shape_with_and_without_a_sample_axis(likelihood, channels):
    """Per pixel value, finite, fp32; a sample axis in front broadcasts; log_prob_samples sums each image's."""
    name, model = likelihood
    params, x = _params_and_x(model, channels)
    log_prob = model.log_prob(params, x)
    assert log_prob.shape == x.shape and log_prob.dtype == torch.float32 and torch.isfinite(log_prob).all(), name
    with_samples = model.log_prob(params.expand(3, *params.shape), x.unsqueeze(0))
    assert with_samples.shape == (3, *x.shape) and torch.allclose(with_samples[1], log_prob, atol=1e-5), name
    per_image = model.log_prob_samples(params.unsqueeze(1).expand(-1, 3, -1, -1, -1), x)  # (B, K)
    assert per_image.shape == (2, 3), name
    assert torch.allclose(per_image[:, 0], log_prob.flatten(1).sum(-1), rtol=1e-5, atol=1e-3), name
    loss, again = model.terms(params, x)
    assert loss.shape == x.shape and torch.allclose(again, log_prob, atol=1e-5), name


def test_gradients_reach_the_decoder_output_through_the_training_loss(likelihood):
    name, model = likelihood
    params, x = _params_and_x(model)
    params.requires_grad_(True)
    model.terms(params, x)[0].sum().backward()
    assert params.grad is not None and torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0, name


@pytest.mark.parametrize("channels", [1, 3])
def test_the_mean_image_and_a_sample_are_images_in_the_unit_interval(likelihood, channels):
    name, model = likelihood
    params = torch.randn(4, model.param_channels(channels), 6, 6) * 10
    mean = model.mean(params)
    assert mean.shape == (4, channels, 6, 6) and 0 <= mean.min() and mean.max() <= 1, name
    draw = model.sample(params, generator=torch.Generator().manual_seed(0))
    again = model.sample(params, generator=torch.Generator().manual_seed(0))
    assert draw.shape == mean.shape and 0 <= draw.min() and draw.max() <= 1 and torch.equal(draw, again), name


def test_a_likelihood_s_state_round_trips(likelihood):
    from vae.likelihoods import build_likelihood

    name, model = likelihood
    twin = build_likelihood(_likelihood_config(name))
    twin.load_state_dict(model.state_dict())
    params, x = _params_and_x(model)
    assert torch.equal(twin.log_prob(params, x), model.log_prob(params, x)), name


@pytest.mark.parametrize("name", ["bce", "l2", "gaussian"])
def test_log_prob_against_torch_distributions(name):
    """log p(x|z) per pixel value from the decoder's output, against torch.distributions' density of the same
    (the likelihoods with a torch.distributions counterpart; others test against their own reference)."""
    from vae.likelihoods import build_likelihood

    model = build_likelihood(_likelihood_config(name))
    logits = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    if model.dequantize:  # gray levels on [0, 1]: the Gaussian of mean sigmoid(logits), sigma fixed at 0.2 here
        x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(1))
        reference = Normal(torch.sigmoid(logits), 0.2).log_prob(x)
    else:
        x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(1)).round()
        reference = Bernoulli(logits=logits).log_prob(x)
    assert torch.allclose(model.log_prob(logits, x), reference, atol=1e-5), name


def test_every_model_outputs_the_maps_its_likelihood_reads(monkeypatch):
    """The decoder outputs the likelihood's parameters: a likelihood that reads 3 maps per channel gets them
    from every registered model, from decode and from forward; a builder that cannot is refused by name."""
    from vae.build import MODELS
    from vae.errors import ConfigError
    from vae.likelihoods import LIKELIHOODS, Bernoulli

    class ThreeMaps(Bernoulli):
        name = "three_maps"

        def param_channels(self, image_channels: int) -> int:
            return 3 * image_channels

    monkeypatch.setitem(LIKELIHOODS, "three_maps", lambda config: ThreeMaps())
    for name in NAMES:
        config = {**_config(name), "gen_loss": "three_maps"}
        model = build_model(config)
        c, h, w = config["data"]["image_shape"]
        assert model.decode(torch.zeros(2, model.latent_dim)).shape == (2, 3 * c, h, w), name
        out = model(torch.rand(2, c, h, w), _eps(model, 2))
        assert out.logits.shape == (2, 3 * c, h, w) and isinstance(model.likelihood, ThreeMaps), name
    monkeypatch.setitem(MODELS, "fixed_maps", lambda model_cfg, *, image_shape, latent_dim: None)
    with pytest.raises(ConfigError, match="model=fixed_maps cannot output the 3 maps gen_loss=three_maps reads"):
        build_model(
            {**_config("mlp"), "gen_loss": "three_maps", "model": {**_config("mlp")["model"], "name": "fixed_maps"}}
        )


def test_the_protocols_refuse_what_lacks_a_member():
    """The runtime checks above can fail: a module without the model's members, or a likelihood without `mean`."""
    from torch import nn

    from vae.contracts import LikelihoodModel, VAEModel
    from vae.likelihoods import Bernoulli

    assert not isinstance(nn.Linear(2, 2), VAEModel)

    class NoMean:
        name, dequantize, note = "x", False, None
        param_channels = log_prob = terms = log_prob_samples = sample = sigma = Bernoulli.log_prob

    assert not isinstance(NoMean(), LikelihoodModel)
    NoMean.mean = Bernoulli.mean
    assert isinstance(NoMean(), LikelihoodModel)


# -- priors: every registered prior, on the MLP ------------------------------------------------------------------

PRIOR_NAMES = registries()["prior.name"].names()


@pytest.fixture(params=PRIOR_NAMES)
def with_prior(request):
    torch.manual_seed(0)
    config = compose_dict(
        [*TINY_DATA, "model=mlp", "latent_dim=3", "reduction=sum", "kl_weight=1", f"prior={request.param}"]
    )
    model = build_model(config)
    return request.param, config, model, torch.rand(3, *config["data"]["image_shape"]).round()


def test_a_prior_s_log_prob_broadcasts_its_kl_is_finite_and_its_samples_are_seeded(with_prior):
    name, config, model, x = with_prior
    prior, out = model.prior, model(x, _eps(model, 3))
    assert prior is out.layers[-1].prior, name  # the model's top layer uses the built prior
    z = torch.randn(4, 3, 3)
    assert prior.log_prob(z).shape == (4, 3) and torch.isfinite(prior.log_prob(z)).all(), name
    assert prior.log_density(z).shape == (4, 3, 3), name
    assert torch.allclose(prior.log_density(z).sum(-1), prior.log_prob(z), atol=1e-4), name
    kl = out.layers[-1].kl()
    assert kl.shape == (3, 3) and torch.isfinite(kl).all(), name
    draws = prior.sample(5, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (5, 3) and torch.equal(draws, prior.sample(5, generator=torch.Generator().manual_seed(0)))
    assert prior.kl_estimator in ("closed form", "one sample"), name


def test_the_iwae_bound_at_k1_uses_the_prior_s_log_prob(with_prior):
    """-log w = -(log p(x|z) + log p(z) - log q(z|x)) at the same z, with the model's prior, against iwae_loss."""
    name, config, model, x = with_prior
    model.eval()
    with torch.no_grad():
        out = model(x, _eps(model, 3))
        layer = out.layers[-1]
        log_w = Bernoulli(logits=out.logits.float()).log_prob(x).flatten(1).sum(-1)
        log_w = (
            log_w
            + layer.prior.log_prob(layer.z)
            - Normal(layer.posterior.mean, layer.posterior.std).log_prob(layer.z).sum(-1)
        )
        bound = iwae_loss(out.logits, x, out.layers).loss
    assert bound.item() == pytest.approx(-log_w.mean().item(), rel=1e-5, abs=1e-3), name


def test_the_loss_reaches_a_learned_prior_and_its_state_round_trips(with_prior):
    name, config, model, x = with_prior
    build_objective(config, likelihood=model.likelihood)(model(x, _eps(model, 3)), x).loss.backward()
    prior_parameters = list(model.prior.parameters()) if isinstance(model.prior, torch.nn.Module) else []
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prior_parameters), name
    twin = build_model(config)
    twin.load_state_dict(model.state_dict())
    z = torch.randn(4, 3)
    assert torch.equal(twin.prior.log_prob(z), model.prior.log_prob(z)), name


# -- objectives: every registered objective, on the MLP ---------------------------------------------------------

OBJECTIVE_NAMES = registries()["objective.name"].names()


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_an_objective_returns_its_declared_terms_and_trains_every_parameter(name):
    """Built from its YAML with the true ELBO's weighting (which every shipped objective accepts): the terms it
    declares (`term_names`, its own included), finite, -ELBO = reconstruction + KL, and a loss whose gradient
    reaches every parameter of the model, with the context the trainer gives it."""
    from vae.objectives import ObjectiveContext

    torch.manual_seed(0)
    overrides = [*TINY_DATA, "model=mlp", "latent_dim=3", "reduction=sum", "kl_weight=1", f"objective={name}"]
    config = compose_dict(overrides)
    model = build_model(config)
    objective = build_objective(config, likelihood=model.likelihood)
    x = torch.rand(4, *config["data"]["image_shape"]).round()
    samples = (objective.samples,) if objective.samples > 1 else ()
    context = ObjectiveContext(step=3, num_train=256, likelihood=model.likelihood, prior=model.prior)
    terms = objective(model(x, _eps(model, *samples, 4)), x, context)
    assert terms.names() == objective.term_names(len(model.latent_dims)), name
    assert all(torch.isfinite(value) for value in terms.scalars()), name
    assert torch.allclose(terms.neg_elbo_nats, terms.rec_nats + terms.kl_nats, atol=1e-3), name
    terms.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad), name

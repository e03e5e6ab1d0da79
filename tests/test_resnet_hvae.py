"""model=resnet and model=hvae: shapes, a training step, the hierarchy's KLs and its bound at k=1."""

from __future__ import annotations

import json

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vae.bounds import iwae_log_likelihood
from vae.build import build_model
from vae.config import ConfigError, compose_dict, validate
from vae.data import make_synthetic, to_model_input
from vae.objectives import ELBO

from conftest import MNIST_LIKE, TINY_DATA, compose_config

# Both models at a width a test trains in about a second.
SMALL = {
    "resnet": ["model=resnet", "model.channels=[8,16]", "model.blocks=1", "model.hidden_dim=32"],
    "hvae": [
        "model=hvae",
        "model.channels=[8,16]",
        "model.blocks=1",
        "model.hidden_dim=32",
        "model.lower_latent_dims=[6,5]",
    ],
}


def small_model(name: str, *, image_shape=(1, 28, 28), latent_dim: int = 4, seed: int = 0):
    config = compose_dict([*SMALL[name], f"latent_dim={latent_dim}"])
    config["data"]["image_shape"] = list(image_shape)
    torch.manual_seed(seed)
    return build_model(config)


def batch(image_shape=(1, 28, 28), n: int = 5) -> torch.Tensor:
    images = make_synthetic(n, image_shape=image_shape, num_classes=3, seed=1).images
    return torch.bernoulli(to_model_input(images), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name", ["resnet", "hvae"])
@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 64, 64), (1, 27, 30)])
def test_each_model_maps_images_of_any_size_back_to_their_size(name, image_shape):
    model = small_model(name, image_shape=image_shape)
    x = batch(image_shape, n=3)
    dims = sum(model.latent_dims)
    one, many = model(x, torch.randn(3, dims)), model(x, torch.randn(7, 3, dims))
    assert one.logits.shape == (3, *image_shape) and many.logits.shape == (7, 3, *image_shape)
    assert [layer.z.shape[-1] for layer in one.layers] == list(model.latent_dims)
    assert model.latent_dims[-1] == model.latent_dim == 4 and one.z.shape == (3, 4)  # the top layer: latent_dim
    assert [layer.z.shape[:2] for layer in many.layers] == [(7, 3)] * len(model.latent_dims)
    assert model.encode(x).mean.shape == (3, 4) and model.decode(torch.randn(2, 4)).shape == (2, *image_shape)
    samples = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, *image_shape) and 0 <= samples.min() and samples.max() <= 1


def test_the_hierarchy_lists_its_layers_from_x_up_under_the_configured_sizes():
    model = small_model("hvae", latent_dim=3)
    assert model.latent_dims == (6, 5, 3)  # model.lower_latent_dims from x up, then latent_dim on top
    output = model(batch(), torch.randn(5, 14))
    assert [layer.posterior.mean.shape for layer in output.layers] == [(5, 6), (5, 5), (5, 3)]
    assert type(output.layers[-1].prior).__name__ == "StandardNormal"
    assert all(type(layer.prior).__name__ == "DiagonalGaussian" for layer in output.layers[:-1])


def test_residual_blocks_start_as_the_identity_and_every_weight_learns_in_a_step():
    model = small_model("resnet")
    blocks = [m for m in model.modules() if type(m).__name__ == "ResidualBlock"]
    assert blocks and all(block.alpha.item() == 0 for block in blocks)
    h = torch.randn(2, 8, 7, 7)
    assert torch.equal(blocks[0](h), h)
    for name in ("resnet", "hvae"):
        model, x = small_model(name), batch()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        objective = ELBO(kl_weight=1.0, gen_loss="bce", reduction="sum")
        losses = []
        for _ in range(5):
            terms = objective(model(x, torch.randn(5, sum(model.latent_dims))), x)
            optimizer.zero_grad()
            terms.loss.backward()
            optimizer.step()
            losses.append(terms.loss.item())
        unchanged = [k for k, v in model.state_dict().items() if torch.equal(v, before[k])]
        assert unchanged == [] and losses[-1] < losses[0], (name, unchanged, losses)


def test_the_hierarchys_kl_is_the_sum_of_its_layers_each_the_closed_form_given_the_layers_above():
    model, x = small_model("hvae"), batch()
    output = model(x, torch.randn(5, 15, generator=torch.Generator().manual_seed(3)))
    terms = ELBO(kl_weight=1.0, gen_loss="bce", reduction="sum")(output, x)
    reference = []
    for layer in output.layers:
        q = Normal(layer.posterior.mean, layer.posterior.std)
        p = (
            Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
            if layer is output.layers[-1]
            else Normal(layer.prior.mean, layer.prior.std)
        )
        reference.append(kl_divergence(q, p).sum(-1).mean().item())
    assert [t.item() for t in terms.layer_kl_nats] == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert terms.kl_nats.item() == pytest.approx(sum(t.item() for t in terms.layer_kl_nats), rel=1e-6)
    assert terms.names()[-3:] == ("kl_nats_z1", "kl_nats_z2", "kl_nats_z3")


def test_the_hierarchys_bound_at_k_1_is_its_single_sample_elbo_with_the_same_noise():
    model, x = small_model("hvae").eval(), batch()
    bound = iwae_log_likelihood(model, x, num_samples=1, generator=torch.Generator().manual_seed(7))
    eps = torch.randn(1, 5, 15, generator=torch.Generator().manual_seed(7))[0]
    with torch.no_grad():
        output = model(x, eps)
        elbo = Independent(Bernoulli(logits=output.logits), 3).log_prob(x)  # log p(x | z), summed over pixels
        for layer in output.layers:
            q = Independent(Normal(layer.posterior.mean, layer.posterior.std), 1)
            prior = layer.prior
            if layer is output.layers[-1]:
                p = Independent(Normal(torch.zeros_like(layer.z), torch.ones_like(layer.z)), 1)
            else:
                p = Independent(Normal(prior.mean, prior.std), 1)
            elbo = elbo + p.log_prob(layer.z) - q.log_prob(layer.z)
    assert torch.allclose(bound, elbo, atol=1e-3), (bound, elbo)


@pytest.mark.parametrize("name", [pytest.param("resnet", marks=pytest.mark.slow), "hvae"])  # resnet: 1.4 s more
def test_each_model_trains_checkpoints_and_evaluates_through_the_trainer(name, tmp_path):
    from vae import evaluate
    from vae.train import train

    overrides = [*TINY_DATA, *SMALL[name], "data.num_train=64", "epochs=1", "latent_dim=2", "reduction=sum"]
    metrics = train(compose_config([*overrides, "kl_weight=1", "free_bits=0.05", "kl_warmup_epochs=1"]), tmp_path)
    assert metrics["epoch"] == 1 and 0 < metrics["val"]["neg_elbo_nats"] < 1e4
    if name == "hvae":
        layers = [metrics["val"][f"kl_nats_z{i}"] for i in (1, 2, 3)]
        assert metrics["val"]["kl_nats"] == pytest.approx(sum(layers), rel=1e-5)
    evaluate.main([f"run={tmp_path}", "iwae_k=4", "split=val"])
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "evals").glob("*.json")]
    assert result["iwae_nll_nats"] <= result["neg_elbo_nats"] + 1.0  # the bound is tighter (one batch of noise)
    if name == "hvae":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert len(result["active_units_per_layer"]) == 3
        tags = set(EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"])
        assert {f"z_eval/val/{what}_z{i}" for what in ("active_units", "kl_nats") for i in (1, 2, 3)} <= tags


@pytest.mark.parametrize(
    "override,key",
    [
        ("model.lower_latent_dims=[]", "model.lower_latent_dims"),
        ("model.lower_latent_dims=[0]", "model.lower_latent_dims"),
        ("model.blocks=-1", "model.blocks"),
        ("model.channels=[]", "model.channels"),
        ("model.activation=gelu", "model.activation"),
    ],
)
def test_a_bad_model_value_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key} must be"):
        validate(compose_config(["model=hvae", override]))


def test_the_latent_size_of_the_mnist_like_top_layer_is_latent_dim():
    config = compose_dict(["model=hvae", "latent_dim=2"])
    config["data"]["image_shape"] = list(MNIST_LIKE["image_shape"])
    assert build_model(config).latent_dims == (100, 2)


def test_evaluation_counts_active_units_in_every_layer(tmp_path):
    from vae.bounds import active_units, layer_posterior_means
    from vae.evaluate import evaluate_run

    model, x = small_model("hvae").eval(), batch(n=12)
    means = layer_posterior_means(model, x)
    assert [m.shape for m in means] == [(12, 6), (12, 5), (12, 4)]
    assert torch.equal(means[-1], model.encode(x).mean)  # the top layer's is the encoder's
    with torch.no_grad():
        model.posteriors[0][-1].weight[:3] = 0  # the mean of z1's first 3 units no longer moves with x
        model.posteriors[0][-1].bias[:3] = 0
    images = (x * 255).to(torch.uint8)
    results = evaluate_run(model, images, iwae_k=2, batch_size=5, chunk=2, seed=0, progress=False)
    per_layer = results["active_units_per_layer"]
    assert len(per_layer) == 3 and per_layer[-1] == results["active_units"]
    expected = [active_units(m) for m in layer_posterior_means(model, x)]
    assert per_layer == expected and per_layer[0] <= 3


def test_one_latent_views_of_a_hierarchy_say_they_show_its_top_layer():
    from vae.latent import layer_note

    assert layer_note(small_model("resnet")) == ""
    assert layer_note(small_model("hvae")) == "; top layer z3 of 3 (lower layers at their prior mean)"

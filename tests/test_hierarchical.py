"""Several stochastic layers through the unchanged trainer and evaluation: a two-layer MLP VAE defined here.

x -> h -> q(z1|x), q(z2|z1); p(z2) = N(0, I), p(z1|z2) a diagonal Gaussian from an MLP, p(x|z1) Bernoulli.
It is added to `vae.build.MODELS` (the trainer builds it by name) and trained, checkpointed, resumed bit
for bit and evaluated (ELBO and IWAE bound) by `vae.train.train` and `vae.evaluate.main`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from vae import build
from vae.data import make_synthetic, to_model_input
from vae.distributions import DiagonalGaussian, LatentLayer, StandardNormal
from vae.model import VAEOutput
from vae.objectives import ELBO, IWAE

from conftest import MNIST_LIKE, TINY_DATA, compose_config


class TwoLayerVAE(nn.Module):
    """Two stochastic layers, z1 (next to x) and z2 (the top one, under the prior N(0, I))."""

    def __init__(self, *, image_shape: tuple[int, int, int], latent_dims: tuple[int, int], hidden: int):
        super().__init__()
        pixels, (dim1, dim2) = math.prod(image_shape), latent_dims
        self.image_shape, self.latent_dims, self.latent_dim = tuple(image_shape), tuple(latent_dims), dim2
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.Tanh(), nn.Linear(hidden, 2 * dim1))
        self.encoder_z2 = nn.Sequential(nn.Linear(dim1, hidden), nn.Tanh(), nn.Linear(hidden, 2 * dim2))
        self.prior_z1 = nn.Sequential(nn.Linear(dim2, hidden), nn.Tanh(), nn.Linear(hidden, 2 * dim1))
        self.decoder = nn.Sequential(nn.Linear(dim1, hidden), nn.Tanh(), nn.Linear(hidden, pixels))
        self.prior = StandardNormal(dim2)

    @staticmethod
    def gaussian(parameters: torch.Tensor) -> DiagonalGaussian:
        mean, log_var = parameters.chunk(2, -1)
        return DiagonalGaussian(mean, log_var)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> VAEOutput:
        if eps is None:
            eps = torch.randn(x.shape[0], sum(self.latent_dims), device=x.device)
        eps1, eps2 = eps.split(self.latent_dims, -1)  # (B, L) or (K, B, L) each
        q1 = self.gaussian(self.encoder(x))
        z1 = q1.rsample(eps1)
        q2 = self.gaussian(self.encoder_z2(z1))
        z2 = q2.rsample(eps2)
        p1 = self.gaussian(self.prior_z1(z2))
        logits = self.decoder(z1).view(*z1.shape[:-1], *self.image_shape)
        return VAEOutput(logits, (LatentLayer(q1, p1, z1), LatentLayer(q2, self.prior, z2)))

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """The top layer's posterior, q(z2|z1) at z1 = the mean of q(z1|x)."""
        return self.gaussian(self.encoder_z2(self.gaussian(self.encoder(x)).mean))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from a top-layer z2, z1 at the mean of p(z1|z2)."""
        return self.decoder(self.gaussian(self.prior_z1(z)).mean).view(-1, *self.image_shape)

    @torch.no_grad()
    def sample(self, num_samples: int, *, temperature: float = 1.0, generator: torch.Generator | None = None):
        z = self.prior.sample(num_samples, generator=generator, device=next(self.parameters()).device)
        return torch.sigmoid(self.decode(z * temperature).float())


def two_layer(model_cfg, *, image_shape, latent_dim: int) -> TwoLayerVAE:
    """The builder `model.name=two_layer` calls: z1 of 4 dims under a z2 of latent_dim, model.hidden_dims[0] wide."""
    return TwoLayerVAE(image_shape=image_shape, latent_dims=(4, latent_dim), hidden=model_cfg["hidden_dims"][0])


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(build.MODELS, "two_layer", two_layer)


BASE = [*TINY_DATA, "data.num_train=96", "model=mlp", "model.name=two_layer", "model.hidden_dims=[16]", "latent_dim=2"]
BASE += ["deterministic=true", "precision=fp32", "data.binarize=dynamic", "reduction=sum", "kl_weight=1"]


def _model_and_batch(num_images: int = 5):
    torch.manual_seed(0)
    model = TwoLayerVAE(image_shape=(1, 28, 28), latent_dims=(4, 2), hidden=16)
    x = to_model_input(make_synthetic(num_images, **MNIST_LIKE, seed=0).images, binarize_dynamic=True)
    return model, x


def _reference_log_weights(model: TwoLayerVAE, x: torch.Tensor, output: VAEOutput) -> torch.Tensor:
    """log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1) with torch.distributions: (K, B)."""
    (q1, p1, z1), (q2, _, z2) = output.layers

    def normal(d: DiagonalGaussian) -> Independent:
        return Independent(Normal(d.mean, torch.exp(0.5 * d.log_var)), 1)

    log_px = Bernoulli(logits=output.logits.flatten(-3)).log_prob(x.flatten(1)).sum(-1)
    log_p = normal(p1).log_prob(z1) + Independent(Normal(torch.zeros(2), torch.ones(2)), 1).log_prob(z2)
    return log_px + log_p - normal(q1).log_prob(z1) - normal(q2).log_prob(z2)


def test_the_output_carries_a_layer_each_and_the_top_ones_latent():
    model, x = _model_and_batch()
    one = model(x, torch.randn(5, 6))
    assert one.logits.shape == (5, 1, 28, 28) and [layer.z.shape for layer in one.layers] == [(5, 4), (5, 2)]
    assert one.z is one.layers[-1].z and one.mu is one.layers[-1].posterior.mean
    many = model(x, torch.randn(3, 5, 6))
    assert many.logits.shape == (3, 5, 1, 28, 28) and [layer.z.shape for layer in many.layers] == [(3, 5, 4), (3, 5, 2)]


def test_the_elbo_sums_the_layers_kls_each_in_closed_form():
    model, x = _model_and_batch()
    output = model(x, torch.randn(5, 6, generator=torch.Generator().manual_seed(1)))
    terms = ELBO(kl_weight=1.0, gen_loss="bce", reduction="sum")(output, x)
    (q1, p1, z1), (q2, _, _) = output.layers
    kl_z1 = torch.distributions.kl_divergence(Normal(q1.mean, q1.std), Normal(p1.mean, p1.std)).sum(-1).mean()
    kl_z2 = torch.distributions.kl_divergence(Normal(q2.mean, q2.std), Normal(0.0, 1.0)).sum(-1).mean()
    assert [t.item() for t in terms.layer_kl_nats] == pytest.approx([kl_z1.item(), kl_z2.item()], rel=1e-5)
    assert terms.kl_nats.item() == pytest.approx(kl_z1.item() + kl_z2.item(), rel=1e-5)
    assert terms.names()[-2:] == ("kl_nats_z1", "kl_nats_z2") and len(terms.scalars()) == len(terms.names())
    reference = -_reference_log_weights(model, x, output).mean()  # the single-sample ELBO: both KLs at z
    kl_z1_at_z = (q1.log_prob(z1) - p1.log_prob(z1)).mean()
    kl_z2_at_z = (q2.log_prob(output.z) - StandardNormal(2).log_prob(output.z)).mean()
    closed = reference.item() - kl_z1_at_z.item() - kl_z2_at_z.item() + kl_z1.item() + kl_z2.item()
    assert terms.loss.item() == pytest.approx(closed, rel=1e-5)


def test_the_iwae_log_weights_sum_every_layers_log_densities():
    model, x = _model_and_batch()
    eps = torch.randn(7, 5, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        output = model(x, eps)
        terms = IWAE(k=7)(output, x)
        log_w = _reference_log_weights(model, x, output)
    expected = -(torch.logsumexp(log_w, 0) - math.log(7)).mean()
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="one stochastic layer"):
        IWAE(k=7, estimator="dreg")(model(x, eps), x)


def test_a_two_layer_model_trains_resumes_bit_for_bit_and_evaluates(tmp_path, registered):
    from vae import evaluate
    from vae.train import resume_config, train

    metrics = train(compose_config([*BASE, "epochs=2"]), tmp_path / "straight")
    train(compose_config([*BASE, "epochs=1"]), tmp_path / "resumed")
    config, checkpoint = resume_config(tmp_path / "resumed", compose_config([*BASE, "epochs=2"]), ["epochs=2"])
    assert checkpoint["epoch_sums"].shape == (8,)  # the six terms and the two layers' KL
    train(config, tmp_path / "resumed", resume_from=checkpoint)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert [k for k in straight["model"] if not torch.equal(straight["model"][k], resumed["model"][k])] == []

    # metrics.json and TensorBoard report each layer's KL beside their sum
    saved = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for split in ("train", "val"):
        values = metrics[split]
        assert values["kl_nats"] == pytest.approx(values["kl_nats_z1"] + values["kl_nats_z2"], rel=1e-5)
    events = EventAccumulator(str(tmp_path / "straight"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert {"train/kl_nats_z1", "val/kl_nats_z2", "val/kl_nats"} <= set(events.Tags()["scalars"])
    assert "view/latent_grid" in events.Tags()["images"]  # the top layer's 2-d grid

    results = evaluate.main([f"run={tmp_path / 'straight'}", "iwae_k=8", "checkpoint=last"])
    assert math.isclose(results["neg_elbo_nats"], results["gen_nats"] + results["kl_nats"], rel_tol=1e-6)
    assert results["kl_nats"] == pytest.approx(results["kl_nats_z1"] + results["kl_nats_z2"], rel=1e-5)
    assert math.isfinite(results["iwae_nll_nats"]) and results["iwae_nll_nats"] < results["neg_elbo_nats"] + 1.0
    assert len(results["kl_per_dim"]) == 2  # the top layer's


def test_a_two_layer_model_trains_on_the_iwae_bound(tmp_path, registered):
    from vae.train import train

    metrics = train(compose_config([*BASE, "epochs=1", "objective=iwae", "objective.k=3"]), tmp_path)
    val = metrics["val"]
    # the k-sample bound, under the one-sample -ELBO beside it (up to the noise of 64 images)
    assert math.isfinite(val["loss"]) and val["loss"] < val["neg_elbo_nats"] + 1.0
    assert val["kl_nats"] == pytest.approx(val["kl_nats_z1"] + val["kl_nats_z2"], rel=1e-5)

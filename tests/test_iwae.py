"""The IWAE objective (Burda et al. 2015) and its DReG gradient, Burda's set-up, and fp32 evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from vae.bounds import log_importance_weights
from vae.build import build_scheduler
from vae.config import ConfigError, compose_dict, validate
from vae.data import make_synthetic, to_model_input
from vae.model import init_output_bias
from vae.objectives import ELBO, IWAE

from conftest import MNIST_LIKE, compose_config, make_vae, one_layer_output


def _model_and_batch(latent_dim: int = 3, num_images: int = 5, **model):
    torch.manual_seed(0)
    model = make_vae("mlp", latent_dim=latent_dim, hidden_dims=(16,), activation="tanh", **model)
    x = to_model_input(make_synthetic(num_images, **MNIST_LIKE, seed=0).images, binarize_dynamic=True)
    return model, x


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _reference_log_weights(model, x, eps, *, stop_posterior: bool = False):
    """log p(x|z) + log p(z) - log q(z|x) with torch.distributions: (K, B)."""
    posterior = model.encode(x)
    mu, log_var = posterior.mean, posterior.log_var
    sigma = torch.exp(0.5 * log_var)
    z = mu + sigma * eps  # (K, B, L)
    logits = model.decode(z.reshape(-1, z.shape[-1])).view(*z.shape[:2], -1)
    log_px_z = Bernoulli(logits=logits).log_prob(x.flatten(1).expand_as(logits)).sum(-1)
    q = Normal(mu.detach(), sigma.detach()) if stop_posterior else Normal(mu, sigma)
    return log_px_z + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


def test_iwae_with_one_sample_is_the_monte_carlo_elbo_in_value_and_gradient():
    model, x = _model_and_batch()
    eps = torch.randn(1, x.shape[0], 3, generator=torch.Generator().manual_seed(3))
    output = model(x, eps)
    terms = IWAE(k=1)(output, x)
    ours = _grads(model, terms.loss)

    reference_loss = -_reference_log_weights(model, x, eps)[0].mean()  # the ELBO with a Monte Carlo KL
    reference = _grads(model, reference_loss)
    assert terms.loss.item() == pytest.approx(reference_loss.item(), rel=1e-5)
    for name, grad in reference.items():
        assert torch.allclose(ours[name], grad, rtol=1e-4, atol=1e-5), name
    # and not the closed-form-KL ELBO: the objective is the bound, not vae_loss at k=1
    closed = ELBO(kl_weight=1.0, gen_loss="bce", reduction="sum")(
        one_layer_output(output.logits[0], output.mu, output.log_var), x
    )
    assert abs(closed.loss.item() - terms.loss.item()) > 1e-3


def test_iwae_loss_is_the_log_mean_of_importance_weights():
    model, x = _model_and_batch()
    eps = torch.randn(7, x.shape[0], 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        output = model(x, eps)
        terms = IWAE(k=7)(output, x)
        log_w = _reference_log_weights(model, x, eps)
    expected = -(torch.logsumexp(log_w, 0) - math.log(7)).mean()
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms.loss.item() < -log_w.mean().item()  # tighter than the average one-sample ELBO (Jensen)


def test_dreg_keeps_the_value_and_the_decoder_gradient_and_weights_the_encoders_by_squared_weights():
    model, x = _model_and_batch()
    k = 6
    eps = torch.randn(k, x.shape[0], 3, generator=torch.Generator().manual_seed(5))

    output = model(x, eps)
    iwae = IWAE(k)(output, x)
    plain = _grads(model, iwae.loss)
    output = model(x, eps)
    dreg = IWAE(k, estimator="dreg")(output, x)
    ours = _grads(model, dreg.loss)
    assert dreg.loss.item() == pytest.approx(iwae.loss.item(), rel=1e-6)

    # Reference (Tucker et al. 2018, eq. 5): decoder sum_k w~_k d log w_k; encoder
    # sum_k w~_k^2 d log w_k / d theta with q's parameters held in log q (z keeps them).
    log_w = _reference_log_weights(model, x, eps, stop_posterior=True)
    weights = torch.softmax(log_w.detach(), 0)
    decoder = [p for name, p in model.named_parameters() if name.startswith("decoder")]
    encoder = [p for name, p in model.named_parameters() if name.startswith("encoder")]
    decoder_ref = torch.autograd.grad(-(weights * log_w).sum(0).mean(), decoder, retain_graph=True)
    encoder_ref = torch.autograd.grad(-(weights.pow(2) * log_w).sum(0).mean(), encoder)
    names = [name for name, _ in model.named_parameters()]
    for name, grad in zip([n for n in names if n.startswith("decoder")], decoder_ref, strict=True):
        assert torch.allclose(ours[name], grad, rtol=1e-4, atol=1e-6), name
        assert torch.allclose(ours[name], plain[name], rtol=1e-3, atol=1e-5), name  # the decoder's is IWAE's
    for name, grad in zip([n for n in names if n.startswith("encoder")], encoder_ref, strict=True):
        assert torch.allclose(ours[name], grad, rtol=1e-4, atol=1e-6), name
    assert not torch.allclose(ours["encoder.mu.weight"], plain["encoder.mu.weight"], rtol=1e-2)


@pytest.mark.parametrize(
    "override, key",
    [
        ("reduction=mean", "reduction"),
        ("kl_weight=0.5", "kl_weight"),
        ("gen_loss=l2", "gen_loss"),
        ("free_bits=0.1", "free_bits"),
        ("kl_warmup_epochs=2", "kl_warmup_epochs"),
    ],
)
def test_iwae_with_anything_but_the_true_likelihood_is_refused_naming_the_key(override, key):
    good = ["data=synthetic", "objective=iwae", "reduction=sum", "kl_weight=1"]
    validate(compose_config(good))  # the true likelihood: accepted
    with pytest.raises(ConfigError, match=rf"objective=iwae.*got .*{key}="):
        validate(compose_config([*good, override]))


def test_bad_objective_values_are_refused_by_name():
    base = ["data=synthetic", "objective=iwae", "reduction=sum", "kl_weight=1"]
    with pytest.raises(ConfigError, match="objective.k"):
        validate(compose_config([*base, "objective.k=0"]))
    with pytest.raises(ConfigError, match="objective.estimator"):
        validate(compose_config([*base, "objective.estimator=rws"]))


def test_evaluations_log_likelihood_is_summed_in_fp32_under_bf16():
    model, x = _model_and_batch(latent_dim=4, num_images=3)
    eps = torch.randn(8, 3, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        posterior = model.encode(x)
        mu, log_var = posterior.mean, posterior.log_var
        # What log p(x|z) must be for the decoder's bf16 logits: summed in float64.
        z = mu + torch.exp(0.5 * log_var) * eps
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model.decode(z.transpose(0, 1).reshape(24, -1))
        logits = logits.double().view(3, 8, -1).transpose(0, 1)
        exact = Bernoulli(logits=logits).log_prob(x.double().flatten(1)).sum(-1)
        exact += (Normal(0.0, 1.0).log_prob(z) - Normal(mu, torch.exp(0.5 * log_var)).log_prob(z)).double().sum(-1)
        ours = log_importance_weights(model, x, posterior, eps, autocast_dtype=torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not reach the sum either
            nested = log_importance_weights(model, x, posterior, eps, autocast_dtype=torch.bfloat16)
    assert ours.dtype == torch.float32
    # bf16 sums of ~500 nats would be off by whole nats; fp32 agrees to a thousandth.
    assert (ours.double() - exact).abs().max() < 1e-3
    assert (nested.double() - exact).abs().max() < 1e-3


def test_output_bias_starts_at_the_logit_of_the_clipped_pixel_means():
    model, _ = _model_and_batch()
    means = torch.rand(1, 28, 28)
    means[0, 0, :3] = 0.0  # pixels that are 0 in every training image
    means[0, 1, 0] = 1.0
    init_output_bias(model, means)
    bias = model.decoder.output_bias.view(28, 28)
    assert bias[0, 0].item() == pytest.approx(math.log(1e-3 / (1 - 1e-3)), rel=1e-5)
    assert bias[1, 0].item() == pytest.approx(math.log((1 - 1e-3) / 1e-3), rel=1e-5)
    assert torch.allclose(torch.sigmoid(bias[5:]), means[0, 5:].clamp(1e-3, 1 - 1e-3), atol=1e-5)
    # The conv decoder has one bias per channel: the logit of the mean of the clipped channel mean.
    conv = make_vae("conv", latent_dim=2)
    init_output_bias(conv, torch.full((1, 28, 28), 0.25))
    assert conv.decoder.output_bias.item() == pytest.approx(math.log(0.25 / 0.75), rel=1e-5)


def test_burdas_stepwise_schedule_changes_lr_at_every_stage_boundary():
    config = compose_dict(["experiment=burda_vae", "optim.stage_divisor=3"])
    stages = config["optim"]["stages"]
    assert [epochs for epochs, _ in stages] == [3**i for i in range(8)]
    assert [lr for _, lr in stages] == pytest.approx([1e-3 * 10 ** (-i / 7) for i in range(8)], rel=1e-12)
    assert config["epochs"] == math.ceil(3280 / 3)  # the epochs follow the divided stages

    steps_per_epoch = 30
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=config["optim"]["lr"])
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=steps_per_epoch)
    lrs = []
    for _ in range(round(sum(3**i for i in range(6)) / 3 * steps_per_epoch) + 2):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    end = 0.0
    for i in range(5):  # each stage's last step and the next stage's first step
        end += 3**i / 3 * steps_per_epoch
        last, first = round(end) - 1, round(end)
        assert lrs[last] == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-9), i
        assert lrs[first] == pytest.approx(1e-3 * 10 ** (-(i + 1) / 7), rel=1e-9), i


def test_burda_experiments_set_the_papers_model_and_keep_model_mlps_defaults():
    vae = compose_dict(["experiment=burda_vae"])
    assert vae["model"]["hidden_dims"] == [200, 200] and vae["model"]["activation"] == "tanh"
    assert vae["model"]["output_bias"] == "data_mean" and vae["latent_dim"] == 50
    assert (vae["batch_size"], vae["optim"]["eps"], vae["data"]["binarize"]) == (20, 1e-4, "dynamic")
    assert (vae["reduction"], vae["kl_weight"], vae["objective"]["name"]) == ("sum", 1.0, "elbo")
    iwae = compose_dict(["experiment=burda_iwae"])
    assert iwae["objective"] == {"name": "iwae", "k": 5, "estimator": "iwae"}
    validate(compose_config(["experiment=burda_iwae"]))
    plain = compose_dict(["model=mlp"])
    assert plain["model"]["hidden_dims"] == [400] and plain["model"]["activation"] == "relu"
    assert plain["model"]["output_bias"] == "init"


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_training_on_the_iwae_bound_validates_on_it_and_resumes_bit_for_bit(tmp_path, estimator):
    from vae.train import resume_config, train

    from conftest import TINY_DATA

    base = [
        *TINY_DATA,
        "data.num_train=96",
        "model=mlp",
        "model.hidden_dims=[16]",
        "deterministic=true",
        "precision=fp32",
    ]
    base += ["objective=iwae", "objective.k=3", f"objective.estimator={estimator}", "reduction=sum", "kl_weight=1"]
    base += ["model.output_bias=data_mean", "data.binarize=dynamic"]
    metrics = train(compose_config([*base, "epochs=2"]), tmp_path / "straight")
    train(compose_config([*base, "epochs=1"]), tmp_path / "resumed")
    config, checkpoint = resume_config(tmp_path / "resumed", compose_config([*base, "epochs=2"]), ["epochs=2"])
    train(config, tmp_path / "resumed", resume_from=checkpoint)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert [k for k in straight["model"] if not torch.equal(straight["model"][k], resumed["model"][k])] == []
    # The validation loss is the k-sample bound: a few nats under the one-sample -ELBO beside it.
    val = metrics["val"]
    assert math.isfinite(val["loss"]) and val["loss"] < val["neg_elbo_nats"]


def test_burda_conv_keeps_the_protocol_and_swaps_in_the_wide_conv_model():
    conv = compose_dict(["experiment=burda_conv"])
    vae = compose_dict(["experiment=burda_vae"])
    assert conv["model"]["name"] == "conv" and conv["model"]["hidden_dim"] == 512
    assert conv["model"]["output_bias"] == "data_mean" and conv["latent_dim"] == 50
    assert {key: conv[key] for key in ("optim", "data", "objective", "batch_size", "epochs", "reduction")} == {
        key: vae[key] for key in ("optim", "data", "objective", "batch_size", "epochs", "reduction")
    }
    validate(compose_config(["experiment=burda_conv"]))

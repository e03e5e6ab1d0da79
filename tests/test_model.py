"""The VAE module: shapes, the reparameterization, and that training moves every weight."""

from __future__ import annotations

import pytest
import torch

from vae.data import make_synthetic, to_model_input
from vae.losses import vae_loss
from vae.model import ConvTranspose2d, FewChannelsConv2d, Reparameterize, build_vae


@pytest.mark.parametrize("latent_dim", [1, 2, 16])
@pytest.mark.parametrize("name", ["conv", "mlp"])
def test_forward_shapes_for_each_model_and_latent_dim(name, latent_dim):
    model = build_vae(name=name, image_shape=(1, 28, 28), latent_dim=latent_dim)
    x = torch.rand(3, 1, 28, 28)
    output = model(x)
    assert output.logits.shape == (3, 1, 28, 28)
    assert output.mu.shape == output.log_var.shape == output.z.shape == (3, latent_dim)
    assert model.decode(torch.zeros(5, latent_dim)).shape == (5, 1, 28, 28)


@pytest.mark.parametrize("image_shape", [(3, 32, 32), (1, 27, 27), (3, 64, 48)])
def test_conv_model_builds_for_other_image_shapes(image_shape):
    model = build_vae(name="conv", image_shape=image_shape, latent_dim=4, channels=(8, 16, 16, 16), hidden_dim=16)
    assert model(torch.rand(2, *image_shape)).logits.shape == (2, *image_shape)


def test_conv_encoder_runs_its_convs_in_sequence():
    # The lecture's slip fed conv2's output to conv4; here all four convs are on the path.
    model = build_vae(name="conv", image_shape=(1, 28, 28), latent_dim=2)
    convs = [m for m in model.encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64, 64]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (1, 1), (1, 1)]
    output = model(torch.rand(2, 1, 28, 28))
    output.mu.sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)


def test_decoder_emits_logits_with_both_signs():
    # The lecture's last ReLU made outputs >= 0; logits must be free to go negative.
    model = build_vae(name="conv", image_shape=(1, 28, 28), latent_dim=2)
    logits = model.decode(torch.randn(16, 2))
    assert (logits < 0).any() and (logits > 0).any()


def test_reparameterize_gradients_reach_mu_and_log_var():
    mu = torch.tensor([[0.5, -1.0]], requires_grad=True)
    log_var = torch.tensor([[0.2, -0.4]], requires_grad=True)
    eps = torch.tensor([[1.5, -0.3]])
    z = Reparameterize()(mu, log_var, eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    # dz/dlog_var = 0.5 * exp(0.5 * log_var) * eps: the 0.5 the book drops.
    assert torch.allclose(log_var.grad, 0.5 * torch.exp(0.5 * log_var.detach()) * eps)


def test_reparameterize_z_has_mean_mu_and_variance_sigma_squared():
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0, 0.0]).expand(200_000, 3)
    log_var = torch.tensor([0.0, 1.0, -2.0]).expand(200_000, 3)
    z = Reparameterize()(mu, log_var)
    assert torch.allclose(z.mean(0), mu[0], atol=0.02)
    assert torch.allclose(z.var(0), log_var[0].exp(), rtol=0.02)


@pytest.mark.parametrize("name", ["conv", "mlp"])
def test_optimizer_steps_change_every_weight_and_lower_the_loss(name):
    torch.manual_seed(0)
    model = build_vae(name=name, image_shape=(1, 28, 28), latent_dim=2)
    x = to_model_input(make_synthetic(16, seed=1).images)
    eps = torch.randn(16, 2)  # fixed noise, so the loss is a deterministic function of the weights
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {key: value.clone() for key, value in model.state_dict().items()}

    def loss() -> torch.Tensor:
        output = model(x, eps)
        return vae_loss(output.logits, x, output.mu, output.log_var, kl_weight=1e-3).loss

    first = loss().item()
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    unchanged = [key for key, value in model.state_dict().items() if torch.equal(value, before[key])]
    assert unchanged == []
    assert loss().item() < first


def test_eval_forward_changes_no_weight():
    model = build_vae(name="conv", image_shape=(1, 28, 28), latent_dim=2).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        model(torch.rand(8, 1, 28, 28))
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_sample_returns_images_in_unit_range():
    model = build_vae(name="conv", image_shape=(1, 28, 28), latent_dim=3)
    images = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1


def test_log_var_is_clamped_so_sigma_stays_finite():
    model = build_vae(name="mlp", image_shape=(1, 28, 28), latent_dim=2)
    with torch.no_grad():
        model.encoder.log_var.bias.fill_(1e4)
    _, log_var = model.encode(torch.rand(2, 1, 28, 28))
    assert torch.isfinite(torch.exp(0.5 * log_var)).all()


def test_unknown_model_name_is_refused_by_name():
    with pytest.raises(ValueError, match="resnet"):
        build_vae(name="resnet", image_shape=(1, 28, 28), latent_dim=2)


def _forward_and_grads(module, x):
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
    return y, x.grad, [p.grad for p in module.parameters()]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("fast", "reference"),
    [
        (
            lambda: ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1),
            lambda: torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1),
        ),
        (lambda: FewChannelsConv2d(5, 1, 3, padding=1), lambda: torch.nn.Conv2d(5, 1, 3, padding=1)),
        (lambda: FewChannelsConv2d(5, 3, 3, padding=1), lambda: torch.nn.Conv2d(5, 3, 3, padding=1)),
    ],
)
def test_fast_conv_layers_match_torch_in_value_and_gradient(fast, reference, channels_last):
    torch.manual_seed(0)
    fast, reference = fast(), reference()
    torch.nn.init.normal_(fast.bias)  # a non-zero bias, so a misplaced bias shows
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(3, fast.in_channels, 7, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y, x_grad, grads = _forward_and_grads(fast, x)
    y_ref, x_grad_ref, grads_ref = _forward_and_grads(reference, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_grad, x_grad_ref, rtol=1e-5, atol=1e-5)
    for grad, grad_ref in zip(grads, grads_ref):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-4)


def test_fast_conv_layers_keep_bf16_under_autocast():
    x = torch.randn(2, 6, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        up = ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)(x)
        out = FewChannelsConv2d(4, 1, 3, padding=1)(up)
    assert up.dtype == out.dtype == torch.bfloat16  # an fp32 bias must not promote the activations


def test_conv_model_flattens_channels_last_features_without_a_copy():
    model = build_vae(name="conv", image_shape=(1, 28, 28), latent_dim=2).to(memory_format=torch.channels_last)
    features = model.encoder.convs(torch.rand(2, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    flat = model.encoder.dense[0](features)
    assert flat.data_ptr() == features.data_ptr()  # a view in (H, W, C) order
    decoded = model.decoder.dense(torch.randn(2, 2)).view(2, 14, 14, 64).permute(0, 3, 1, 2)
    assert decoded.is_contiguous(memory_format=torch.channels_last)


def test_conv_checkpoint_in_the_old_chw_order_loads_to_the_same_function():
    """State dicts written before the (H, W, C) flatten (module version 1) are converted on load."""
    torch.manual_seed(0)
    model = build_vae(name="conv", image_shape=(1, 12, 10), latent_dim=3)
    state = model.state_dict()
    channels, height, width = model.encoder.feature_shape
    old = type(state)((key, value.clone()) for key, value in state.items())
    old._metadata = {key: dict(value) for key, value in state._metadata.items()}
    old._metadata["encoder"]["version"] = old._metadata["decoder"]["version"] = 1
    # Rewrite the dense weights as the CHW-order model held them.
    encoder_weight = state["encoder.dense.1.weight"]
    old["encoder.dense.1.weight"] = encoder_weight.view(-1, height, width, channels).permute(0, 3, 1, 2).flatten(1)
    decoder_weight, decoder_bias = state["decoder.dense.2.weight"], state["decoder.dense.2.bias"]
    old["decoder.dense.2.weight"] = decoder_weight.view(height, width, channels, -1).permute(2, 0, 1, 3).flatten(0, 2)
    old["decoder.dense.2.bias"] = decoder_bias.view(height, width, channels).permute(2, 0, 1).flatten()
    assert not torch.equal(old["encoder.dense.1.weight"], encoder_weight)

    loaded = build_vae(name="conv", image_shape=(1, 12, 10), latent_dim=3)
    loaded.load_state_dict(old)
    x, z = torch.rand(4, 1, 12, 10), torch.randn(4, 3)
    torch.testing.assert_close(loaded.encode(x), model.encode(x))
    torch.testing.assert_close(loaded.decode(z), model.decode(z))
    assert loaded.state_dict()._metadata["encoder"]["version"] == 2

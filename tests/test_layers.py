"""The CPU-tuned layers equal the stock PyTorch layers in value and gradient, and keep bf16 under autocast."""

from __future__ import annotations

import pytest
import torch

from vae.layers import ConvTranspose2d, FewChannelsConv2d

from conftest import make_vae


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
    model = make_vae("conv", image_shape=(1, 28, 28), latent_dim=2).to(memory_format=torch.channels_last)
    features = model.encoder.convs(torch.rand(2, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    flat = model.encoder.dense[0](features)
    assert flat.data_ptr() == features.data_ptr()  # a view in (H, W, C) order
    decoded = model.decoder.dense(torch.randn(2, 2)).view(2, 14, 14, 64).permute(0, 3, 1, 2)
    assert decoded.is_contiguous(memory_format=torch.channels_last)

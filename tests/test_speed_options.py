"""Speed options keep the loss curve of fp32 eager: same data, same noise, same steps, losses within noise.

The noise is measured: fp32 eager run again with other batches and other eps (80 steps, the
mean of the last 10 losses). torch.compile is left out: on CPU it takes half a minute to
compile and `compile=auto` turns it off there.
"""

from __future__ import annotations

import pytest
import torch

from vae.data import make_synthetic
from vae.objectives import ELBO
from vae.runtime import Runtime, cpu_supports_bf16
from vae.step import batch_input, forward_backward

from conftest import MNIST_LIKE, make_vae

LECTURE_LOSS = ELBO(kl_weight=1e-3, gen_loss="bce", reduction="mean")


def losses_after_training(runtime: Runtime, *, steps: int = 80, noise_seed: int = 1) -> list[float]:
    torch.manual_seed(0)
    images = make_synthetic(512, **MNIST_LIKE, seed=0).images
    model = make_vae("conv", image_shape=(1, 28, 28), latent_dim=2)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    generator = torch.Generator().manual_seed(noise_seed)
    losses = []
    for _ in range(steps):
        index = torch.randint(0, len(images), (64,), generator=generator)
        eps = torch.randn(64, 2, generator=generator)
        x = batch_input(images, index, runtime=runtime)
        terms, _ = forward_backward(model, optimizer, x, runtime=runtime, objective=LECTURE_LOSS, eps=eps)
        optimizer.step()
        losses.append(terms.loss.item())
    return losses


def _runtime(**overrides) -> Runtime:
    settings = dict(
        device="cpu",
        threads=2,
        precision="fp32",
        compile=False,
        channels_last=False,
        allocator="glibc",
        deterministic=False,
    )
    return Runtime(**{**settings, **overrides})


def tail(losses: list[float]) -> float:
    return sum(losses[-10:]) / 10


@pytest.fixture(scope="module")
def fp32_reference() -> tuple[float, float]:
    """fp32 eager's final loss, and the noise: how far it moves with other batches and other eps."""
    reference = tail(losses_after_training(_runtime()))
    noise = max(abs(tail(losses_after_training(_runtime(), noise_seed=seed)) - reference) for seed in (2, 3))
    return reference, noise


@pytest.mark.slow  # four short training runs, the fp32 reference's included (about 25 s on 2 cores)
@pytest.mark.parametrize(
    "option",
    [
        pytest.param({"channels_last": True}, id="channels_last"),
        pytest.param(
            {"precision": "bf16", "channels_last": True},
            id="bf16+channels_last",
            marks=pytest.mark.skipif(
                not cpu_supports_bf16(), reason="bf16 autocast is slow emulation on this CPU; auto keeps fp32"
            ),
        ),
    ],
)
def test_speed_option_keeps_the_fp32_eager_loss_curve(option, fp32_reference):
    reference, noise = fp32_reference
    fast_losses = losses_after_training(_runtime(**option))
    assert abs(tail(fast_losses) - reference) <= max(3 * noise, 0.005 * reference)
    assert tail(fast_losses) < 0.95 * fast_losses[0]  # and it learned


def test_the_trainers_adam_is_fused_and_makes_the_per_tensor_update():
    from vae.build import build_optimizer

    # eps 1e-3, not the trainer's 1e-7: where a gradient is ~0, m / (sqrt(v) + 1e-7) is about +-1 whatever
    # its size, so a last-bit difference between two correct kernels flips whole steps of lr (seen on an
    # AVX512 EPYC at 1 thread: 48 weights off by 1e-3 after 5 steps); a larger eps keeps the comparison
    # about the update, not about the sign of rounding noise.
    adam = dict(name="adam", lr=1e-2, betas=[0.9, 0.999], eps=1e-3, weight_decay=0.0)
    torch.manual_seed(0)
    fused_model = make_vae("conv", image_shape=(1, 12, 12), latent_dim=2)
    loop_model = make_vae("conv", image_shape=(1, 12, 12), latent_dim=2)
    loop_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model.parameters(), {"optim": adam})
    loop = torch.optim.Adam(loop_model.parameters(), lr=1e-2, eps=1e-3, foreach=False)
    assert fused.defaults["fused"]
    x = torch.rand(8, 1, 12, 12)
    for _ in range(5):
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            optimizer.zero_grad()
            output = model(x, torch.zeros(8, 2))
            torch.nn.functional.binary_cross_entropy_with_logits(output.logits, x).backward()
            optimizer.step()
    for (name, a), b in zip(fused_model.state_dict().items(), loop_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)  # steps move weights by ~1e-2
    assert not torch.equal(
        fused_model.encoder.mu.weight, make_vae("conv", image_shape=(1, 12, 12), latent_dim=2).encoder.mu.weight
    )

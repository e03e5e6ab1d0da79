"""The CUDA path, on a GPU: experiments/gpu/run.sh runs these there (`pytest -m gpu`).

Without a CUDA device they are skipped, saying so. `VAE_GPU_TESTS_DEVICE=cpu pytest -m gpu tests/test_gpu.py`
runs the same code on the CPU (gloo for nccl) to check the tests themselves on a machine without a GPU;
what they compare then is the CPU against itself.
"""

from __future__ import annotations

import copy
import json
import os
import socket

import pytest
import torch

from vae.bounds import iwae_log_likelihood
from vae.build import build_model, build_optimizer
from vae.config import compose_dict
from vae.objectives import build_objective
from vae.runtime import exact_fp32, resolve_runtime
from vae.step import batch_input, forward_backward
from vae.train import resume_config, train

from conftest import TINY, compose_config

DEVICE = os.environ.get("VAE_GPU_TESTS_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(),
        reason="needs a CUDA GPU (experiments/gpu/run.sh runs these on one; VAE_GPU_TESTS_DEVICE=cpu checks them here)",
    ),
]
# bf16 keeps 8 bits of mantissa: one step's loss under autocast is within 2 % of fp32's (measured on the
# lecture model at batch 64: about 0.1-0.5 % on an H100), and its gradient points the same way.
LOSS_RTOL = 0.02
GRAD_COSINE = 0.99


def _step(forward, model, config, runtime, x_uint8, eps):
    optimizer = build_optimizer(model.parameters(), config)
    objective = build_objective(config)
    x = batch_input(x_uint8, torch.arange(len(x_uint8)), runtime=runtime)
    terms, _ = forward_backward(forward, optimizer, x, runtime=runtime, objective=objective, eps=eps)
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return terms.loss.item(), grads, optimizer


def test_the_auto_training_step_equals_fp32_in_loss_within_its_tolerance():
    """bf16 autocast, channels_last and torch.compile as `auto` picks them on the device, against exact fp32."""
    config = compose_dict(["latent_dim=2", "kl_weight=1e-3", "batch_size=64"])
    auto = resolve_runtime(
        device=DEVICE, threads=0, precision="auto", compile="auto", channels_last="auto", deterministic=False
    )
    exact = resolve_runtime(
        device=DEVICE, threads=0, precision="fp32", compile=False, channels_last=False, deterministic=False
    )
    if DEVICE == "cuda":
        assert auto.compile and auto.channels_last
        assert auto.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    torch.manual_seed(0)
    reference = build_model(config).to(DEVICE)
    model = copy.deepcopy(reference)
    images = ((torch.rand(64, 1, 28, 28) > 0.7) * 255).to(torch.uint8).to(DEVICE)
    eps = torch.randn(64, 2, device=DEVICE)
    with exact_fp32():
        exact_loss, exact_grads, _ = _step(reference, reference, config, exact, images, eps)
    if auto.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if auto.compile else model
    auto_loss, auto_grads, _ = _step(forward, model, config, auto, images, eps)
    assert abs(auto_loss - exact_loss) <= LOSS_RTOL * abs(exact_loss), (auto_loss, exact_loss)
    cosine = torch.nn.functional.cosine_similarity(auto_grads, exact_grads, dim=0).item()
    assert cosine >= GRAD_COSINE, cosine


@pytest.mark.parametrize("first, second", [(DEVICE, "cpu"), ("cpu", DEVICE)])
def test_a_checkpoint_saved_on_one_device_resumes_on_the_other(tmp_path, first, second):
    run_dir = tmp_path / "run"
    train(compose_config([*TINY, "epochs=1", f"device={first}"]), run_dir)
    overrides = ["epochs=2", f"device={second}"]
    config, checkpoint = resume_config(run_dir, compose_config([*TINY, *overrides]), overrides)
    metrics = train(config, run_dir, resume_from=checkpoint)
    assert metrics["epoch"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(torch.isfinite(torch.tensor(h["val_loss"])) for h in metrics["history"])
    resumed = json.loads((run_dir / "run.json").read_text())["resumes"][0]
    assert resumed["saved_runtime"]["device"] == first and resumed["runtime"]["device"] == second


def test_the_iwae_bound_on_the_device_equals_the_cpu_s_on_the_same_samples():
    config = compose_dict(["latent_dim=8", "reduction=sum", "kl_weight=1"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    x = (torch.rand(16, 1, 28, 28) > 0.7).float()
    with torch.no_grad(), exact_fp32():
        on_cpu = iwae_log_likelihood(model, x, num_samples=200, chunk=64, generator=torch.Generator().manual_seed(1))
        model.to(DEVICE)
        on_device = iwae_log_likelihood(
            model, x.to(DEVICE), num_samples=200, chunk=64, generator=torch.Generator().manual_seed(1)
        ).cpu()
    torch.testing.assert_close(on_device, on_cpu, rtol=1e-5, atol=1e-3)  # nats per image, ~ -500 here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_at_world_size_one_takes_the_same_step_as_the_plain_model(monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    backend = "nccl" if DEVICE == "cuda" else "gloo"
    config = compose_dict([*TINY, "latent_dim=2"])
    runtime = resolve_runtime(
        device=DEVICE, threads=0, precision="fp32", compile=False, channels_last=False, deterministic=True
    )
    torch.manual_seed(0)
    plain = build_model(config).to(DEVICE)
    wrapped_model = copy.deepcopy(plain)
    images = ((torch.rand(32, 1, 28, 28) > 0.7) * 255).to(torch.uint8).to(DEVICE)
    eps = torch.randn(32, 2, device=DEVICE)
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        assert dist.get_backend() == backend
        wrapped = DistributedDataParallel(wrapped_model, device_ids=[0] if DEVICE == "cuda" else None)
        with exact_fp32():
            plain_loss, _, plain_optimizer = _step(plain, plain, config, runtime, images, eps)
            ddp_loss, _, ddp_optimizer = _step(wrapped, wrapped_model, config, runtime, images, eps)
            plain_optimizer.step()
            ddp_optimizer.step()
    finally:
        dist.destroy_process_group()
    assert ddp_loss == pytest.approx(plain_loss, rel=1e-6)
    for (name, a), b in zip(plain.state_dict().items(), wrapped_model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)

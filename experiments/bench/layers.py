"""Why the project's conv model is laid out as it is: each choice against stock PyTorch, measured in one process.

    python experiments/bench/layers.py [--batch-size 128] [--out experiments/bench/layers.json]

Every row is a ratio of medians of interleaved timings (A, B, A, B, ...) in the project's
default runtime (bf16 autocast where the CPU has it, channels_last, tuned malloc), so a
noisy machine moves both sides alike:

- the whole training step: the plain lecture model (stock layers) against vae.model;
- the transposed conv's backward with its bias inside oneDNN's deconvolution or added after;
- the last conv (32 -> 1 channel) as oneDNN's conv or as a depthwise conv and a channel sum;
- the ReLU backward behind a (C, H, W) flatten (gradient in NCHW, activation channels_last)
  against the (H, W, C) flatten (both channels_last);
- Adam's default per-tensor loop on CPU against its fused kernel;
- the importance-weighted bound: 4096 against 512 decodes per call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import PlainLectureVAE  # noqa: E402

from vae.bounds import log_importance_weights  # noqa: E402
from vae.build import build_model  # noqa: E402
from vae.config import compose_dict  # noqa: E402
from vae.distributions import DiagonalGaussian  # noqa: E402
from vae.layers import ConvTranspose2d, FewChannelsConv2d  # noqa: E402
from vae.objectives import ELBO  # noqa: E402
from vae.runtime import apply_runtime, autocast_context, provenance, resolve_runtime  # noqa: E402
from vae.step import batch_input, forward_backward  # noqa: E402

CL = torch.channels_last
LECTURE_LOSS = ELBO(kl_weight=1e-3, gen_loss="bce", reduction="mean")


def interleaved(a, b, *, rounds: int = 7, repeat: int = 5, warmup: int = 3) -> tuple[float, float]:
    """Median seconds per call of a and of b, timed alternately."""
    for _ in range(warmup):
        a(), b()
    times = {a: [], b: []}
    for _ in range(rounds):
        for fn in (a, b):
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            times[fn].append((time.perf_counter() - start) / repeat)
    return statistics.median(times[a]), statistics.median(times[b])


def training_step(model, runtime, batch_size: int):
    model = model.to(memory_format=CL) if runtime.channels_last else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (8192, 1, 28, 28), dtype=torch.uint8)

    def step():
        x = batch_input(images, torch.randint(0, len(images), (batch_size,)), runtime=runtime)
        forward_backward(model, optimizer, x, runtime=runtime, objective=LECTURE_LOSS)
        optimizer.step()

    return step


def forward_backward_of(module, x, runtime):
    x = x.requires_grad_()

    def run():
        with autocast_context(runtime.device, runtime.autocast_dtype):
            y = module(x)
        y.backward(torch.ones_like(y))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="experiments/bench/layers.json")
    args = parser.parse_args()
    runtime = resolve_runtime(
        device="cpu", threads=0, precision="auto", compile=False, channels_last="auto", deterministic=False
    )
    apply_runtime(runtime, seed=0)
    batch = args.batch_size
    rows = []

    def row(name: str, stock: str, project: str, a, b, per: str = "call") -> None:
        t_stock, t_project = interleaved(a, b)
        rows.append(dict(what=name, stock=stock, project=project, stock_ms=t_stock * 1e3, project_ms=t_project * 1e3))
        print(f"{name:38s} {t_stock * 1e3:8.2f} ms -> {t_project * 1e3:8.2f} ms per {per}  x{t_stock / t_project:.2f}")

    print(f"runtime: {runtime.as_dict()}, batch {batch}\n")
    model = build_model(compose_dict(["experiment=lecture"]))
    row(
        "training step (whole model)",
        "PlainLectureVAE",
        "vae.model",
        training_step(PlainLectureVAE(), runtime, batch),
        training_step(model, runtime, batch),
        per="step",
    )

    def adam_step(**options):
        parameters = list(build_model(compose_dict(["experiment=lecture"])).parameters())
        for parameter in parameters:
            parameter.grad = torch.randn_like(parameter)
        return torch.optim.Adam(parameters, lr=1e-3, **options).step

    row("Adam step (927k parameters)", "per-tensor loop", "fused", adam_step(), adam_step(fused=True), per="step")

    x = torch.randn(batch, 64, 14, 14).contiguous(memory_format=CL)
    stock = torch.nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1).to(memory_format=CL)
    ours = ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1).to(memory_format=CL)
    row(
        "transposed conv 64->32, fwd + bwd",
        "bias in oneDNN",
        "bias added after",
        forward_backward_of(stock, x.clone(), runtime),
        forward_backward_of(ours, x.clone(), runtime),
    )

    x = torch.randn(batch, 32, 28, 28).contiguous(memory_format=CL)
    stock = torch.nn.Conv2d(32, 1, 3, padding=1).to(memory_format=CL)
    ours = FewChannelsConv2d(32, 1, 3, padding=1).to(memory_format=CL)
    row(
        "last conv 32->1, fwd + bwd",
        "oneDNN conv",
        "depthwise + sum",
        forward_backward_of(stock, x.clone(), runtime),
        forward_backward_of(ours, x.clone(), runtime),
    )

    dtype = runtime.autocast_dtype or torch.float32
    activation = torch.randn(batch, 64, 14, 14).contiguous(memory_format=CL).to(dtype)
    grad_nchw = torch.randn(batch, 64, 14, 14).to(dtype)
    grad_cl = grad_nchw.contiguous(memory_format=CL)
    row(
        "ReLU backward after the flatten",
        "(C, H, W) flatten",
        "(H, W, C) flatten",
        lambda: torch.ops.aten.threshold_backward(grad_nchw, activation, 0),
        lambda: torch.ops.aten.threshold_backward(grad_cl, activation, 0),
    )

    decoder_model = build_model(compose_dict(["experiment=lecture", "latent_dim=32"])).eval().to(memory_format=CL)
    images = torch.bernoulli(torch.full((512, 1, 28, 28), 0.2))

    def bound(images_per_call: int, samples_per_image: int):
        x = images[:images_per_call]
        posterior = DiagonalGaussian(torch.zeros(images_per_call, 32), torch.zeros(images_per_call, 32))

        @torch.no_grad()
        def run():
            for _ in range(4096 // (images_per_call * samples_per_image)):  # 4096 decodes in all
                eps = torch.randn(samples_per_image, images_per_call, 32)
                with autocast_context(runtime.device, runtime.autocast_dtype):
                    log_importance_weights(decoder_model, x, posterior, eps)

        return run

    row("IWAE bound, 4096 decodes", "4096 per call", "512 per call", bound(128, 32), bound(64, 8), per="4096 decodes")

    record = {**provenance(["experiments/bench/layers.py", *sys.argv[1:]]), "runtime": runtime.as_dict()}
    Path(args.out).write_text(json.dumps({**record, "batch_size": batch, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""Training throughput of the lecture model: this project's step and data path against a naive baseline, in one process.

    python experiments/bench/bench.py --data-root <MNIST dir> [--batch-sizes 128 512] [--out bench.json]

Baseline: torchvision's MNIST with ToTensor in a DataLoader, the model in fp32 eager with
glibc's default malloc settings (it runs first, before the project tunes them). Project:
`vae.train.batch_input` + `forward_backward` + `optimizer.step`, the trainer's own step,
with the settings `resolve_runtime` picks by default. Each figure is the median of several
timed windows after warm-up; the ratio project / baseline is measured in the same run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vae.build import build_model, build_optimizer
from vae.config import compose_dict
from vae.data import find_idx_files, load_idx
from vae.distributions import DiagonalGaussian, LatentLayer, StandardNormal
from vae.model import VAEOutput
from vae.objectives import ELBO
from vae.runtime import apply_runtime, provenance, resolve_runtime
from vae.step import batch_input, forward_backward

# The lecture run's config, as `python -m vae.train experiment=lecture` composes it: the model,
# the optimizer and the loss settings both sides train with.
LECTURE = compose_dict(["experiment=lecture"])
LECTURE_LOSS = ELBO(kl_weight=1e-3, gen_loss="bce", reduction="mean")


class PlainLectureVAE(torch.nn.Module):
    """The lecture network as one writes it in plain PyTorch: stock layers, flatten in (C, H, W) order.

    The baseline trains this; its FLOPs are the model's FLOPs. The project's model computes the
    same function with three layers reorganised for speed (vae/model.py).
    """

    def __init__(self, latent_dim: int = 2):
        super().__init__()
        nn = torch.nn
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 14 * 14, 32),
            nn.ReLU(),
        )
        self.mu, self.log_var = nn.Linear(32, latent_dim), nn.Linear(32, latent_dim)
        self.prior = StandardNormal(latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 32),
            nn.ReLU(),
            nn.Linear(32, 64 * 14 * 14),
            nn.ReLU(),
            nn.Unflatten(1, (64, 14, 14)),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> VAEOutput:
        hidden = self.encoder(x)
        posterior = DiagonalGaussian(self.mu(hidden), self.log_var(hidden))
        z = posterior.rsample(eps)
        return VAEOutput(self.decoder(z), (LatentLayer(posterior, self.prior, z),))


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter of this process (Linux), so each configuration gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_windows(
    step, *, images_per_step: int, warmup: int, windows: int, steps_per_window: int, device: str
) -> float:
    """Median images/s over `windows` windows of `steps_per_window` steps, after `warmup` steps."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(windows):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps_per_window):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rates.append(images_per_step * steps_per_window / (time.perf_counter() - start))
    return statistics.median(rates)


def torchvision_layout(data_root: Path) -> Path:
    """A temporary root with MNIST/raw/ as torchvision reads it (decompressed), from the IDX files in data_root."""
    files = find_idx_files("mnist", data_root)
    if files is None:
        raise SystemExit(f"no MNIST IDX files under {data_root}; pass --data-root")
    root = Path(tempfile.mkdtemp(prefix="bench-mnist-"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in files.values():
        target = raw / path.name.removesuffix(".gz")
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(path, target)
    return root


def baseline_step_factory(root: Path, batch_size: int, device: str):
    """The naive loop: torchvision MNIST + ToTensor + DataLoader, the plain model in fp32 eager, contiguous memory format."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    model = PlainLectureVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            x, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, _ = next(batches)
        x = x.to(device)
        output = model(x)
        loss = LECTURE_LOSS(output, x).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def project_step_factory(images: torch.Tensor, batch_size: int, runtime):
    """The trainer's own data path and step, with its default settings for this device."""
    device = torch.device(runtime.device)
    model = build_model(LECTURE).to(device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), LECTURE)
    forward = torch.compile(model) if runtime.compile else model
    images = images.to(device)
    generator = torch.Generator().manual_seed(0)
    order = iter(())

    def step():
        nonlocal order
        index = next(order, None)
        if index is None:
            order = iter(torch.randperm(len(images), generator=generator).split(batch_size)[:-1])
            index = next(order)
        x = batch_input(images, index, runtime=runtime)
        forward_backward(forward, optimizer, x, runtime=runtime, objective=LECTURE_LOSS)
        optimizer.step()

    return step


def flops_per_training_image(batch_size: int = 64) -> float:
    """FLOPs of one forward + backward per image of the lecture network, counted by torch's FlopCounterMode."""
    model = PlainLectureVAE()
    x = torch.rand(batch_size, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        LECTURE_LOSS(model(x), x).loss.backward()
    return counter.get_total_flops() / batch_size


def measured_peak_flops(runtime, *, seconds: float = 3.0) -> float:
    """FLOP/s of the model's largest conv (64 -> 64, 3x3 on 14x14, batch 512), forward and backward, in the runtime's precision."""
    device = torch.device(runtime.device)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device)
    x = torch.randn(512, 64, 14, 14, device=device, requires_grad=True)
    if runtime.channels_last:
        conv, x = (
            conv.to(memory_format=torch.channels_last),
            x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(),
        )

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=runtime.precision == "bf16"):
            out = conv(x)
        out.float().sum().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    return flops * steps_per_second(step, seconds=seconds, warmup=3, device=device.type)


def steps_per_second(step, *, seconds: float, warmup: int, device: str = "cpu") -> float:
    """Steps per second of `step` run back to back for `seconds`, after `warmup` untimed steps."""
    for _ in range(warmup):
        step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--images-per-window", type=int, default=3072)
    parser.add_argument("--out", default="experiments/bench/bench.json")
    args = parser.parse_args()

    default_runtime = dict(threads=0, precision="auto", compile="auto", channels_last="auto", deterministic=False)
    # The baseline runs first, before resolve_runtime tunes glibc's malloc for the project.
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    root = torchvision_layout(Path(args.data_root))
    results = {
        **provenance(["experiments/bench/bench.py", *sys.argv[1:]], data_root=args.data_root),
        "device": device,
        "threads": torch.get_num_threads(),
        "baseline_precision": "fp32",
        "rows": [],
    }

    def measure(who: str, make_step, *, warmup: int) -> None:
        """Time `make_step(batch_size)` at every batch size; one row each, with its own peak memory."""
        for batch_size in args.batch_sizes:
            reset_peak_rss()
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            rate = timed_windows(
                make_step(batch_size),
                images_per_step=batch_size,
                warmup=warmup,
                windows=args.windows,
                steps_per_window=max(2, args.images_per_window // batch_size),
                device=device,
            )
            row = {
                "who": who,
                "batch_size": batch_size,
                "images_per_second": rate,
                "peak_memory_mib": peak_memory_mib(device),
            }
            results["rows"].append(row)
            print(f"{who:8s} batch {batch_size}: {rate:.0f} images/s", flush=True)

    measure("baseline", lambda batch_size: baseline_step_factory(root, batch_size, device), warmup=3)
    runtime = resolve_runtime(device=args.device, **default_runtime)
    apply_runtime(runtime, seed=0)
    results["project_runtime"] = runtime.as_dict()
    train_images, _ = load_idx("mnist", args.data_root, download=False)
    measure(
        "project",
        lambda batch_size: project_step_factory(train_images.images, batch_size, runtime),
        warmup=20 if runtime.compile else 5,
    )

    flops = flops_per_training_image()
    peak = measured_peak_flops(runtime)
    results.update(flops_per_image=flops, peak_flops_per_second=peak, limit_images_per_second=peak / flops)
    baseline = {row["batch_size"]: row["images_per_second"] for row in results["rows"] if row["who"] == "baseline"}
    print(
        f"\n{flops / 1e6:.0f} MFLOP per training image; measured peak {peak / 1e9:.0f} GFLOP/s ({runtime.precision}, "
        f"largest conv) -> limit {peak / flops:.0f} images/s on {device}\n"
    )
    print("| who | batch | images/s | x baseline | fraction of limit | peak memory MiB |")
    print("|---|---|---|---|---|---|")
    for row in results["rows"]:
        row["ratio_to_baseline"] = row["images_per_second"] / baseline[row["batch_size"]]
        row["fraction_of_limit"] = row["images_per_second"] * flops / peak
        print(
            f"| {row['who']} | {row['batch_size']} | {row['images_per_second']:.0f} | {row['ratio_to_baseline']:.2f} | "
            f"{row['fraction_of_limit']:.2f} | {row['peak_memory_mib']:.0f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

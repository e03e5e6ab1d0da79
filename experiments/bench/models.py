"""Training images/s of each model under an experiment's settings, in one process: ratios to the first.

    python experiments/bench/models.py --out experiments/bench/models.json \
        experiment=burda_conv experiment=burda_resnet experiment=burda_hvae

Each argument is one composed config (`,`-free overrides joined by spaces: "experiment=burda_resnet
batch_size=64"). The trainer's own step (`vae.step.batch_input`, `forward_backward`, `optimizer.step`)
on random binary 28x28 images (a step's time does not depend on the pixels), the runtime `auto`
picks for this machine. The models are timed in turns, round after round, so that a slow spell of a
shared machine falls on all of them; each figure is the median over rounds, and the ratio to the
first config is computed within each round before the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from vae.build import build_model, build_optimizer
from vae.config import compose_dict
from vae.objectives import build_objective
from vae.runtime import apply_runtime, provenance, resolve_runtime
from vae.step import batch_input, forward_backward


def make_step(config: dict, runtime):
    model = build_model(config)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), config)
    objective = build_objective(config)
    batch = config["batch_size"]
    images = (torch.rand(4096, 1, 28, 28) > 0.8).to(torch.uint8) * 255
    dims = sum(getattr(model, "latent_dims", (config["latent_dim"],)))
    state = {"start": 0}

    def step() -> None:
        start = state["start"]
        index = torch.arange(start, start + batch) % len(images)
        state["start"] = (start + batch) % len(images)
        x = batch_input(images, index, runtime=runtime)
        shape = (batch, dims) if objective.samples == 1 else (objective.samples, batch, dims)
        forward_backward(model, optimizer, x, runtime=runtime, objective=objective, eps=torch.randn(shape))
        optimizer.step()

    parameters = sum(p.numel() for p in model.parameters())
    return step, batch, parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", help='one config per argument: "experiment=burda_resnet batch_size=64"')
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per model per round")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    runtime = resolve_runtime(
        device="cpu", threads=0, precision="auto", compile=False, channels_last="auto", deterministic=False
    )
    apply_runtime(runtime, seed=0)
    steps = {}
    for text in args.configs:
        config = compose_dict(text.split())  # the data are never loaded: random images of its shape
        steps[text] = make_step(config, runtime)
        for _ in range(3):  # warm-up
            steps[text][0]()
    rates: dict[str, list[float]] = {text: [] for text in steps}
    for round_ in range(args.rounds):
        for text, (step, batch, _) in steps.items():
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                step()
                count += 1
            rates[text].append(count * batch / (time.perf_counter() - start))
        print(
            f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{t}: {r[-1]:.0f} img/s" for t, r in rates.items()),
            flush=True,
        )
    first = args.configs[0]
    result = {
        **provenance(["experiments/bench/models.py", *sys.argv[1:]]),
        "runtime": {"precision": runtime.precision, "threads": runtime.threads, "channels_last": runtime.channels_last},
        "torch": torch.__version__,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "models": {
            text: {
                "parameters": steps[text][2],
                "batch_size": steps[text][1],
                "images_per_s": statistics.median(rates[text]),
                "ratio_to_first": statistics.median(r / f for r, f in zip(rates[text], rates[first], strict=True)),
            }
            for text in steps
        },
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Why some seeds of `python -m vae.train latent_dim=2 kl_weight=1e-3` sit at the mean image after epoch 1.

For each seed (and each lr warm-up length asked for) this trains the first epoch exactly as the
trainer does (the same data order, noise, runtime and step, from `vae.step`) and records, every
`--probe-every` steps, the share of each ReLU layer's units that are dead (zero on every one of
512 validation images), then the epoch's validation loss as the trainer reports it.

    python experiments/lecture/stall.py --data-root <MNIST dir> --seeds 0-9 --warmup 0 100 400

Writes experiments/lecture/stall.json (or --out) and prints a table per warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from vae.build import build_data, build_model, build_optimizer, build_scheduler
from vae.config import compose_dict
from vae.data import epoch_batches
from vae.objectives import ELBO
from vae.runtime import apply_runtime, cpu_model, resolve_runtime
from vae.step import batch_input, dataset_loss_terms, forward_backward

MEAN_IMAGE = 0.225  # val_loss above this after epoch 1: the model still draws (about) the mean image


def relu_outputs(model, probe: torch.Tensor) -> dict[str, torch.Tensor]:
    """The encoder's 32-unit ReLU layer on the probe images, and the decoder's 12544-unit one on their mu."""
    with torch.no_grad():
        hidden = model.encoder.dense(model.encoder.convs(probe)).float()  # (N, 32), after its ReLU
        decoded = model.decoder.dense(model.encoder(probe).mean).float()  # (N, 12544), after its ReLU
    return {"encoder dense (32)": hidden, "decoder dense 2 (12544)": decoded}


def dead_shares(model, probe: torch.Tensor) -> dict[str, float]:
    """Per layer: the share of units that output 0 for every probe image."""
    return {name: float((out <= 0).all(0).float().mean()) for name, out in relu_outputs(model, probe).items()}


def first_epoch(seed: int, warmup_steps: int, data_root: str, probe_every: int, overrides: list[str] = ()) -> dict:
    """One epoch of the default run at `seed` with `optim.warmup_steps` (and `overrides`), as the trainer takes it."""
    # max_warmup_epochs=0: the warm-up is taken whole, as measured (400 steps are more than half an epoch)
    base = ["latent_dim=2", "kl_weight=1e-3", f"seed={seed}", f"optim.warmup_steps={warmup_steps}"]
    base.append("optim.max_warmup_epochs=0")
    config = compose_dict([*base, f"data.root={data_root}", *overrides])
    objective = ELBO(kl_weight=config["kl_weight"], gen_loss="bce", reduction="mean")
    runtime = resolve_runtime(
        device="cpu",
        threads=0,
        precision=config["precision"],
        compile=False,
        channels_last=config["channels_last"],
        deterministic=False,
    )
    apply_runtime(runtime, seed=seed)
    splits = build_data(config)
    model = build_model(config)
    optimizer = build_optimizer(model.parameters(), config)
    steps_per_epoch = math.ceil(len(splits.train) / config["batch_size"])
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=steps_per_epoch)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    probe = splits.val.images[:512].float().div(255).contiguous(memory_format=torch.channels_last)
    curve = [{"step": 0, **dead_shares(model, probe)}]
    model.train()
    for step, index in enumerate(epoch_batches(len(splits.train), config["batch_size"], seed=seed, epoch=1), 1):
        x = batch_input(splits.train.images, index, runtime=runtime)
        eps = torch.randn(x.shape[0], config["latent_dim"])
        terms, _ = forward_backward(model, optimizer, x, runtime=runtime, objective=objective, eps=eps)
        optimizer.step()
        scheduler.step()
        if step % probe_every == 0 or step == steps_per_epoch:
            curve.append({"step": step, "train_loss": float(terms.loss.detach()), **dead_shares(model.eval(), probe)})
            model.train()
    val = dataset_loss_terms(
        model,
        splits.val.images,
        objective=objective,
        batch_size=config["eval_batch_size"],
        channels_last=runtime.channels_last,
    )
    return {
        "seed": seed,
        "warmup_steps": warmup_steps,
        "val_loss": val["loss"],
        "val_kl_nats": val["kl_nats"],
        "curve": curve,
    }


def seeds_from(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--warmup", type=int, nargs="+", default=[0])
    parser.add_argument("--probe-every", type=int, default=20)
    parser.add_argument("--override", nargs="*", default=[], help="more trainer overrides, e.g. optim.eps=1e-5")
    parser.add_argument("--out", default=str(Path(__file__).with_name("stall.json")))
    args = parser.parse_args()
    results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {"runs": []}
    results["cpu"] = cpu_model()
    for warmup in args.warmup:
        for seed in seeds_from(args.seeds):
            started = time.perf_counter()
            run = first_epoch(seed, warmup, args.data_root, args.probe_every, args.override)
            run["seconds"] = time.perf_counter() - started
            run["overrides"] = list(args.override)
            results["runs"].append(run)
            Path(args.out).write_text(json.dumps(results, indent=1))
            final = run["curve"][-1]
            print(
                f"warmup {warmup:4d} seed {seed}: val_loss {run['val_loss']:.4f} "
                f"{'STALLED' if run['val_loss'] > MEAN_IMAGE else 'ok     '} dead encoder units "
                f"{final['encoder dense (32)']:.2f}, dead decoder units {final['decoder dense 2 (12544)']:.2f}",
                flush=True,
            )
        losses = [
            r["val_loss"]
            for r in results["runs"]
            if r["warmup_steps"] == warmup and r.get("overrides", []) == args.override
        ]
        stalled = sum(loss > MEAN_IMAGE for loss in losses)
        print(
            f"warmup {warmup}: {stalled}/{len(losses)} stalled; val_loss mean {statistics.mean(losses):.4f} "
            f"max {max(losses):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

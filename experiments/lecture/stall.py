"""Why some seeds of `python -m vae.train latent_dim=2 kl_weight=1e-3` sit at the mean image after epoch 1.

For each seed (and each lr warm-up length asked for) this trains the first epoch with the
trainer itself (`vae.train.train`, in a run directory under a temporary folder) and records, every
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
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vae import distributed
from vae.build import build_data, build_model
from vae.config import compose
from vae.runtime import apply_runtime, cpu_model
from vae.train import run_runtime, train

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
    """One epoch of the default run at `seed` with `optim.warmup_steps` (and `overrides`), trained by
    `vae.train.train` in a run directory under a temporary folder, probed every `probe_every` steps."""
    # max_warmup_epochs=0: the warm-up is taken whole, as measured (400 steps are more than half an epoch)
    base = ["latent_dim=2", "kl_weight=1e-3", f"seed={seed}", f"optim.warmup_steps={warmup_steps}"]
    base += ["optim.max_warmup_epochs=0", "epochs=1", "device=cpu", "compile=false", "deterministic=false"]
    cfg = compose([*base, f"data.root={data_root}", *overrides])
    config = OmegaConf.to_container(cfg, resolve=True)
    # The weights before the first step: the trainer's set-up, seeded as it seeds them (vae.train.set_up).
    apply_runtime(run_runtime(config, distributed.from_environment(), saved=None), seed=seed)
    splits = build_data(config)
    probe = splits.val.images[:512].float().div(255).contiguous(memory_format=torch.channels_last)
    curve = [{"step": 0, **dead_shares(build_model(config), probe)}]
    steps_per_epoch = math.ceil(len(splits.train) / config["batch_size"])

    def probe_dead_units(session, state, terms) -> None:
        if state.step % probe_every == 0 or state.step == steps_per_epoch:
            curve.append(
                {
                    "step": state.step,
                    "train_loss": float(terms.loss.detach()),
                    **dead_shares(session.model.eval(), probe),
                }
            )
            session.model.train()

    with tempfile.TemporaryDirectory(prefix="stall-") as run_dir:
        metrics = train(cfg, Path(run_dir), on_step=probe_dead_units)
    return {
        "seed": seed,
        "warmup_steps": warmup_steps,
        "val_loss": metrics["val"]["loss"],
        "val_kl_nats": metrics["val"]["kl_nats"],
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

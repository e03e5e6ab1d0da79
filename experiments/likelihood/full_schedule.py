"""The full-schedule reproduction of Burda et al.'s VAE row (experiment=burda_vae, 3,280 epochs), carried across sessions.

A 3,280-epoch run is longer than a session, and a session keeps no files outside the repository, so the
run's state is committed as it goes:

    python experiments/likelihood/full_schedule.py save --run <live run dir>   # its state into runs/burda_vae-full-seed0
    git add experiments/likelihood/runs/burda_vae-full-seed0 && git commit -m ...
    python -m vae.weights keep experiments/likelihood/runs/burda_vae-full-seed0   # last.pt and snapshots, in history
    python experiments/likelihood/full_schedule.py plot                          # full_schedule.png, the held-out curve
    python experiments/likelihood/full_schedule.py table                         # the README's "So far" table

and continued in the next session from a checkout of the pinned commit (the run's run.json names it):

    python -m vae.weights restore experiments/likelihood/runs/burda_vae-full-seed0
    python experiments/likelihood/full_schedule.py unpack --to <work dir>        # a run directory to resume
    (in a clone at the pinned commit, its own venv)  python -m vae.train resume=<work dir> threads=1

`save` copies the live run's checkpoints/last.pt (the whole training state: weights, Adam, schedule, RNG)
and its snapshots (checkpoints/epoch_NNNN.pt, weights only), metrics.json (the per-epoch history: the
held-out -ELBO on the 400 validation images), run.json, and config.json (the checkpoint's config).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
KEPT = HERE / "runs" / "burda_vae-full-seed0"
BURDA_VAE = 86.76  # Burda et al. (2015), Table 1, VAE, one stochastic layer, k = 1 training, k = 5000 evaluation


def _read_json(path: Path, tries: int = 5) -> dict:
    for _ in range(tries):  # metrics.json is rewritten every epoch: a read may meet it half written
        try:
            return json.loads(path.read_text())
        except ValueError:
            time.sleep(0.5)
    return json.loads(path.read_text())


def compact(metrics: dict) -> str:
    """metrics.json with one epoch of the history a line: 3,280 epochs pretty-printed would be about 0.8 MB of
    the tracked tree (which must stay under 15 MB), compact about a third of it."""
    history = metrics.get("history", [])
    rest = json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2)
    lines = ",\n".join("    " + json.dumps(record, separators=(",", ":")) for record in history)
    return rest[:-2] + ',\n  "history": [\n' + lines + "\n  ]\n}\n"


def save(run: Path) -> None:
    (KEPT / "checkpoints").mkdir(parents=True, exist_ok=True)
    last = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    shutil.copy2(run / "checkpoints" / "last.pt", KEPT / "checkpoints" / "last.pt")
    for snapshot in sorted((run / "checkpoints").glob("epoch_*.pt")):
        if not (KEPT / "checkpoints" / snapshot.name).is_file():
            shutil.copy2(snapshot, KEPT / "checkpoints" / snapshot.name)
    metrics = _read_json(run / "metrics.json")
    metrics["history"] = [h for h in metrics["history"] if h["epoch"] <= last["epoch"]]  # as far as last.pt
    (KEPT / "metrics.json").write_text(compact(metrics))
    described = {k: v for k, v in _read_json(run / "run.json").items() if k != "command"}
    (KEPT / "run.json").write_text(json.dumps(described, indent=2) + "\n")
    config = dict(last["config"])
    config["data"] = {**config["data"], "root": None}
    (KEPT / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"saved epoch {last['epoch']} of {config['epochs']} (step {last['step']}) into {KEPT}")


def unpack(to: Path) -> None:
    if to.exists() and any(to.iterdir()):
        raise SystemExit(f"error: {to} exists and is not empty")
    (to / "checkpoints").mkdir(parents=True, exist_ok=True)
    for path in (KEPT / "checkpoints").glob("*.pt"):
        shutil.copy2(path, to / "checkpoints" / path.name)
    for name in ("metrics.json", "run.json"):
        shutil.copy2(KEPT / name, to / name)
    print(f"{to} is ready: python -m vae.train resume={to} threads=1 (at the commit of its run.json)")


def plot(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = json.loads((KEPT / "metrics.json").read_text())["history"]
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        epochs, [h["val_neg_elbo_nats"] for h in history], lw=1, label="held-out -ELBO (400 training images held out)"
    )
    ax.plot(
        epochs, [h["train_loss"] for h in history], lw=1, alpha=0.6, label="training loss (-ELBO, dynamic binarization)"
    )
    ax.axhline(
        BURDA_VAE,
        color="k",
        ls="--",
        lw=1,
        label=f"Burda et al. VAE, test NLL bound at k = 5000 ({BURDA_VAE}): a tighter bound than any -ELBO",
    )
    ax.set_xscale("log")
    ax.set_xlabel("epoch (of 3,280)")
    ax.set_ylabel("nats per image")
    ax.set_ylim(80, 110)
    ax.set_title(f"experiment=burda_vae, full schedule, seed 0: epoch {epochs[-1]} so far")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


# The epochs the README's "So far" table shows: the first, the last of each lr stage before the last, and
# the newest kept one.
TABLE_EPOCHS = (1, 4, 13, 40, 121, 364, 1093)


def table() -> str:
    """The README's "So far" table: the held-out -ELBO at TABLE_EPOCHS and at the newest kept epoch."""
    history = {h["epoch"]: h for h in json.loads((KEPT / "metrics.json").read_text())["history"]}
    epochs = [e for e in TABLE_EPOCHS if e in history] + [max(history)]
    epochs = sorted(set(epochs))
    return "\n".join(
        [
            "| epoch (of 3,280) | " + " | ".join(f"{e:,}" if e >= 10_000 else str(e) for e in epochs) + " |",
            "|---|" + "---:|" * len(epochs),
            "| held-out -ELBO (nats) | " + " | ".join(f"{history[e]['val_neg_elbo_nats']:.2f}" for e in epochs) + " |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["save", "unpack", "plot", "table"])
    parser.add_argument("--run", type=Path, help="save: the live run directory")
    parser.add_argument("--to", type=Path, help="unpack: where to put the run directory to resume")
    parser.add_argument("--out", type=Path, default=HERE / "full_schedule.png")
    args = parser.parse_args()
    if args.action == "save":
        save(args.run)
    elif args.action == "unpack":
        unpack(args.to)
    elif args.action == "table":
        print(table())
    else:
        plot(args.out)


if __name__ == "__main__":
    main()

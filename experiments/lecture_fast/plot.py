"""Learning curves of `experiment=lecture` and `experiment=lecture_fast` in one figure (from final.json).

python experiments/lecture_fast/plot.py     # writes experiments/lecture_fast/curves.png
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from vae.figures import plt, save

HERE = Path(__file__).resolve().parent
TARGET = 0.1858


def main() -> None:
    runs = json.loads((HERE / "final.json").read_text())["runs"]
    fig, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = {"lecture_fast": "tab:blue", "lecture": "tab:orange", "first_choice": "tab:gray"}
    for run in runs:
        kind = next(kind for kind in colours if run["name"].startswith(kind))
        seconds = list(itertools.accumulate(run["epoch_seconds"]))
        epochs = range(1, len(run["val_loss"]) + 1)
        label = f"{run['name'].replace('_seed', ', seed ')}"
        by_time.plot(seconds, run["val_loss"], marker="o", ms=3, color=colours[kind], alpha=0.8, label=label)
        by_epoch.plot(epochs, run["val_loss"], marker="o", ms=3, color=colours[kind], alpha=0.8, label=label)
    for ax in (by_time, by_epoch):
        ax.axhline(TARGET, color="gray", ls="--", lw=1)
        ax.text(
            ax.get_xlim()[1], TARGET, " lecture, 50 epochs: 0.1858", va="bottom", ha="right", fontsize=8, color="gray"
        )
        ax.set_ylabel("val_loss (test split): per-pixel BCE + 1e-3 KL_mean")
        ax.set_ylim(0.178, 0.222)
        ax.grid(alpha=0.3)
    by_time.set_xlabel("wall seconds (training + validation), 2-core EPYC, bf16")
    by_epoch.set_xlabel("epoch")
    by_epoch.legend(fontsize=7)
    fig.suptitle(
        "experiment=lecture (Adam 1e-3, batch 128) against experiment=lecture_fast (batch 64, cosine from 3e-3)"
    )
    fig.tight_layout()
    save(fig, HERE / "curves.png")


if __name__ == "__main__":
    main()

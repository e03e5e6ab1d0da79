"""Learning curves of the held-out budget selection and of the final seeds (from final.json).

python experiments/lecture_fast/plot.py     # writes experiments/lecture_fast/curves.png

Left: the held-out split (`data.val_source=holdout`), every run of the budget selection of
`final.json`'s `protocol`. Right: the test split read as the validation data every epoch (the
lecture's protocol): the final seeds of the chosen budget, and in gray the runs of the
withdrawn protocol (`history`, another CPU, bf16).
"""

from __future__ import annotations

import json
from pathlib import Path

from vae.figures import plt, save

HERE = Path(__file__).resolve().parent
TARGET = 0.1858  # the lecture's test-split val_loss after 50 epochs


def main() -> None:
    results = json.loads((HERE / "final.json").read_text())
    protocol = results["protocol"]
    goal = protocol["target_heldout_val_loss"]  # the project's goal, and the selection's held-out target
    fig, (heldout, test) = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    budgets = protocol["candidates"]["epochs"]
    styles = ["-", "--", ":"]
    for run in protocol["heldout_runs"]:
        epochs = range(1, len(run["val_loss"]) + 1)
        colour, style = f"C{budgets.index(run['epochs'])}", styles[protocol["selection_seeds"].index(run["seed"])]
        label = f"{run['epochs']} epochs, seed {run['seed']}"
        heldout.plot(epochs, run["val_loss"], marker="o", ms=3, color=colour, ls=style, alpha=0.9, label=label)
    for run in results["history"]["runs"]:
        if run["name"].startswith("lecture_seed"):
            continue  # the lecture's own 14 epochs: beyond this figure's range
        epochs = range(1, len(run["val_loss"]) + 1)
        test.plot(epochs, run["val_loss"], color="tab:gray", alpha=0.5, lw=1, ls="--")
    test.plot([], [], color="tab:gray", ls="--", label="withdrawn protocol (history)")
    for run in results["runs"]:
        epochs = range(1, len(run["val_loss"]) + 1)
        test.plot(epochs, run["val_loss"], marker="o", ms=3, label=run["name"].replace("_seed", ", seed "))
    choice = protocol["choice"]
    heldout.set_title(
        "budget selection, held-out split" + (f": {choice['epochs']} epochs chosen" if choice else " (in progress)")
    )
    test.set_title("chosen budget, new seeds, test split (the lecture's protocol)")
    for ax in (heldout, test):
        ax.axhline(goal, color="black", ls=":", lw=1)
        ax.axhline(TARGET, color="gray", ls="--", lw=1)
        ax.text(ax.get_xlim()[1], TARGET, "lecture, 50 epochs (test): 0.1858 ", va="bottom", ha="right", fontsize=8)
        ax.text(ax.get_xlim()[1], goal, f"goal: {goal:.4f} ", va="top", ha="right", fontsize=8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylim(0.178, 0.222)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    heldout.set_ylabel("val_loss: per-pixel BCE + 1e-3 KL_mean")
    fig.suptitle("experiment=lecture_fast: batch 64, Adam rising over 500 steps to 3e-3, cosine to 0 over the budget")
    fig.tight_layout()
    save(fig, HERE / "curves.png")


if __name__ == "__main__":
    main()

"""The discretized logistic mixture decoder against the calibrated Gaussian, on gray-level MNIST, in bits/dim.

    python experiments/dmol/run.py --data-root <MNIST dir> [--epochs 5] [--seed 0] [--threads 1]
    python experiments/dmol/run.py --table        # the README's table from results.json

Two runs of the project's trainer with the same model, data, budget and seed, differing only in the
decoder's likelihood: `gen_loss=gaussian decoder_sigma=learned` (a density of the uniformly dequantized
8-bit images: bits/dim = (nats + D ln 256) / (D ln 2)) and `gen_loss=dmol` (the probabilities of the 8-bit
values themselves: bits/dim = nats / (D ln 2)). Both are upper bounds on the discrete negative
log-likelihood of the same test images, so their bits/dim compare. No setting is chosen: nothing is
tuned on held-out data, and the test split is read once per reported number (each run's -ELBO and its
importance-weighted bound, k = --iwae-k, on all 10,000 test images).

Writes results.json beside this script (or --out): the numbers, the commands, the CPU and its bf16
support, the commit and the date. One seed: a first result, not a comparison with error bars.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: the comparisons' shared code
import comparison  # noqa: E402

BASE = [
    "data=mnist",
    "data.binarize=none",
    "model=conv",
    "latent_dim=16",
    "reduction=sum",
    "kl_weight=1",
    "precision=fp32",
]
DECODERS = {"gaussian": ["gen_loss=gaussian", "decoder_sigma=learned"], "dmol": ["gen_loss=dmol"]}


def table(record: dict) -> str:
    """The README's table, from results.json alone."""
    rows = [
        "| decoder | bits/dim, -ELBO | bits/dim, IWAE k = {k} | -ELBO (nats) | held-out -ELBO (nats) | epochs |".format(
            k=record["runs"]["dmol"]["iwae_k"]
        ),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    names = {"gaussian": "`gen_loss=gaussian decoder_sigma=learned`", "dmol": "`gen_loss=dmol` (10 components)"}
    for name, run in record["runs"].items():
        rows.append(
            f"| {names[name]} | {run['neg_elbo_bits_per_dim']:.3f} | {run['iwae_bits_per_dim']:.3f} | "
            f"{run['neg_elbo_nats']:.1f} | {run['val_neg_elbo_nats']:.1f} | {run['epochs']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    parser = comparison.parser(__doc__, epochs=5, runs_dir="dmol", out=HERE / "results.json")
    parser.add_argument("--iwae-k", type=int, default=100)
    parser.add_argument("--eval-args", nargs="*", default=[], help="more vae.evaluate arguments (tests)")
    args, shown = comparison.parse(parser, argv, table)
    if shown is not None:
        return shown
    from vae.evaluate import main as evaluate

    common = comparison.run_overrides(args, BASE)
    runs = {}
    for name, decoder in DECODERS.items():
        run_dir = args.runs_dir / f"{name}-seed{args.seed}"
        overrides = [*common, *decoder]
        train_seconds = comparison.train_once(overrides, run_dir)
        start = time.monotonic()
        results = evaluate([f"run={run_dir}", f"iwae_k={args.iwae_k}", "checkpoint=last", *args.eval_args])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        runs[name] = {
            "overrides": overrides,
            "epochs": metrics["epoch"],
            "val_neg_elbo_nats": metrics["val"]["neg_elbo_nats"],
            **{
                key: results[key]
                for key in ("neg_elbo_nats", "neg_elbo_bits_per_dim", "iwae_nll_nats", "iwae_bits_per_dim", "iwae_k")
            },
            "num_test_images": results["num_images"],
            "likelihood": results["likelihood"],
            "train_seconds": train_seconds,
            "eval_seconds": time.monotonic() - start,
        }
        print(
            f"{name}: {runs[name]['neg_elbo_bits_per_dim']:.4f} bits/dim (-ELBO), "
            f"{runs[name]['iwae_bits_per_dim']:.4f} (IWAE k={args.iwae_k})",
            flush=True,
        )
    difference = runs["dmol"]["iwae_bits_per_dim"] - runs["gaussian"]["iwae_bits_per_dim"]
    return comparison.write_record(
        "experiments/dmol/run.py", args, argv, {"runs": runs, "dmol_minus_gaussian_bits_per_dim": difference}
    )


if __name__ == "__main__":
    main()

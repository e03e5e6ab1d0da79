"""The effect of k and of precision on the ResNet and hierarchical rows, measured on the same test images.

    python experiments/likelihood/k_precision.py --data-root <MNIST dir> [--images 1000] [--threads 1] RUN_DIR ...

For each run's `last.pt`, the IWAE bound on the first `--images` test images (binarized once, as the
table's evaluations) at k = 1,000 in bf16 (how the table's rows were evaluated), k = 1,000 in fp32 and
k = 5,000 in fp32 (Burda et al.'s evaluation). The two k = 1,000 evaluations draw the same importance
samples (one seed), so their difference is the rounding alone; k = 5,000 draws its own. These images are
read once for this comparison. Writes k_precision.json beside this script (or --out) after every run,
with the CPU, its bf16 support, the threads and the commit; prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from bf16_bias import per_image_bound

from vae.runs import load_run, run_data
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit

HERE = Path(__file__).resolve().parent
SETTINGS = ((1000, "bf16"), (1000, "fp32"), (5000, "fp32"))


def measure(run_dir: Path, *, images: int, data_root: str | None) -> dict:
    loaded = load_run(run_dir, checkpoint="last")
    test = run_data(loaded, data_root=data_root).test.images[:images]
    nll, seconds = {}, {}
    for k, precision in SETTINGS:
        dtype = torch.bfloat16 if precision == "bf16" else None
        bound, seconds[f"k{k}_{precision}"] = per_image_bound(loaded.model, test, k=k, dtype=dtype)
        nll[f"k{k}_{precision}"] = -bound
        print(
            f"{run_dir.name}: k = {k} ({precision}) {float(-bound.mean()):.3f} nats in {seconds[f'k{k}_{precision}']:.0f} s",
            flush=True,
        )

    def difference(a: str, b: str) -> dict:
        diff = nll[a] - nll[b]
        return {"mean_nats": float(diff.mean()), "standard_error": float(diff.std() / math.sqrt(diff.numel()))}

    return {
        "run": run_dir.name,
        "images": int(test.shape[0]),
        "nll_nats": {key: float(value.mean()) for key, value in nll.items()},
        "seconds": seconds,
        # the table's evaluation (k = 1,000, bf16) against each of the others: what it overstates by
        "bf16_minus_fp32_at_k1000": difference("k1000_bf16", "k1000_fp32"),
        "k1000_minus_k5000_fp32": difference("k1000_fp32", "k5000_fp32"),
        "table_minus_burda_protocol": difference("k1000_bf16", "k5000_fp32"),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--data-root")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "k_precision.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "command": "python experiments/likelihood/k_precision.py " + " ".join(argv or __import__("sys").argv[1:]),
        "git": git_commit(),
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "runs": [],
    }
    for run in args.runs:
        result["runs"].append(measure(run, images=args.images, data_root=args.data_root))
        args.out.write_text(json.dumps(result, indent=1) + "\n")  # after every run: an interruption loses one
    for row in result["runs"]:
        n = row["nll_nats"]
        print(
            f"| {row['run']} | {n['k1000_bf16']:.3f} | {n['k1000_fp32']:.3f} | {n['k5000_fp32']:.3f} "
            f"| {row['bf16_minus_fp32_at_k1000']['mean_nats']:+.3f} | {row['k1000_minus_k5000_fp32']['mean_nats']:+.3f} "
            f"| {row['table_minus_burda_protocol']['mean_nats']:+.3f} |"
        )
    return result


if __name__ == "__main__":
    main()

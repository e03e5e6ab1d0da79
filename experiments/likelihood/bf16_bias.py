"""The bias of `vae.evaluate precision=bf16`: the same runs, images and noise evaluated in fp32 and in bf16.

    python experiments/likelihood/bf16_bias.py --data-root <MNIST dir> [--k 5000] [--images 1000] [--out bf16_bias.json] RUN_DIR ...

Both precisions draw the same importance samples (one seed), so the per-image difference
bf16 - fp32 of the IWAE bound is the rounding alone, not Monte Carlo noise. Under bf16 the
networks run under autocast and log p(x|z) is still summed in fp32 (vae.bounds). Writes
bf16_bias.json beside this script (or --out), with the bf16 / fp32 wall-time ratio measured in the same run.
State the CPU (and whether it has native bf16) beside the numbers: the ratio depends on it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from vae.bounds import DECODES_PER_CALL, iwae_log_likelihood
from vae.data import to_model_input
from vae.runs import load_run, run_data
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16

HERE = Path(__file__).resolve().parent


@torch.no_grad()
def per_image_bound(model, images: torch.Tensor, *, k: int, dtype, batch_size: int = 100, seed: int = 0):
    """log p(x) bound of each image (float64, CPU) and the seconds it took."""
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, DECODES_PER_CALL["cpu"] // batch_size)
    start = time.perf_counter()
    bounds = [
        iwae_log_likelihood(
            model, to_model_input(batch), num_samples=k, chunk=chunk, generator=generator, autocast_dtype=dtype
        ).double()
        for batch in images.split(batch_size)
    ]
    return torch.cat(bounds), time.perf_counter() - start


def measure(run_dir: Path, *, k: int, images: int, data_root: str | None) -> dict:
    loaded = load_run(run_dir, checkpoint="last")
    test = run_data(loaded, data_root=data_root).test.images[:images]
    fp32, fp32_seconds = per_image_bound(loaded.model, test, k=k, dtype=None)
    bf16, bf16_seconds = per_image_bound(loaded.model, test, k=k, dtype=torch.bfloat16)
    nll_fp32, nll_bf16 = -fp32, -bf16
    diff = nll_bf16 - nll_fp32
    row = {
        "run": run_dir.name,
        "k": k,
        "images": int(test.shape[0]),
        "nll_fp32_nats": float(nll_fp32.mean()),
        "nll_bf16_nats": float(nll_bf16.mean()),
        "bias_nats": float(diff.mean()),  # bf16 - fp32, mean over images
        "bias_standard_error": float(diff.std() / math.sqrt(diff.numel())),
        "max_abs_image_difference_nats": float(diff.abs().max()),
        "bf16_over_fp32_seconds": bf16_seconds / fp32_seconds,
    }
    print(
        f"{row['run']}: fp32 {row['nll_fp32_nats']:.3f}  bf16 {row['nll_bf16_nats']:.3f}  "
        f"bias {row['bias_nats']:+.3f} ± {row['bias_standard_error']:.3f} nats  time ratio {row['bf16_over_fp32_seconds']:.2f}"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--data-root")
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "bf16_bias.json")
    args = parser.parse_args()
    rows = [measure(run, k=args.k, images=args.images, data_root=args.data_root) for run in args.runs]
    result = {
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "native_bf16": cpu_supports_bf16(),
        "threads": torch.get_num_threads(),
        "runs": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The effect of k and of precision on the ResNet and hierarchical rows, measured on the same test images.

    python experiments/likelihood/k_precision.py RUN_DIR ... --data-root <MNIST dir> [--images 1000] [--threads 1]
    python experiments/likelihood/k_precision.py RUN_DIR ... --data-root <MNIST dir> --settings k5000_fp32

For each run's `last.pt`, the IWAE bound on the first `--images` test images (binarized once, as the
table's evaluations) at k = 1,000 in bf16 (how the table's rows were evaluated), k = 1,000 in fp32 and
k = 5,000 in fp32 (Burda et al.'s evaluation). The two k = 1,000 evaluations draw the same importance
samples, so their difference is the rounding alone; k = 5,000 draws its own. These images are read once
for this comparison: a setting the file already holds for this run on this CPU model is not run again.

One row per run and CPU model (a comparison never mixes CPUs): its settings, the per-image bounds (so
that the differences pair images), the seconds, the commit. The images go in batches of 100, each with
its own importance-sample generator (seeded with the batch's index), and k_precision.json (or --out) is
written after every batch: a stopped comparison (a session's end) continues where it stopped with the
same command, and gives the numbers it would have given in one go. The row measured before batches
were resumable drew from one generator over all images (its `sampling` says so per setting); its pair is paired.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from bf16_bias import per_image_bound

from vae.runs import load_run, run_data
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit

HERE = Path(__file__).resolve().parent
SETTINGS = {"k1000_bf16": (1000, "bf16"), "k1000_fp32": (1000, "fp32"), "k5000_fp32": (5000, "fp32")}
# the table's evaluation (k = 1,000, bf16) against each of the others: what it overstates by
DIFFERENCES = {
    "bf16_minus_fp32_at_k1000": ("k1000_bf16", "k1000_fp32"),
    "k1000_minus_k5000_fp32": ("k1000_fp32", "k5000_fp32"),
    "table_minus_burda_protocol": ("k1000_bf16", "k5000_fp32"),
}


BATCH = 100  # images per batch: its own generator, and a save after it
SAMPLING = f"a generator per {BATCH} images, seeded with the batch's index (0, 1, ...)"


def machine() -> dict:
    return {"cpu": cpu_model(), "cpu_id": cpu_id(), "cpu_bf16": cpu_supports_bf16()}


def row_cpu_id(row: dict) -> str | None:
    """The CPU model a row was measured on."""
    return row.get("machine", {}).get("cpu_id")


def measure(run_dir: Path, row: dict, *, settings: list[str], images: int, data_root: str | None, save) -> dict:
    """Each of `settings` for one run on this CPU model, into `row`, saved after every batch of images; a
    setting the row holds is kept, one it holds in part continues from its next batch."""
    loaded = load_run(run_dir, checkpoint="last")
    test = run_data(loaded, data_root=data_root).test.images[:images]
    row.update(run=run_dir.name, images=int(test.shape[0]))
    row.setdefault("machine", machine())
    for name in settings:
        if name in row.get("nll_nats", {}):
            print(f"{run_dir.name}: {name} is in the record: kept, not measured again", flush=True)
            continue
        k, precision = SETTINGS[name]
        dtype = torch.bfloat16 if precision == "bf16" else None
        partial = row.setdefault("partial", {}).setdefault(name, {"per_image_nll": [], "seconds": 0.0})
        batches = list(test.split(BATCH))
        for index in range(len(partial["per_image_nll"]) // BATCH, len(batches)):
            bound, seconds = per_image_bound(loaded.model, batches[index], k=k, dtype=dtype, seed=index)
            partial["per_image_nll"] += (-bound).tolist()
            partial["seconds"] += seconds
            save()
            print(
                f"{run_dir.name}: k = {k} ({precision}) {len(partial['per_image_nll'])}/{len(test)} images, "
                f"{partial['seconds']:.0f} s",
                flush=True,
            )
        done = row["partial"].pop(name)
        if not row["partial"]:
            del row["partial"]
        row.setdefault("per_image_nll", {})[name] = done["per_image_nll"]
        row.setdefault("nll_nats", {})[name] = float(torch.tensor(done["per_image_nll"]).mean())
        row.setdefault("seconds", {})[name] = done["seconds"]
        row.setdefault("git", {})[name] = git_commit()
        row.setdefault("sampling", {})[name] = SAMPLING
        print(f"{run_dir.name}: k = {k} ({precision}) {row['nll_nats'][name]:.3f} nats", flush=True)
        for key, (a, b) in DIFFERENCES.items():
            if a in row["per_image_nll"] and b in row["per_image_nll"]:
                diff = torch.tensor(row["per_image_nll"][a]) - torch.tensor(row["per_image_nll"][b])
                row[key] = {"mean_nats": float(diff.mean()), "standard_error": float(diff.std() / math.sqrt(len(diff)))}
        save()
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--data-root")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "k_precision.json")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    words = sys.argv[1:] if argv is None else argv
    result.setdefault("commands", []).append(
        {
            "command": "python experiments/likelihood/k_precision.py " + " ".join(words),
            "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"),
        }
    )

    def save() -> None:  # after every setting: an interruption loses one
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    here = cpu_id()
    for run in args.runs:
        row = next((r for r in result["runs"] if r["run"] == run.name and row_cpu_id(r) == here), None)
        if row is None:
            row = {}
            result["runs"].append(row)
        elif row["images"] != args.images:
            raise SystemExit(f"error: {args.out} holds {run.name} on {row['images']} images, not {args.images}")
        measure(run, row, settings=args.settings, images=args.images, data_root=args.data_root, save=save)
    for row in result["runs"]:
        cells = " | ".join(f"{row['nll_nats'][s]:.3f}" if s in row.get("nll_nats", {}) else "-" for s in SETTINGS)
        diffs = " | ".join(f"{row[d]['mean_nats']:+.3f}" if d in row else "-" for d in DIFFERENCES)
        print(f"| {row['run']} | {row_cpu_id(row)} | {cells} | {diffs} |")
    return result


if __name__ == "__main__":
    main()

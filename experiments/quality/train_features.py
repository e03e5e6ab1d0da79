"""Train the classifier behind `features=mnist` / `features=fashion_mnist` (vae/features.py, `DigitNet`).

    python experiments/quality/train_features.py --data mnist --data-root <MNIST dir>
    python experiments/quality/train_features.py --data fashion_mnist --data-root /usr/share/datasets/fashion-mnist
    python experiments/quality/train_features.py --data mnist --seed 1 --out-dir experiments/quality/seed1   # a second network

Trains on the training split minus the 10,000 images `vae.features.heldout_indices` holds out (the floor's
real set, never seen by the classifier), Adam with a cosine schedule, batch 128, one thread, fp32; then
reads the test split once for its accuracy. Writes <out-dir>/<data>.pt (the weights in float16: under
1 MB) and <out-dir>/<data>.json (test accuracy, SHA-256 of the .pt, the held-out rule, command, commit,
CPU, date, seconds). Re-running gives the same accuracy within about 0.2 % (bit for bit only on one CPU
model: the kernels differ between CPUs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from vae.data import load_idx
from vae.features import HELDOUT, HELDOUT_SEED, NETS, DigitNet, heldout_indices, sha256_of
from vae.progress import progress
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit

SOURCES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}


def accuracy(net: DigitNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        correct = sum(
            (net(images[i : i + 1000].float() / 255).argmax(1) == labels[i : i + 1000]).sum().item()
            for i in range(0, len(images), 1000)
        )
    return correct / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(SOURCES), required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=NETS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    train, test = load_idx(SOURCES[args.data], args.data_root, download=False)
    held = torch.zeros(len(train.images), dtype=torch.bool)
    held[heldout_indices(len(train.images))] = True
    images, labels = train.images[~held], train.labels[~held]
    net = DigitNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps = args.epochs * math.ceil(len(images) / args.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        net.train()
        order = torch.randperm(len(images), generator=generator)
        batches = list(order.split(args.batch_size))
        for index in progress(batches, desc=f"epoch {epoch}/{args.epochs}", unit="batch"):
            loss = torch.nn.functional.cross_entropy(net(images[index].float() / 255), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch}: last batch loss {loss.item():.4f}", flush=True)
    test_accuracy = accuracy(net, test.images, test.labels)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    weights = args.out_dir / f"{args.data}.pt"
    torch.save(
        {key: value.half() if value.is_floating_point() else value for key, value in net.state_dict().items()}, weights
    )
    half = DigitNet()
    half.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in torch.load(weights, weights_only=True).items()}
    )
    record = {
        "data": args.data,
        "network": "vae.features.DigitNet (5 conv + batch norm, 128 pooled features, linear to 10)",
        "test_accuracy": accuracy(half, test.images, test.labels),  # the shipped float16 weights
        "test_accuracy_fp32": test_accuracy,
        "trained_on": f"the training split minus {HELDOUT} images held out (vae.features.heldout_indices, seed {HELDOUT_SEED}): {len(images)} images",
        "seed": args.seed,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "sha256": sha256_of(weights),
        "bytes": weights.stat().st_size,
        "command": "python "
        + " ".join(
            [
                Path(sys.argv[0]).as_posix(),
                *[a if "data-root" in a or not a.startswith("/") else "<data dir>" for a in sys.argv[1:]],
            ]
        ),
        "commit": git_commit()["commit"],
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.time() - start, 1),
    }
    (args.out_dir / f"{args.data}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

"""What scoring costs on this CPU: 10,000 MNIST-sized images in the MNIST space with every metric, and the
Inception space's features per 10,000 images (on InceptionV3 weights made up for the measurement: the real
ones cannot be fetched here; the network and its cost are the same).

    python experiments/quality/speed.py [--threads 2] [--inception-images 200]

Writes experiments/quality/speed.json (seconds, the CPU and its bf16 support, threads, commit, date).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from vae.features import load_features
from vae.quality_metrics import score
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit

HERE = Path(__file__).resolve().parent


def made_up_inception(folder: Path) -> Path:
    """InceptionV3 weights of torch-fidelity's layout, randomly initialised (its constructor's own init)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    load, load_state = fidelity.torch.load, fidelity.FeatureExtractorInceptionV3.load_state_dict
    fidelity.torch.load = lambda *a, **k: {}
    fidelity.FeatureExtractorInceptionV3.load_state_dict = lambda self, state: None
    try:
        made = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
    finally:
        fidelity.torch.load, fidelity.FeatureExtractorInceptionV3.load_state_dict = load, load_state
    path = folder / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(made.state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inception-images", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    a = (torch.rand(10_000, 1, 28, 28, generator=generator) * 255).to(torch.uint8)
    b = (torch.rand(10_000, 1, 28, 28, generator=generator) ** 2 * 255).to(torch.uint8)
    space = load_features("mnist")
    start = time.perf_counter()
    features_a, features_b = space(a), space(b)
    featured = time.perf_counter()
    score(features_a, features_b)
    done = time.perf_counter()
    import vae.features as features

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VAE_INCEPTION_WEIGHTS"] = str(made_up_inception(Path(tmp)))
        features.INCEPTION_HASH_PREFIX = features.sha256_of(Path(os.environ["VAE_INCEPTION_WEIGHTS"]))[:8]
        inception = load_features("inception")
        images = a[: args.inception_images]
        inception(images[:10])  # warm-up
        t0 = time.perf_counter()
        inception(images)
        inception_seconds = (time.perf_counter() - t0) / len(images) * 10_000
    record = {
        "mnist_space_10000_vs_10000": {
            "features_seconds": featured - start,
            "metrics_seconds": done - featured,
            "total_seconds": done - start,
        },
        "inception_features_seconds_per_10000_images": inception_seconds,
        "inception_measured_on_images": args.inception_images,
        "threads": args.threads,
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "precision": "fp32",
        "torch": torch.__version__,
        "commit": git_commit()["commit"],
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python experiments/quality/speed.py --threads {args.threads} --inception-images {args.inception_images}",
    }
    (HERE / "speed.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

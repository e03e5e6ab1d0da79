"""Do the sample-quality metrics rank what a person sees? The sanity table of experiments/quality/README.md.

    python experiments/quality/sanity.py --data-root <MNIST dir> --runs <run after 1 epoch>=<label> ... [--nets vae/feature_nets experiments/quality/seed1]

Reference: the MNIST test split (10,000 images, gray levels). Scored, in each feature space given by --nets
(the shipped classifier, and a second one trained with another seed):
- the floor: the 10,000 training images held out of the classifiers' training;
- a blur ladder: those images blurred by a Gaussian of sigma 0.5, 1, 1.5, 2 pixels (torchvision);
- a noise ladder: those images plus Gaussian noise of sd 0.05, 0.1, 0.2, 0.4 (of the [0, 1] range), clipped;
- each --runs entry: 10,000 samples from its prior (the decoder's mean image, temperature 1, seed 0), as
  `python -m vae.quality run=<run> n=10000` makes them.
Writes experiments/quality/sanity.json (every metric of every row in every space, with the command,
commit, CPU and date) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torchvision.transforms.functional as TF

from vae.data import load_idx
from vae.features import DigitNet, FeatureSpace, heldout_indices, load_digit_net
from vae.quality import run_images, to_uint8
from vae.quality_metrics import score
from vae.runs import load_run
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit

HERE = Path(__file__).resolve().parent
BLUR = (0.5, 1.0, 1.5, 2.0)
NOISE = (0.05, 0.1, 0.2, 0.4)


def space_from(folder: Path) -> FeatureSpace:
    from vae.features import _Scaled

    net, record = load_digit_net("mnist", nets=folder)
    return FeatureSpace(
        name=f"mnist ({folder.as_posix()}, seed {record['seed']})",
        label="MNIST features",
        image_shape=(1, 28, 28),
        channels=(1,),
        num_features=DigitNet.num_features,
        sha256=record["sha256"],
        network=_Scaled(net).eval(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--runs", nargs="*", default=[], help="<run dir>[:<checkpoint>]=<label>")
    parser.add_argument("--nets", nargs="+", type=Path, default=[Path("vae/feature_nets")])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load_idx("mnist", args.data_root, download=False)
    held = train.images[heldout_indices(len(train.images))]
    generator = torch.Generator().manual_seed(0)
    rows = {"floor (held-out training images)": held}
    for sigma in BLUR:
        kernel = 2 * round(3 * sigma) + 1
        rows[f"blur sigma {sigma:g}"] = to_uint8(TF.gaussian_blur(held.float() / 255, [kernel, kernel], [sigma, sigma]))
    for sd in NOISE:
        noisy = held.float() / 255 + sd * torch.randn(held.shape, generator=generator)
        rows[f"noise sd {sd:g}"] = to_uint8(noisy)
    for spec in args.runs:
        where, label = spec.split("=", 1)
        run, _, checkpoint = where.partition(":")
        loaded = load_run(run, checkpoint=checkpoint or "best")
        samples, _ = run_images(loaded.model, test.images[:0], n=10_000, seed=0, temperature=1.0, batch=500)
        rows[f"samples: {label}"] = samples
    record = {
        "command": "python " + " ".join(sys.argv),
        "commit": git_commit()["commit"],
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d"),
        "reference": "MNIST test split, 10,000 gray-level images",
        "spaces": {},
    }
    for folder in args.nets:
        space = space_from(folder)
        reference = space(test.images)
        start = time.time()
        results = {label: score(space(images), reference) for label, images in rows.items()}
        record["spaces"][space.name] = {
            "sha256": space.sha256,
            "rows": results,
            "seconds": round(time.time() - start, 1),
        }
        print(f"\n{space.name}")
        print(f"{'row':45s} {'FID':>9s} {'KID':>9s} {'prec':>6s} {'recall':>6s} {'dens':>6s} {'cover':>6s}")
        for label, r in results.items():
            print(
                f"{label:45s} {r['fid']:9.3f} {r['kid_mean']:9.5f} {r['precision']:6.3f} {r['recall']:6.3f} "
                f"{r['density']:6.3f} {r['coverage']:6.3f}"
            )
    (HERE / "sanity.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

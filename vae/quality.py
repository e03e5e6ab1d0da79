"""`python -m vae.quality`: how good are the samples, in a named feature space (vae/features.py).

    python -m vae.quality run=<run> [features=mnist] [n=10000] [temperature=1] [seed=0] [split=test] [samples_only=false]
    python -m vae.quality a=<folder or .npz> b=<folder or .npz> features=<name> [out=<file.json>]

Run form: n samples from the prior (the decoder's mean image, z = temperature * eps) and, separately, the
model's reconstructions of the reference split (the decoder's mean image at the posterior mean), each
scored against the reference split (test for published numbers, val for anything that chooses), its
gray-level images even where the model trained on binarized ones (a Bernoulli decoder's mean image is
gray). With a classifier space of the run's own data set, the floor too: the same metrics between the
10,000 training images held out of the classifier's training and the reference split. Written to
<run>/evals/quality_<checkpoint>_<split>_<features>_n<n>_t<temperature>_s<seed>.json (named by its
settings, so one with other settings is never overwritten), to out= when given, and to the run's
TensorBoard (`z_quality/<split>/*` scalars, `z_hparams/quality_<features>_fid` as an HParams column).

Pair form: any two image sets (a folder of PNG/JPEG files, or an .npz whose first array is (N, H, W),
(N, H, W, C) or (N, C, H, W) uint8), `a` scored against `b` (the reference); `features=` is required.

Keys of the result: fid, kid_mean, kid_std, precision, recall, density, coverage, features,
features_sha256, n_a, n_b, and the protocol.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from vae.cli import check, parse_args
from vae.features import (
    DEFAULT_FEATURES,
    FEATURES,
    FeatureError,
    FeatureSpace,
    heldout_indices,
    load_features,
    space_for,
)
from vae.metrics import HPARAMS_GROUP, QUALITY_GROUP
from vae.quality_metrics import DC_K, KID_SUBSET, KID_SUBSETS, PR_K, QualityError, check_counts, score

MAX_N = 200_000  # samples held as uint8 images and 128-2,048 float64 features: bounded, refused above
BYTES_PER_SAMPLE = 784 + 2048 * 8  # a 28x28 uint8 image and, at most, its Inception features in float64
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


@dataclass
class QualityArgs:
    """python -m vae.quality run=<run> [features=<name>] [n=10000] [temperature=1] [seed=0] [split=test] [checkpoint=best|last|epoch_NNNN] [out=<file.json>] [data_root=<dir>]
    python -m vae.quality a=<folder or .npz> b=<folder or .npz> features=<name> [out=<file.json>]
    """

    run: str | None = None
    a: str | None = None
    b: str | None = None
    features: str | None = None
    n: int = 10_000
    temperature: float = 1.0
    seed: int = 0
    split: str = "test"
    checkpoint: str = "best"
    samples_only: bool = False  # the prior samples alone: no reconstructions, no floor (a study that ranks samples)
    batch_size: int = 500
    out: str | None = None
    data_root: str | None = None


def protocol(**extra) -> dict:
    return {
        "fid": "Fréchet distance of Gaussian fits of the features (torchmetrics)",
        "kid": f"unbiased MMD^2, polynomial kernel of degree 3, mean and sd over {KID_SUBSETS} subsets of min({KID_SUBSET}, N)",
        "precision_recall": f"Kynkäänniemi et al. 2019, k = {PR_K}",
        "density_coverage": f"Naeem et al. 2020, k = {DC_K}",
        **extra,
    }


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 0..255, rounded, as an image file would hold them."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def read_images(path: str, what: str) -> torch.Tensor:
    """(N, C, H, W) uint8 from a folder of image files or an .npz; SystemExit naming the problem."""
    import numpy as np

    source = Path(path)
    if source.is_file() and source.suffix == ".npz":
        with np.load(source, allow_pickle=False) as archive:
            if not archive.files:
                sys.exit(f"error: {what}={path}: the .npz holds no array")
            array = archive[archive.files[0]]
        if array.dtype != np.uint8 or array.ndim not in (3, 4):
            sys.exit(
                f"error: {what}={path}: expected uint8 (N, H, W[, C]) or (N, C, H, W), got {array.dtype} {array.shape}"
            )
        tensor = torch.from_numpy(array)
        if tensor.dim() == 3:
            tensor = tensor[:, None]
        elif tensor.shape[-1] in (1, 3) and tensor.shape[1] not in (1, 3):
            tensor = tensor.permute(0, 3, 1, 2)
        return tensor.contiguous()
    if not source.is_dir():
        sys.exit(f"error: {what}={path}: no such folder or .npz file")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sys.exit(f"error: {what}={path}: the folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    from PIL import Image

    arrays = []
    for file in files:
        with Image.open(file) as image:
            arrays.append(
                np.asarray(image.convert("L") if image.mode in ("L", "1", "P", "I;16") else image.convert("RGB"))
            )
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        sys.exit(f"error: {what}={path}: images of several sizes {sorted(shapes)[:3]}; resize them to one first")
    stacked = torch.from_numpy(np.stack(arrays))
    return (stacked[:, None] if stacked.dim() == 3 else stacked.permute(0, 3, 1, 2)).contiguous()


def open_space(name: str | None) -> FeatureSpace:
    if name is None:
        sys.exit(f"error: features= is required here: one of {', '.join(FEATURES.names())}")
    if name not in FEATURES:
        sys.exit(f"error: features must be one of {', '.join(FEATURES.names())} (got {name!r})")
    try:
        return load_features(name)
    except FeatureError as error:
        sys.exit(f"error: {error}")


def scored(space: FeatureSpace, a: torch.Tensor, b: torch.Tensor, *, seed: int) -> dict:
    try:
        return score(space(a), space(b), seed=seed)
    except QualityError as error:
        sys.exit(f"error: {error}")


def describe(result: dict) -> str:
    return (
        f"FID ({result['features_label']}) {result['fid']:.3f}, KID {result['kid_mean']:.5f} ± {result['kid_std']:.5f}, "
        f"precision {result['precision']:.3f}, recall {result['recall']:.3f}, density {result['density']:.3f}, "
        f"coverage {result['coverage']:.3f} (n = {result['n_a']} against {result['n_b']})"
    )


def pair_form(args: QualityArgs) -> dict:
    space = open_space(args.features)  # before any image is read
    a, b = read_images(args.a, "a"), read_images(args.b, "b")
    for what, images in (("a", a), ("b", b)):
        try:
            space.check(tuple(images.shape[1:]), f"{what}'s images")
        except FeatureError as error:
            sys.exit(f"error: {error}")
    try:
        check_counts(len(a), len(b), space.num_features)  # before any feature is computed
    except QualityError as error:
        sys.exit(f"error: {error}")
    result = scored(space, a, b, seed=args.seed)
    result |= {"features": space.name, "features_label": space.label, "features_sha256": space.sha256}
    result |= {"a": args.a, "b": args.b, "protocol": protocol(scored="a", reference="b")}
    print(describe(result))
    return result


@torch.no_grad()
def run_images(model, reference: torch.Tensor, *, n: int, seed: int, temperature: float, batch: int):
    """(prior samples, reconstructions of the reference) as uint8 mean images."""
    from vae.likelihoods import likelihood_of

    generator = torch.Generator().manual_seed(seed)
    samples = [
        to_uint8(model.sample(min(batch, n - start), temperature=temperature, generator=generator))
        for start in range(0, n, batch)
    ]
    likelihood = likelihood_of(model)
    reconstructions = []
    for start in range(0, len(reference), batch):
        x = reference[start : start + batch].float() / 255
        reconstructions.append(to_uint8(likelihood.mean(model.decode(model.encode(x).mean))))
    return torch.cat(samples), torch.cat(reconstructions) if reconstructions else reference[:0]


def reference_splits(loaded, data_root: str | None):
    """The run's splits with gray-level images (binarize none), for the reference and the floor."""
    from vae.runs import run_data

    config = dict(loaded.checkpoint["config"])
    config["data"] = {**config["data"], "binarize": "none"}
    return run_data(loaded._replace(checkpoint={**loaded.checkpoint, "config": config}), data_root=data_root)


def heldout_images(config: dict, data_root: str | None) -> torch.Tensor:
    """The 10,000 training images the data set's feature classifier never saw (the floor's real set)."""
    import os

    from vae.data import load_idx

    saved = config["data"].get("root")
    root = data_root or (saved if saved and Path(saved).is_dir() else None) or os.environ.get("VAE_DATA_DIR") or "data"
    train, _ = load_idx(config["data"]["name"], root, download=False)
    return train.images[heldout_indices(len(train.images))]


def quality_file_name(args: QualityArgs, features: str) -> str:
    only = "_samples" if args.samples_only else ""
    return f"quality_{args.checkpoint}_{args.split}_{features}_n{args.n}_t{args.temperature:g}_s{args.seed}{only}.json"


def _check_run_args(args: QualityArgs) -> None:
    """The run form's values, refused by key before anything is loaded."""
    check(
        1 <= args.n <= MAX_N,
        "n",
        f"an integer from 1 to {MAX_N}: the samples and their features are held in memory, about "
        f"{args.n * BYTES_PER_SAMPLE / 1e9:.1f} GB at n={args.n} for 28x28 images ({BYTES_PER_SAMPLE:,} bytes each)",
        args.n,
    )
    check(
        args.temperature > 0 and math.isfinite(args.temperature), "temperature", "a finite number > 0", args.temperature
    )
    check(args.split in ("test", "val"), "split", "test or val", args.split)
    check(
        args.checkpoint in ("best", "last") or re.fullmatch(r"epoch_\d{4}", args.checkpoint) is not None,
        "checkpoint",
        "best, last or a snapshot epoch_NNNN (snapshot_every_epochs)",
        args.checkpoint,
    )
    check(args.batch_size >= 1, "batch_size", "an integer >= 1", args.batch_size)


def _run_inputs(args: QualityArgs):
    """(the loaded run, its feature space, the reference images, the floor's images or None), each checked
    (weights found, the space fits the images, every set large enough) before any image is made."""
    from vae.checkpoint import CheckpointError
    from vae.data import DataNotFoundError
    from vae.runs import load_run

    try:
        loaded = load_run(args.run, checkpoint=args.checkpoint)
    except CheckpointError as error:
        sys.exit(f"error: {args.run} has no usable checkpoint: {error}")
    config = loaded.checkpoint["config"]
    data_name = config["data"]["name"]
    name = space_for(data_name, args.features)
    if name is None:
        sys.exit(
            f"error: a run on data={data_name} has no default feature space: name one with features= "
            f"({', '.join(FEATURES.names())}); its numbers are then labelled with that space"
        )
    space = open_space(name)  # weights found and checked before any image is made
    try:
        space.check(tuple(config["data"]["image_shape"]), "the run's images")
    except FeatureError as error:
        sys.exit(f"error: {error}")
    try:
        splits = reference_splits(loaded, args.data_root)
        floor = name == DEFAULT_FEATURES.get(data_name) and not args.samples_only
        held = heldout_images(config, args.data_root) if floor else None
    except DataNotFoundError as error:
        sys.exit(f"error: {str(error).splitlines()[0]} (the run's data; point to it with data_root=...)")
    reference = (splits.test if args.split == "test" else splits.val).images
    try:  # every set's size against the metrics' needs, before any image is made
        check_counts(args.n, len(reference), space.num_features)
        if held is not None:
            check_counts(len(held), len(reference), space.num_features)
    except QualityError as error:
        sys.exit(f"error: {error}")
    return loaded, space, reference, held


def run_form(args: QualityArgs) -> dict:
    """Score the run's prior samples and reconstructions (and the floor) against the reference split."""
    _check_run_args(args)
    loaded, space, reference, held = _run_inputs(args)
    data_name = loaded.checkpoint["config"]["data"]["name"]
    samples, reconstructions = run_images(
        loaded.model,
        reference[:0] if args.samples_only else reference,
        n=args.n,
        seed=args.seed,
        temperature=args.temperature,
        batch=args.batch_size,
    )
    reference_features = space(reference)
    result = {"features": space.name, "features_label": space.label, "features_sha256": space.sha256}
    try:
        scored = (("samples", samples),) + (() if args.samples_only else (("reconstructions", reconstructions),))
        for key, images in scored:
            result[key] = score(space(images), reference_features, seed=args.seed)
            if key == "samples":
                result |= {
                    k: result[key][k]
                    for k in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "n_a", "n_b")
                }
        if held is not None:
            result["floor"] = score(space(held), reference_features, seed=args.seed)
    except QualityError as error:
        sys.exit(f"error: {error}")
    result |= {
        "checkpoint": args.checkpoint,
        "epoch": loaded.checkpoint["epoch"],
        "split": args.split,
        "n": args.n,
        "temperature": args.temperature,
        "seed": args.seed,
        "samples_only": args.samples_only,
        "protocol": protocol(
            scored="n samples from the prior (z = temperature * eps, eps drawn with seed), the decoder's mean image, "
            "rounded to uint8"
            + (
                ""
                if args.samples_only
                else "; and the reconstructions of the reference split (the decoder's mean image at the posterior mean)"
            ),
            reference=f"the {args.split} split of data={data_name}, gray levels ({len(reference)} images)",
            floor=(
                f"the {len(held)} training images held out of the classifier's training against the same reference"
                if held is not None
                else "none (samples_only)"
                if args.samples_only
                else "none (the space is not this data set's classifier)"
            ),
            binarized_models="a Bernoulli decoder's mean image is gray: scored as such, against gray reference images",
        ),
    }
    return result


def write_run_outputs(run: Path, args: QualityArgs, result: dict) -> Path:
    path = run / "evals" / quality_file_name(args, result["features"])
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run))
    space = result["features"]
    for key in ("samples", "reconstructions", "floor"):
        for metric in ("fid", "kid_mean", "precision", "recall", "density", "coverage"):
            if key in result:
                writer.add_scalar(
                    f"{QUALITY_GROUP}/{args.split}/{space}/{key}_{metric}", result[key][metric], result["epoch"]
                )
    writer.add_scalar(f"{HPARAMS_GROUP}/quality_{space}_fid", result["fid"], result["epoch"])
    writer.close()
    return path


def main(argv=None) -> dict:
    args = parse_args(QualityArgs, argv, usage=inspect.cleandoc(QualityArgs.__doc__))
    pair = args.a is not None or args.b is not None
    if pair and args.run is not None:
        sys.exit("error: give run= or a= and b=, not both")
    if not pair and args.run is None:
        sys.exit("error: run= is required (or a= and b= to score two image sets)")
    if pair and (args.a is None or args.b is None):
        sys.exit(f"error: {'b' if args.b is None else 'a'}= is required beside {'a' if args.b is None else 'b'}=")
    if args.out is not None and Path(args.out).suffix != ".json":
        sys.exit(f"error: out must name a .json file (got {args.out!r})")
    if pair:
        result = pair_form(args)
    else:
        result = run_form(args)
        print("samples: " + describe({**result["samples"], "features_label": result["features_label"]}))
        if "reconstructions" in result:
            label = result["features_label"]
            print("reconstructions: " + describe({**result["reconstructions"], "features_label": label}))
        if "floor" in result:
            print(
                "floor (held-out real images): "
                + describe({**result["floor"], "features_label": result["features_label"]})
            )
        print(f"wrote {write_run_outputs(Path(args.run), args, result)}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()

"""`python -m vae.explore run=<run dir>`: the lecture's views of a trained run's latent space.

Writes PNGs into `<run>/images/explore_*.png` and the same figures, plus the embedding
projector, into the run's TensorBoard: the decoded latent grid, the test set's mu by class,
interpolations, class averages, and attribute-vector editing.

Attribute vectors (the lecture's faces, and MNIST's classes): `attribute=<name>` is one of the data
set's labelled attributes (CelebA's 40, e.g. `attribute=Smiling`; default Smiling there) or, on a data
set with classes, a class by name or number (`attribute=3`; `attribute_class=3` is the same). The
vector is s = mean mu of the validation images with the attribute - mean mu of those without
(validation: never the test split's labels, except under the lecture's protocol, whose validation
split is the test split), and the edits are mu + k s, k = -4..4, of the first test images:
`explore_attribute_<name>.png`, with the average images of the images with and without it,
`explore_attribute_averages_<name>.png`.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from vae.cli import MISSING, check, load_run_or_exit, parse_args
from vae.errors import ConfigError
from vae.figures import image_rows_figure, latent_grid_figure, scatter_figure
from vae.latent import (
    AttributeSource,
    attribute_vector,
    class_mean_latents,
    decode_images,
    edit_latents,
    encode_images,
    grid_latents,
    grid_quantiles,
    interpolate,
    layer_note,
    mean_kl_per_dim,
    project_2d,
    thick_strokes,
    top_kl_dims,
)
from vae.latent import (
    attribute_source as latent_attribute_source,
)
from vae.metrics import IMAGES_GROUP
from vae.progress import progress


@dataclass
class ExploreArgs:
    """python -m vae.explore run=<run dir> [grid_size=15] [interpolation=linear|slerp] [attribute=Smiling|<class>] [data_root=<dir>]"""

    run: str = MISSING
    checkpoint: str = "best"
    grid_size: int = 15
    interpolation: str = "linear"
    steps: int = 10  # images along each interpolation, ends included
    pairs: int = 6  # interpolation pairs
    attribute: str | None = None  # an attribute's name (CelebA: Smiling, ...), or a class's name or number
    attribute_class: int = 1  # the class edited along when `attribute` is not given (class vs the rest)
    edit_images: int = 5  # test images edited along each attribute vector
    max_points: int = 10000  # test images in the scatter
    embedding_points: int = 2000  # test images in TensorBoard's projector (with sprites)
    data_root: str | None = None  # where the data set is, if not where the run found it


# long: one figure per latent view, in the lecture's order; each view is a call into vae.latent and vae.figures
def explore(
    model,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    args: ExploreArgs,
    class_names: list[str],
    show_progress: bool = True,
    attributes: AttributeSource | None = None,
) -> dict:
    """Every figure as (name, Figure) plus what was chosen, from a model and labelled test images.

    The views need one latent: a model with several stochastic layers is explored in its top one
    (`model.encode`, `model.decode`). `attributes`: the vectors' images and groups (`attribute_source`);
    None: the test images, their class `args.attribute_class` and thick strokes.

    `show_progress`: a bar over its 6 steps on a terminal, else a log line every 15 s (vae/progress.py).
    """
    steps = progress(total=6, desc="explore", unit="step", enabled=show_progress)
    posterior = encode_images(model, test_images)  # the top layer's, (N, L)
    mu, kl_per_dim = posterior.mean, mean_kl_per_dim(posterior)
    x = test_images.float() / 255.0 if test_images.dtype == torch.uint8 else test_images.float()
    steps.update()
    figures, dims = latent_grid(model, kl_per_dim, grid_size=args.grid_size)
    steps.update()
    shown = slice(0, min(args.max_points, len(mu)))
    points, axis_names = project_2d(mu[shown])
    figures["scatter"] = scatter_figure(
        points,
        test_labels[shown],
        axis_names=axis_names,
        class_names=class_names,
        title=f"Test set posterior means ({axis_names}{layer_note(model)})",
    )
    steps.update()
    figures["interpolation"], pairs = interpolations(model, mu, x, test_labels, args=args, num_classes=len(class_names))
    steps.update()
    figures["class_averages"] = class_averages(model, mu, x, test_labels, class_names=class_names)
    steps.update()
    if attributes is None:
        attributes = AttributeSource(
            "test",
            test_images,
            {
                f"class_{args.attribute_class}": (
                    test_labels == args.attribute_class,
                    f"class {class_names[args.attribute_class]}",
                ),
                "thick_strokes": (thick_strokes(test_images), "thick strokes"),
            },
        )
    attribute_figures, attribute_norms = attribute_edits(model, mu, x, attributes, args=args)
    figures.update(attribute_figures)
    steps.update()
    steps.close()
    summary = {
        "grid_dims": list(dims),
        "kl_per_dim": kl_per_dim.tolist(),
        "mean_sigma": float(posterior.std.mean()),
        "attribute_vector_norms": attribute_norms,
        "interpolation": args.interpolation,
        "pairs": pairs,
    }
    return {"figures": figures, "summary": summary, "mu": mu}


def latent_grid(model, kl_per_dim: torch.Tensor, *, grid_size: int) -> tuple[dict, tuple[int, int]]:
    """The decoded grid over the two dims that carry the most information (none for latent_dim 1), and those dims."""
    latent_dim = len(kl_per_dim)
    dims = (0, 1) if latent_dim == 2 else tuple(top_kl_dims(kl_per_dim, 2)) if latent_dim > 2 else (0, 0)
    if latent_dim < 2:
        return {}, dims
    quantiles = grid_quantiles(grid_size)
    z = grid_latents(grid_size, latent_dim=latent_dim, dims=dims)
    grid = make_grid(decode_images(model, z), nrow=grid_size, padding=0)
    rest = "" if latent_dim == 2 else f", other {latent_dim - 2} dims at 0 (dims by largest KL)"
    title = f"Decoded z over z[{dims[0]}], z[{dims[1]}]{rest}{layer_note(model)}"
    return {"latent_grid": latent_grid_figure(grid, quantiles, dims=dims, title=title)}, dims


def interpolations(model, mu, x, labels, *, args: ExploreArgs, num_classes: int):
    """Decoded paths between the first test images of consecutive classes (with one class, e.g. faces: between
    consecutive test images), inputs at both ends; and the pairs."""
    first_of_class = [int((labels == c).nonzero()[0]) for c in range(num_classes) if (labels == c).any()]
    if len(first_of_class) > 1:
        pairs = [
            (first_of_class[i], first_of_class[(i + 1) % len(first_of_class)])
            for i in range(min(args.pairs, len(first_of_class)))
        ]
    else:
        pairs = [(2 * i, 2 * i + 1) for i in range(min(args.pairs, len(mu) // 2))]
    rows = []
    for start, end in pairs:
        path = interpolate(mu[start], mu[end], args.steps, method=args.interpolation)
        rows.append(torch.cat([x[start : start + 1], decode_images(model, path), x[end : end + 1]]))
    figure = image_rows_figure(
        torch.stack(rows),
        title=f"{args.interpolation} interpolation between test images' mu (ends: the inputs)",
        column_labels=["input"] + [f"t={t:.2f}" for t in torch.linspace(0, 1, args.steps).tolist()] + ["input"],
    )
    return figure, pairs


def class_averages(model, mu, x, labels, *, class_names: list[str]):
    """Average images: the decoded class-mean latent beside the pixel mean of the class."""
    present = [c for c in range(len(class_names)) if (labels == c).any()]
    class_means = class_mean_latents(mu, labels, len(class_names))[present]
    pixel_means = torch.stack([x[labels == c].mean(0) for c in present])
    return image_rows_figure(
        torch.stack([decode_images(model, class_means), pixel_means]),
        title="Average images: decoded mean latent of each class (top), pixel mean (bottom)",
        row_labels=["decoded\nmean z", "pixel\nmean"],
        column_labels=[class_names[c] for c in present],
    )


def attribute_edits(model, mu, x, attributes: AttributeSource, *, args: ExploreArgs):
    """Editing test images along attribute vectors, and the average images of each attribute: figures, and
    each vector's norm.

    s = mean mu of `attributes.images` with the attribute - mean mu of those without; the first
    `args.edit_images` test images are decoded at mu + k s for k = -4..4.
    """
    ks = torch.arange(-4, 5, dtype=torch.float32)
    source_mu = encode_images(model, attributes.images).mean
    source_x = attributes.images.float() / 255.0
    chosen = torch.arange(min(args.edit_images, len(mu)))
    figures, norms = {}, {}
    for name, (has_attribute, title) in attributes.groups.items():
        if has_attribute.all() or not has_attribute.any():  # e.g. a folder with one class: nothing to contrast
            continue
        direction = attribute_vector(source_mu, has_attribute)
        norms[name] = float(direction.norm())
        edited = edit_latents(mu[chosen], direction, ks)  # (n, 9, L)
        decoded = decode_images(model, edited.view(-1, mu.shape[1])).view(len(chosen), len(ks), *x.shape[1:])
        figures[f"attribute_{name}"] = image_rows_figure(
            decoded,
            title=f"Editing test images along s = mean z({title}) - mean z(rest), {attributes.split} split: decode mu + k s",
            column_labels=[f"k={int(k):+d}" for k in ks],
        )
        groups = (has_attribute, ~has_attribute)
        means = torch.stack([source_mu[group].mean(0) for group in groups])
        figures[f"attribute_averages_{name}"] = image_rows_figure(
            torch.stack([decode_images(model, means), torch.stack([source_x[group].mean(0) for group in groups])]),
            title=f"Average images\n({attributes.split} split)",
            row_labels=["decoded\nmean z", "pixel\nmean"],
            column_labels=[f"{title}\n({int(groups[0].sum())})", f"not {title}\n({int(groups[1].sum())})"],
        )
    return figures, norms


def attribute_source(args: ExploreArgs, splits, *, val_source: str = "holdout") -> AttributeSource:
    """The attribute `args` names (or the default), from the validation split (vae.latent.attribute_source);
    a value that names none exits naming it."""
    try:
        return latent_attribute_source(
            splits, attribute=args.attribute, attribute_class=args.attribute_class, val_source=val_source
        )
    except ConfigError as error:
        sys.exit(f"error: {error}")


def main(argv=None) -> Path:
    args = parse_args(ExploreArgs, argv, usage=ExploreArgs.__doc__)
    check(args.grid_size >= 2, "grid_size", "an integer >= 2", args.grid_size)
    check(args.interpolation in ("linear", "slerp"), "interpolation", "linear or slerp", args.interpolation)
    check(args.steps >= 2, "steps", "an integer >= 2", args.steps)
    loaded, splits = load_run_or_exit(args.run, checkpoint=args.checkpoint, data_root=args.data_root)
    test, class_names = splits.test, splits.class_names
    attributes = attribute_source(
        args, splits, val_source=loaded.checkpoint["config"]["data"].get("val_source", "holdout")
    )
    labels = test.labels
    if splits.attribute_names:  # faces have no classes: the scatter and averages split by the attribute
        name = next(iter(attributes.groups))
        labels = test.attributes[:, splits.attribute_names.index(name)].long()
        class_names = [f"not {name}", name]

    result = explore(loaded.model, test.images, labels, args=args, class_names=class_names, attributes=attributes)
    run_dir = Path(args.run)
    images_dir = run_dir / "images"
    images_dir.mkdir(exist_ok=True)
    epoch = int(loaded.checkpoint["epoch"])
    writer = SummaryWriter(log_dir=str(run_dir))
    figures = result["figures"].items()
    for name, fig in progress(figures, total=len(figures), desc="explore: saving figures", unit="figure"):
        fig.savefig(images_dir / f"explore_{name}.png", dpi=100)
        writer.add_figure(f"{IMAGES_GROUP}/explore_{name}", fig, global_step=epoch, close=True)
    shutil.rmtree(run_dir / f"{epoch:05d}" / "test_mu", ignore_errors=True)  # a re-run replaces the projector's data
    count = min(args.embedding_points, len(test.images))
    sprites = test.images[:count].float() / 255.0
    writer.add_embedding(
        result["mu"][:count],
        metadata=[class_names[int(c)] for c in labels[:count]],
        label_img=sprites if sprites.shape[1] in (1, 3) else None,
        global_step=epoch,
        tag="test_mu",
    )
    writer.close()
    (run_dir / "explore.json").write_text(json.dumps(result["summary"], indent=2))
    print(f"wrote {len(result['figures'])} figures to {images_dir} and the projector to {run_dir}")
    return images_dir


if __name__ == "__main__":
    main()

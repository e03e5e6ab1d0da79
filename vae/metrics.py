"""The metrics a run reports, declared once: where each one appears in TensorBoard, the HParams dashboard
and the sweep report. vae.summaries and vae.report read this table; a new metric is one entry here (its
value still has to be put in the train or val dict, or eval.json, by the code that computes it).

Splits: `train` and `val` are the dicts of metrics.json (and of each epoch, logged by vae.summaries);
`test` is the test evaluation's file (eval.json or evals/, written by vae.evaluate). Everything derived from
the table comes in the order (split: train, val, test; then the table's order), the dashboard's ticked
columns first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")
# The HParams dashboard (TensorBoard 2.x) ticks the first five metric columns in the order declared.
SHOWN_METRICS = 5


# TensorBoard's Time Series dashboard groups tags by their first path part, sorts the groups by name (byte
# order: digits, capitals, "_", then lower case) and opens only the first two. Those must be the per-epoch
# curves, train/ and val/: every other group's name sorts after "val".
CURVE_GROUPS = ("train", "val")
IMAGES_GROUP = "view"  # the per-epoch pictures of the prior (val/reconstructions stays with its curves)
STEP_GROUP = "z_train_step"  # the loss, gradient norm and lr every log_every steps
EVAL_GROUP = "z_eval"  # vae.evaluate's numbers: one point per evaluated checkpoint
QUALITY_GROUP = "z_quality"  # vae.quality's numbers: one point per scored checkpoint
HPARAMS_GROUP = "z_hparams"  # the HParams dashboard's metric columns (the curves' final values again)


@dataclass(frozen=True)
class Metric:
    """One metric: `name` is its key in metrics.json's `train`/`val` dicts and in eval.json."""

    name: str
    description: str  # one line: what the number is (report.md has no column legend yet to show it)
    curves: tuple[str, ...] = ()  # splits of the `<split>/<name>` TensorBoard scalar written each epoch
    hparams: Mapping[str, str] = field(default_factory=dict)  # HParams metric columns: split -> dashboard label
    ticked: tuple[str, ...] = ()  # of those columns, the splits the dashboard ticks by default
    # Splits of an `z_hparams/<split>_<name>` scalar written each epoch though not a declared column (the
    # declared train and val columns are written anyway; the test ones are vae.evaluate's, which writes
    # its own two, test_neg_elbo_nats and test_iwae_nll_nats, not from this table).
    hparams_extra: tuple[str, ...] = ()
    report: tuple[str, ...] = ()  # splits of the report's `<split>_<name>` column: val (metrics.json), test (eval)
    fmt: str = ".4g"  # how report.md writes a float of it (and the mean of a cell's seeds)


METRICS: tuple[Metric, ...] = (
    Metric(
        "loss",
        "the training objective in the run's own units (not comparable across reductions and kl_weights)",
        curves=("train", "val"),
        hparams={"val": "val loss (objective)"},  # listed after the nats, unticked: not comparable across runs
        hparams_extra=("train",),
        report=("val",),
    ),
    Metric(
        "gen_loss",
        "the generation term of the loss (BCE or squared error), in the training reduction",
        curves=("train", "val"),
        hparams_extra=("val",),
    ),
    Metric(
        "kl",
        "the KL term of the loss before kl_weight, in the training reduction",
        curves=("train", "val"),
        hparams_extra=("val",),
    ),
    Metric(
        "neg_elbo_nats",
        "the negative ELBO per image with beta 1 (summed BCE + KL), nats",
        curves=("train", "val"),
        hparams={"val": "val -ELBO (nats)", "test": "test -ELBO (nats, vae.evaluate)"},
        ticked=("val", "test"),
        report=("val", "test"),
    ),
    Metric(
        "rec_nats",
        "the reconstruction term per image (summed BCE of the decoder's logits), nats: the distortion",
        curves=("val",),
        hparams={"val": "val reconstruction (nats)"},
        ticked=("val",),
        report=("val",),
    ),
    Metric(
        "kl_nats",
        "KL(q(z|x) || p(z)) per image, nats: the rate",
        curves=("val",),
        hparams={"val": "val KL (nats)"},
        ticked=("val",),
        report=("val",),
    ),
    Metric(
        "mean_sigma",
        "the encoder's sigma = exp(0.5 log_var), averaged over images and latent dims",
        curves=("val",),
        report=("val",),
    ),
    Metric(
        "iwae_nll_nats",
        "minus the importance-weighted bound on log p(x) per image, nats (at most the -ELBO)",
        hparams={"test": "test IWAE NLL bound (nats, vae.evaluate)"},
        ticked=("test",),
        report=("test",),
    ),
)


def epoch_scalars(split: str) -> list[tuple[str, str]]:
    """The scalars an epoch writes from its `split` dict ("train" or "val"): (TensorBoard tag, key in the dict).

    The `<split>/<name>` curves, then `z_hparams/<split>_<name>` (the HParams columns' final values and the extras).
    """
    tags = [(f"{split}/{m.name}", m.name) for m in METRICS if split in m.curves]
    tags += [
        (f"{HPARAMS_GROUP}/{split}_{m.name}", m.name) for m in METRICS if split in m.hparams or split in m.hparams_extra
    ]
    return tags


def hparams_columns() -> dict[str, str]:
    """The HParams dashboard's metric columns, `<split>_<name>` -> label (its tag is `z_hparams/<column>`),
    the ticked ones first."""
    columns = [(split, m, label) for m in METRICS for split, label in m.hparams.items()]
    # Ticked first, each part by split, then in the table's order (the sort is stable).
    columns.sort(key=lambda column: (column[0] not in column[1].ticked, SPLITS.index(column[0])))
    return {f"{split}_{m.name}": label for split, m, label in columns}


def ticked_hparams_columns() -> list[str]:
    """The HParams columns the dashboard ticks by default, the first of `hparams_columns` (at most SHOWN_METRICS)."""
    ticked = {f"{split}_{m.name}" for m in METRICS for split in m.ticked}
    return [column for column in hparams_columns() if column in ticked]


def report_columns(split: str) -> list[str]:
    """The report's `<split>_<name>` columns of a split ("val" or "test"), in the table's order."""
    return [f"{split}_{m.name}" for m in METRICS if split in m.report]


def report_values(split: str, values: Mapping) -> dict:
    """The report's `<split>_<name>` cells from a split's numbers (metrics.json's `val`, or the test evaluation);
    None where the file has no such key."""
    return {f"{split}_{m.name}": values.get(m.name) for m in METRICS if split in m.report}


def report_format(column: str) -> str | None:
    """The report.md format of a metric column (`val_<name>`, `test_<name>`), None for other columns."""
    for m in METRICS:
        if any(column == f"{split}_{m.name}" for split in m.report):
            return m.fmt
    return None


def check_table() -> None:
    """Raise ValueError where the table contradicts itself: a name twice, an unknown split, a ticked split
    that is not a column, or more ticked columns than the dashboard ticks."""
    names = [m.name for m in METRICS]
    if len(set(names)) != len(names):
        raise ValueError(f"a metric is declared twice: {sorted({n for n in names if names.count(n) > 1})}")
    for m in METRICS:
        for what, splits in (("curves", m.curves), ("hparams", tuple(m.hparams)), ("ticked", m.ticked)):
            if set(splits) - set(SPLITS):
                raise ValueError(f"{m.name}: {what} names an unknown split {sorted(set(splits) - set(SPLITS))}")
        if "test" in m.curves or "test" in m.hparams_extra:
            raise ValueError(f"{m.name}: an epoch writes train and val scalars only (test ones come from vae.evaluate)")
        if set(m.report) - {"val", "test"}:
            raise ValueError(f"{m.name}: report columns are val or test, not {sorted(set(m.report) - {'val', 'test'})}")
        if set(m.ticked) - set(m.hparams):
            raise ValueError(f"{m.name}: ticks {sorted(set(m.ticked) - set(m.hparams))}, not an HParams column")
    ticked = sum(len(m.ticked) for m in METRICS)
    if ticked > SHOWN_METRICS:
        raise ValueError(f"{ticked} HParams columns ticked; the dashboard ticks the first {SHOWN_METRICS}")

"""The metrics table (vae.metrics): today's tags, columns and order come from it, and a new entry reaches
TensorBoard, the HParams dashboard and the sweep report without an edit to vae.summaries or vae.report."""

from __future__ import annotations

import csv
import json

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from vae import metrics
from vae.metrics import Metric

TRAIN_TAGS = {"train/loss", "train/gen_loss", "train/kl", "train/neg_elbo_nats", "z_hparams/train_loss"}
VAL_TAGS = {f"val/{name}" for name in ("loss", "gen_loss", "kl", "neg_elbo_nats", "kl_nats", "rec_nats", "mean_sigma")}
VAL_TAGS |= {f"z_hparams/val_{name}" for name in ("loss", "gen_loss", "kl", "neg_elbo_nats", "kl_nats", "rec_nats")}
HPARAMS_COLUMNS = {
    "val_neg_elbo_nats": "val -ELBO (nats)",
    "val_rec_nats": "val reconstruction (nats)",
    "val_kl_nats": "val KL (nats)",
    "test_neg_elbo_nats": "test -ELBO (nats, vae.evaluate)",
    "test_iwae_nll_nats": "test IWAE NLL bound (nats, vae.evaluate)",
    "val_loss": "val loss (objective)",
}
REPORT_COLUMNS = [
    *("job", "status", "kl_weight", "latent_dim", "seed", "reduction", "beta_effective", "epochs_done"),
    *("val_loss", "val_loss_gain_last_quarter", "val_neg_elbo_nats", "val_rec_nats", "val_kl_nats", "val_mean_sigma"),
    *("test_neg_elbo_nats", "test_iwae_nll_nats"),
    *("sample_fid", "sample_precision", "sample_recall", "recon_fid", "floor_fid", "quality_features", "quality_n"),
    *("quality", "active_units", "eval", "binarize", "device", "threads", "train_minutes", "error"),
]
CELL_METRICS = ["val_loss", "val_neg_elbo_nats", "val_rec_nats", "val_kl_nats", "val_mean_sigma"]
CELL_METRICS += ["sample_fid", "sample_precision", "sample_recall", "recon_fid"]  # vae.quality's, when a job has one

FAKE = Metric(
    "fake",
    "a metric added by the test",
    curves=("train", "val"),
    hparams={"val": "val fake (a test's)"},
    report=("val", "test"),
    fmt=".2f",
)


@pytest.fixture
def with_fake(monkeypatch):
    """The table with one more entry, as a new metric is added: vae.summaries and vae.report untouched."""
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, FAKE))


def test_the_table_gives_todays_tags_and_columns_in_their_order():
    from vae.report import cell_metrics, columns

    metrics.check_table()
    assert {tag for tag, _ in metrics.epoch_scalars("train")} == TRAIN_TAGS
    assert {tag for tag, _ in metrics.epoch_scalars("val")} == VAL_TAGS
    assert all(tag.endswith(name) for tag, name in metrics.epoch_scalars("val"))
    assert list(metrics.hparams_columns().items()) == list(HPARAMS_COLUMNS.items())
    assert metrics.ticked_hparams_columns() == list(HPARAMS_COLUMNS)[:5]
    assert columns() == REPORT_COLUMNS and cell_metrics() == CELL_METRICS
    assert metrics.report_format("val_kl_nats") == ".4g" and metrics.report_format("job") is None


def test_the_table_refuses_what_contradicts_itself(monkeypatch):
    table = metrics.METRICS
    bad = {
        "declared twice": Metric("loss", "a second loss"),
        "not an HParams column": Metric("x", "a tick on no column", ticked=("val",)),
        "train and val scalars only": Metric("x", "a test curve, which no epoch writes", curves=("test",)),
        "unknown split": Metric("x", "a split that is none", hparams={"tset": "x"}),
        "ticks the first 5": Metric("x", "a sixth ticked column", hparams={"val": "x"}, ticked=("val",)),
    }
    for reason, entry in bad.items():
        monkeypatch.setattr(metrics, "METRICS", (*table, entry))
        with pytest.raises(ValueError, match=reason):
            metrics.check_table()


def test_a_new_metric_reaches_tensorboard_and_the_hparams_columns(with_fake, tmp_path):
    from tensorboard.plugins.hparams import metadata

    from vae.summaries import log_epoch, write_hparams_entry

    metrics.check_table()
    values = {entry.name: float(index) for index, entry in enumerate(metrics.METRICS)}
    writer = SummaryWriter(log_dir=str(tmp_path))
    write_hparams_entry(writer, {"kl_weight": 1e-3, "latent_dim": 2, "beta_effective": 0.4}, swept=())
    for epoch in (1, 2):
        log_epoch(writer, epoch, train={**values, "fake": 0.5 * epoch}, val={**values, "fake": 1.5 * epoch}, extra={})
    writer.close()

    accumulator = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert scalars == TRAIN_TAGS | VAL_TAGS | {"train/fake", "val/fake", "z_hparams/val_fake"}
    assert [event.value for event in accumulator.Scalars("val/fake")] == [1.5, 3.0]
    assert [event.value for event in accumulator.Scalars("train/fake")] == [0.5, 1.0]
    assert accumulator.Scalars("z_hparams/val_fake")[-1].value == 3.0  # the column's final value
    experiment = metadata.parse_experiment_plugin_data(
        accumulator.PluginTagToContent("hparams")["_hparams_/experiment"]
    )
    declared = [(info.name.tag, info.display_name) for info in experiment.metric_infos]
    # Listed after today's, unticked: the five the dashboard ticks are still the first five.
    assert declared == [(f"z_hparams/{name}", label) for name, label in HPARAMS_COLUMNS.items()] + [
        ("z_hparams/val_fake", "val fake (a test's)")
    ]


def job(sweep, number: int, *, seed: int, fake: float, test_fake: float | None = None) -> None:
    """A finished job's directory as the trainer leaves it (config, metrics.json), and its test evaluation."""
    from vae.runs import write_eval

    job_dir = sweep / str(number)
    (job_dir / ".hydra").mkdir(parents=True)
    config = {"kl_weight": 1e-3, "latent_dim": 2, "seed": seed, "reduction": "mean", "epochs": 1}
    OmegaConf.save(
        {**config, "data": {"name": "synthetic", "binarize": "none", "root": None}}, job_dir / ".hydra" / "config.yaml"
    )
    val = {"loss": 0.2, "gen_loss": 0.2, "kl": 1.0, "neg_elbo_nats": 150.0, "rec_nats": 140.0, "kl_nats": 10.0}
    val.update(mean_sigma=0.3, beta_effective=0.392, fake=fake)
    history = [{"epoch": 1, "val_loss": 0.2, "epoch_seconds": 6.0}]
    (job_dir / "metrics.json").write_text(json.dumps({"epoch": 1, "train": val, "val": val, "history": history}))
    if test_fake is not None:
        results = {"checkpoint": "best", "split": "test", "iwae_k": 10, "binarize": "none", "precision": "fp32"}
        results.update(num_images=64, neg_elbo_nats=151.0, iwae_nll_nats=149.0, active_units=2, fake=test_fake)
        write_eval(job_dir, results)


def test_a_new_metric_reaches_report_csv_and_report_md(with_fake, tmp_path):
    from vae.report import job_dirs, read_job, write_table

    sweep = tmp_path / "sweep"
    job(sweep, 0, seed=0, fake=1.23456, test_fake=7.891)
    job(sweep, 1, seed=1, fake=3.23456)  # the same cell, another seed: the report averages them
    rows = [read_job(job_dir) for job_dir in job_dirs(sweep)]
    write_table(rows, sweep)

    with open(sweep / "report.csv") as f:
        reader = csv.DictReader(f)
        table = list(reader)
    expected = [*REPORT_COLUMNS]
    expected.insert(expected.index("val_mean_sigma") + 1, "val_fake")  # the last val column
    expected.insert(expected.index("test_iwae_nll_nats") + 1, "test_fake")  # the last test column
    assert reader.fieldnames == expected
    assert [row["val_fake"] for row in table] == ["1.23456", "3.23456"]
    assert [row["test_fake"] for row in table] == ["7.891", ""]
    assert table[0]["test_iwae_nll_nats"] == "149.0"  # today's columns as before

    lines = (sweep / "report.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| job |"))
    cells = header.strip("| ").split(" | ")
    assert cells == expected
    first = lines[lines.index(header) + 2].strip("| ").split(" | ")
    assert first[cells.index("val_fake")] == "1.23" and first[cells.index("test_fake")] == "7.89"  # its format
    assert first[cells.index("val_neg_elbo_nats")] == "150"  # today's .4g
    by_cell = lines[lines.index("## By cell: mean ± sd over seeds") + 2].strip("| ").split(" | ")
    assert by_cell == ["kl_weight", "latent_dim", "seeds", *CELL_METRICS[:5], "val_fake", *CELL_METRICS[5:]]
    mean = lines[lines.index("## By cell: mean ± sd over seeds") + 4].strip("| ").split(" | ")
    assert mean[by_cell.index("val_fake")] == "2.23 ± 1.4"

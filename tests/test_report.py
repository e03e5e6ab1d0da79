"""The sweep report: a table, a CSV and plots from a sweep's run directories, failed jobs listed."""

from __future__ import annotations

import csv
import shutil

import pytest
from PIL import Image

from vae.report import report


@pytest.mark.slow  # runs the CLI in a subprocess
def test_report_on_a_two_by_two_sweep_writes_table_csv_and_plots(tiny_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    # A fifth job that died: its directory says why, and the report must list it, not drop it.
    shutil.copytree(sweep / "0" / ".hydra", sweep / "4" / ".hydra")
    (sweep / "4" / "error.txt").write_text("TrainingDiverged: loss became nan at epoch 1, step 3\n")

    rows = report(sweep, num_samples=4)

    assert [row["status"] for row in rows] == ["ok", "ok", "ok", "ok", "failed"]
    assert "TrainingDiverged" in rows[4]["error"]
    with open(sweep / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 5 and {row["latent_dim"] for row in table} == {"2", "3"}
    assert all(float(row["val_neg_elbo_nats"]) > 0 for row in table[:4])
    markdown = (sweep / "report.md").read_text()
    assert markdown.count("\n| ") == 6 and "failed" in markdown  # header + 5 jobs
    for name in ("rate_distortion.png", "samples.png"):
        image = Image.open(sweep / name).convert("L")
        low, high = image.getextrema()
        assert image.size[0] > 300 and low < high


@pytest.mark.slow  # runs the CLI in a subprocess
def test_report_averages_seeds_and_rebuilds_its_figures_without_checkpoints(tiny_sweep, tmp_path):
    import json

    from omegaconf import OmegaConf

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    # A second seed of job 0's cell, 0.02 lower in val_loss.
    shutil.copytree(sweep / "0", sweep / "4")
    config = OmegaConf.load(sweep / "4" / ".hydra" / "config.yaml")
    config.seed = 1
    OmegaConf.save(config, sweep / "4" / ".hydra" / "config.yaml")
    metrics = json.loads((sweep / "4" / "metrics.json").read_text())
    first_loss = metrics["val"]["loss"]
    metrics["val"]["loss"] -= 0.02
    (sweep / "4" / "metrics.json").write_text(json.dumps(metrics))
    for job in sweep.iterdir():  # what experiments/ keeps of a sweep: configs, metrics, images
        shutil.rmtree(job / "checkpoints", ignore_errors=True)

    rows = report(sweep, num_samples=4)

    assert [row["seed"] for row in rows] == [0, 0, 0, 0, 1]
    markdown = (sweep / "report.md").read_text()
    assert "mean ± sd over seeds" in markdown
    cell = next(
        line
        for line in markdown.splitlines()[markdown.splitlines().index("## By cell: mean ± sd over seeds") :]
        if line.startswith(f"| 0 | {rows[0]['latent_dim']} | 2 |")
    )
    assert f"{first_loss - 0.01:.4g} ± 0.014" in cell  # mean and sd of the two seeds
    for name in ("samples.png", "latent_grids.png"):
        image = Image.open(sweep / name).convert("L")
        low, high = image.getextrema()
        assert image.size[0] > 300 and low < high


def test_last_quarter_gain_is_the_relative_drop_over_the_last_quarter_of_epochs():
    from vae.report import last_quarter_gain

    history = [{"val_loss": loss} for loss in (0.30, 0.25, 0.22, 0.20, 0.19, 0.18)]
    # 6 epochs: the last quarter runs from epoch 4 (0.20) to epoch 6 (0.18).
    assert last_quarter_gain(history) == pytest.approx(0.02 / 0.20)
    assert last_quarter_gain(history[:1]) is None


@pytest.mark.slow  # runs the CLI in a subprocess
def test_collect_merges_sweeps_without_checkpoints_or_machine_paths(tiny_sweep, tmp_path):
    import json
    import subprocess
    import sys

    from omegaconf import OmegaConf

    from tests.conftest import REPO

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    data_root = str(tmp_path / "machine" / "data")  # a path of the machine that ran the sweep
    for job in range(4):
        config = OmegaConf.load(sweep / str(job) / ".hydra" / "config.yaml")
        config.data.root = data_root
        OmegaConf.save(config, sweep / str(job) / ".hydra" / "config.yaml")
    out = tmp_path / "collected"
    command = [sys.executable, "experiments/sweep_kl_latent/collect.py", "--out", str(out), str(sweep)]
    result = subprocess.run([*command, str(tiny_sweep)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]

    sources = json.loads((out / "sources.json").read_text())
    assert [entry["source_job"] for entry in sources] == ["0", "1", "2", "3"] * 2
    assert sorted(int(p.name) for p in out.iterdir() if p.is_dir()) == list(range(8))
    assert not list(out.rglob("*.pt")) and list((out / "7" / "images").glob("*.png"))
    assert all(data_root not in p.read_text() for p in out.rglob("*") if p.suffix in (".yaml", ".json"))
    assert OmegaConf.load(out / "0" / ".hydra" / "config.yaml").data.root == "<MNIST dir>"
    rows = report(out, num_samples=4)
    assert len(rows) == 8 and all(row["status"] == "ok" for row in rows)

    # A sweep with an unfinished job is refused, naming the job, and nothing is written.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sweep, broken)
    (broken / "2" / "metrics.json").unlink()
    refused = subprocess.run(
        [sys.executable, "experiments/sweep_kl_latent/collect.py", "--out", str(tmp_path / "x"), str(broken)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and str(broken / "2") in refused.stderr and not (tmp_path / "x").exists()

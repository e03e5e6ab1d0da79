"""The sweep report: a table, a CSV and plots from a sweep's run directories, failed jobs listed."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
from PIL import Image

from vae.report import report


@pytest.mark.slow  # runs the CLI in a subprocess
@pytest.mark.xdist_group("tiny_sweep")  # one worker builds the sweep (make test runs pytest -n)
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
    assert all(float(row["train_minutes"]) > 0 and int(row["threads"]) >= 1 for row in table[:4])
    assert "4 of 5 jobs finished" in markdown and table[4]["train_minutes"] == ""
    for name in ("rate_distortion.png", "samples.png"):
        image = Image.open(sweep / name).convert("L")
        low, high = image.getextrema()
        assert image.size[0] > 300 and low < high


@pytest.mark.slow  # runs the CLI in a subprocess
@pytest.mark.xdist_group("tiny_sweep")  # one worker builds the sweep (make test runs pytest -n)
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


def test_train_minutes_sums_every_epoch_of_a_resumed_job_and_the_table_totals_finished_jobs():
    from vae.report import train_minutes, wall_time_line

    # Two sessions' epochs (the second resumed): each epoch's own clock counts, not the last process's.
    assert train_minutes([{"epoch": 1, "epoch_seconds": 60.0}, {"epoch": 2, "epoch_seconds": 120.0}]) == 3.0
    assert train_minutes([]) is None
    rows = [
        {"status": "ok", "train_minutes": 90.0, "threads": 1},
        {"status": "ok", "train_minutes": 30.0, "threads": 1},
        {"status": "incomplete", "train_minutes": 500.0, "threads": 1},
    ]
    line = wall_time_line(rows)
    assert line.startswith("2 of 3 jobs finished; their epochs took 2.00 job-hours") and "at 1 thread(s)" in line
    # Jobs of one sweep run on a CPU and on a GPU: the cost is split by device.
    rows = [
        {"status": "ok", "train_minutes": 90.0, "threads": 1, "device": "cpu"},
        {"status": "ok", "train_minutes": 6.0, "threads": 1, "device": "cuda"},
        {"status": "ok", "train_minutes": 6.0, "threads": 1, "device": "cuda"},
    ]
    line = wall_time_line(rows)
    assert line.startswith("3 of 3 jobs finished; their epochs took 1.70 job-hours in all: 1.50 on cpu (1 jobs")
    assert "0.20 on cuda (2 jobs, at 1 thread(s) per job)" in line
    assert "job-hours in all on cuda, at 1 thread(s) per job" in wall_time_line(rows[1:])


def test_last_quarter_gain_is_the_relative_drop_over_the_last_quarter_of_epochs():
    from vae.report import last_quarter_gain

    history = [{"val_loss": loss} for loss in (0.30, 0.25, 0.22, 0.20, 0.19, 0.18)]
    # 6 epochs: the last quarter runs from epoch 4 (0.20) to epoch 6 (0.18).
    assert last_quarter_gain(history) == pytest.approx(0.02 / 0.20)
    assert last_quarter_gain(history[:1]) is None


@pytest.mark.slow  # runs the CLI in a subprocess
@pytest.mark.xdist_group("tiny_sweep")  # one worker builds the sweep (make test runs pytest -n)
def test_collect_merges_sweeps_without_checkpoints_or_machine_paths(tiny_sweep, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from omegaconf import OmegaConf

    from conftest import REPO

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    data_root = str(tmp_path / "machine" / "data")  # a path of the machine that ran the sweep
    for job in range(4):
        config = OmegaConf.load(sweep / str(job) / ".hydra" / "config.yaml")
        config.data.root = data_root
        OmegaConf.save(config, sweep / str(job) / ".hydra" / "config.yaml")

    def with_seed(seed: int) -> Path:  # the same sweep run again with another seed
        copy = tmp_path / f"seed{seed}"
        shutil.copytree(tiny_sweep, copy)
        for job in range(4):
            config = OmegaConf.load(copy / str(job) / ".hydra" / "config.yaml")
            config.seed = seed
            OmegaConf.save(config, copy / str(job) / ".hydra" / "config.yaml")
        return copy

    def run_collect(out: Path, *sources: Path | str) -> subprocess.CompletedProcess:
        command = [sys.executable, "experiments/sweep_kl_latent/collect.py", "--out", str(out), *map(str, sources)]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    out = tmp_path / "collected"
    result = run_collect(out, sweep, with_seed(1))
    assert result.returncode == 0, result.stderr[-2000:]

    sources = json.loads((out / "sources.json").read_text())
    assert [entry["source_job"] for entry in sources] == ["0", "1", "2", "3"] * 2
    assert [entry["sweep"] for entry in sources] == ["sweep"] * 4 + ["seed1"] * 4
    assert sorted(int(p.name) for p in out.iterdir() if p.is_dir()) == list(range(8))
    assert not list(out.rglob("*.pt")) and list((out / "7" / "images").glob("*.png"))
    assert all(data_root not in p.read_text() for p in out.rglob("*") if p.suffix in (".yaml", ".json"))
    assert OmegaConf.load(out / "0" / ".hydra" / "config.yaml").data.root == "<MNIST dir>"
    rows = report(out, num_samples=4)
    assert len(rows) == 8 and all(row["status"] == "ok" for row in rows)
    assert [row["seed"] for row in rows] == [0] * 4 + [1] * 4

    # The next session's sweep joins the collected directory; every job keeps where it came from.
    result = run_collect(out, out, with_seed(2))
    assert result.returncode == 0, result.stderr[-2000:]
    grown = json.loads((out / "sources.json").read_text())
    assert grown[:8] == sources and [entry["sweep"] for entry in grown[8:]] == ["seed2"] * 4
    assert sorted(int(p.name) for p in out.iterdir() if p.is_dir()) == list(range(12))
    assert [row["seed"] for row in report(out, num_samples=4)] == [0] * 4 + [1] * 4 + [2] * 4
    # A cell run again (here on one thread) is refused, naming it, and the collected directory is kept as it was.
    again = tmp_path / "again"
    shutil.copytree(sweep, again)
    config = OmegaConf.load(again / "0" / ".hydra" / "config.yaml")
    config.threads = 1
    OmegaConf.save(config, again / "0" / ".hydra" / "config.yaml")
    twice = run_collect(out, out, again)
    assert twice.returncode != 0 and "same settings" in twice.stderr and str(again / "0") in twice.stderr
    assert len(json.loads((out / "sources.json").read_text())) == 12

    # --device keeps the jobs of one kind of device: a job that ran on a GPU goes to another directory.
    mixed = tmp_path / "mixed"
    shutil.copytree(sweep, mixed)
    run_json = json.loads((mixed / "3" / "run.json").read_text())
    run_json["runtime"]["device"] = "cuda:1"
    (mixed / "3" / "run.json").write_text(json.dumps(run_json))
    for kind, count in (("cpu", 3), ("cuda", 1)):
        split = run_collect(tmp_path / kind, "--device", kind, mixed)
        assert split.returncode == 0, split.stderr[-2000:]
        kept = json.loads((tmp_path / kind / "sources.json").read_text())
        assert [entry["source_job"] for entry in kept] == (["0", "1", "2"] if kind == "cpu" else ["3"])
        assert len(kept) == count
    none = run_collect(tmp_path / "none", "--device", "cuda", sweep)
    assert none.returncode != 0 and "'cuda'" in none.stderr and not (tmp_path / "none").exists()

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


def test_budget_study_merges_sessions_and_judges_each_doubling():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("budget", REPO / "experiments/sweep_kl_latent/budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)

    def run(latent_dim: int, epochs: int, final: float) -> dict:
        return {"kl_weight": 1e-3, "latent_dim": latent_dim, "seed": 0, "budget": epochs, "val_loss": [0.3, final]}

    earlier = [run(2, 24, 0.1785), run(2, 48, 0.1770), run(8, 24, 0.1078)]
    # Today's sessions: latent 2 at 48 epochs again (replaces the old run) and at 96; latent 8 at 48.
    runs = budget.merge(earlier, [run(2, 48, 0.1763), run(2, 96, 0.1750), run(8, 48, 0.1060)])
    assert [(r["latent_dim"], r["budget"]) for r in runs] == [(2, 24), (2, 48), (2, 96), (8, 24), (8, 48)]
    rows = {(row["latent_dim"], row["budget"]): row for row in budget.doubling_table(runs)}
    assert set(rows) == {(2, 24), (2, 48), (8, 24)}  # a budget without its double is not judged
    assert rows[(2, 24)]["gain"] == pytest.approx((0.1785 - 0.1763) / 0.1785)
    assert not rows[(2, 24)]["converged"]  # 1.23 %
    assert rows[(2, 48)]["converged"]  # 0.74 %
    assert not rows[(8, 24)]["converged"]  # 1.67 %

    # A GPU's run is never paired with a CPU's; the gain is averaged over seeds per device.
    def on(device: str, seed: int, epochs: int, final: float) -> dict:
        return {**run(32, epochs, final), "seed": seed, "device": device}

    runs = [on("cpu", 0, 48, 0.0874), on("cuda", 0, 96, 0.0826), on("cuda", 1, 48, 0.0823), on("cuda", 1, 96, 0.0813)]
    runs += [on("cuda", 2, 48, 0.0892), on("cuda", 2, 96, 0.0870)]
    rows = budget.doubling_table(runs)
    assert [(row["seed"], row["device"]) for row in rows] == [(1, "cuda"), (2, "cuda")]
    (mean,) = budget.mean_gains(rows)
    assert mean["seeds"] == 2 and mean["device"] == "cuda"
    assert mean["gain"] == pytest.approx(((0.0823 - 0.0813) / 0.0823 + (0.0892 - 0.0870) / 0.0892) / 2)
    assert not mean["converged"]  # 1.84 %


@pytest.mark.slow  # starts worker processes
def test_parallel_benchmark_compares_one_job_with_jobs_side_by_side(tmp_path):
    import json
    import statistics
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "parallel.json"
    command = [sys.executable, "experiments/sweep_kl_latent/parallel.py", "--seconds", "0.2", "--repeats", "1"]
    result = subprocess.run(
        [*command, "--cores", "2", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(out.read_text())
    assert measured["cores"] == 2 and measured["cpu"] and isinstance(measured["native_bf16"], bool)
    one, side_by_side = measured["one_job_images_per_second"], measured["side_by_side_images_per_second"]
    assert len(one) == len(side_by_side) == 1 and min(one + side_by_side) > 0
    assert measured["ratio_side_by_side_to_one"] == statistics.median(side_by_side) / statistics.median(one)
    assert "ratio" in result.stdout

    refused = subprocess.run([*command, "--cores", "1"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--cores 1" in refused.stderr


def test_the_test_columns_come_from_the_evaluation_asked_for_and_name_its_file(tmp_path):
    import json
    import os

    from vae.report import eval_line, read_job

    def evaluation(job, name: str, *, split: str, k: int, nll: float, age: int) -> None:
        path = job / name
        path.parent.mkdir(parents=True, exist_ok=True)
        results = {"checkpoint": "best", "split": split, "iwae_k": k, "binarize": "none", "precision": "fp32"}
        results.update(num_images=64, iwae_nll_nats=nll, neg_elbo_nats=nll + 5, active_units=2)
        path.write_text(json.dumps(results))
        os.utime(path, (1e9 - age, 1e9 - age))  # older files first

    job = tmp_path / "0"
    evaluation(job, "evals/best_test_k1000_none_fp32_n64.json", split="test", k=1000, nll=90.0, age=30)
    evaluation(job, "evals/best_test_k100_none_fp32_n64.json", split="test", k=100, nll=91.0, age=20)
    evaluation(job, "evals/best_val_k100_none_fp32_n64.json", split="val", k=100, nll=89.0, age=10)
    evaluation(job, "eval.json", split="val", k=100, nll=89.0, age=0)  # the newest is on val: not a test column
    old = tmp_path / "1"  # evaluated before evals/ existed
    evaluation(old, "eval.json", split="test", k=1000, nll=92.0, age=0)

    newest = read_job(job)
    assert newest["eval"] == "evals/best_test_k100_none_fp32_n64.json" and newest["test_iwae_nll_nats"] == 91.0
    asked = read_job(job, iwae_k=1000)
    assert asked["eval"] == "evals/best_test_k1000_none_fp32_n64.json" and asked["test_iwae_nll_nats"] == 90.0
    assert read_job(old, iwae_k=1000)["eval"] == "eval.json"
    missing = read_job(old, iwae_k=100)
    assert "eval" not in missing and "test_iwae_nll_nats" not in missing  # no number of another k
    line = eval_line([read_job(job, iwae_k=100), missing], iwae_k=100)
    assert "test evaluations of iwae_k=100" in line and "None in job(s) 1" in line
    assert "iwae_k=1000" in eval_line([asked], iwae_k=1000)  # the settings read, stated
    assert "no job has a test evaluation" in eval_line([missing])


@pytest.mark.slow  # reads tiny_sweep: a CLI sweep in a subprocess
@pytest.mark.xdist_group("tiny_sweep")  # one worker builds the sweep (make test runs pytest -n)
def test_the_report_lists_every_file_it_wrote_and_shows_its_figures(tiny_sweep, tmp_path, capsys):
    from vae.report import main

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    main([f"sweep={sweep}", "samples=4"])
    printed = capsys.readouterr().out
    wrote = printed.split("wrote ", 1)[1]
    names = ["report.md", "report.csv", "rate_distortion.png", "samples.png", "latent_grids.png"]
    assert all((sweep / name).is_file() and name in wrote for name in names)  # latent_dim 2 cells: the grids too
    markdown = (sweep / "report.md").read_text()
    assert all(f"]({name})" in markdown for name in names[2:])

    # Without a latent_dim 2 cell there are no grids: neither written, nor named, nor shown.
    for job in sweep.iterdir():
        if job.is_dir() and (job / "images" / "latent_grid.png").is_file():
            shutil.rmtree(job)
    (sweep / "latent_grids.png").unlink()
    main([f"sweep={sweep}", "samples=4"])
    assert "latent_grids.png" not in capsys.readouterr().out and not (sweep / "latent_grids.png").exists()
    assert "latent_grids.png" not in (sweep / "report.md").read_text()


def test_the_entropy_floor_is_quoted_for_gray_level_mnist_only():
    from vae.report import nats_lines
    from vae.runs import likelihood_note

    def text(data: str, binarize: str) -> str:
        return " ".join(nats_lines([{"data": data, "binarize": binarize}]))

    assert "45.5 nats per gray-level MNIST test image" in text("mnist", "none")
    for data, binarize in [("synthetic", "none"), ("fashion_mnist", "none"), ("cifar10", "none"), ("mnist", "dynamic")]:
        assert "45.5" not in text(data, binarize) and "MNIST" not in text(data, binarize), (data, binarize)
        assert "45.5" not in likelihood_note(data, binarize) and "MNIST" not in likelihood_note(data, binarize)
    assert "binarization's own entropy" in text("synthetic", "none") and "not a likelihood" in text("synthetic", "none")
    assert "Bernoulli" in text("mnist", "dynamic") and "gray-level" not in text("mnist", "dynamic")
    assert "45.5 nats per MNIST test image" in likelihood_note("mnist", "none")
    assert likelihood_note("mnist", "static") == "Bernoulli likelihood of binarized images"


@pytest.mark.slow  # reads tiny_sweep: a CLI sweep in a subprocess
@pytest.mark.xdist_group("tiny_sweep")  # one worker builds the sweep (make test runs pytest -n)
def test_a_report_and_an_evaluation_on_synthetic_data_quote_no_mnist_floor(tiny_sweep, tiny_run, tmp_path):
    import json

    from vae.evaluate import main as evaluate

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    report(sweep, num_samples=4)
    markdown = (sweep / "report.md").read_text()
    assert "45.5" not in markdown and "MNIST" not in markdown and "binarization's own entropy" in markdown

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    evaluate([f"run={run}", "iwae_k=2", "max_images=8", "batch_size=8"])
    likelihood = json.loads((run / "eval.json").read_text())["likelihood"]
    assert likelihood.startswith("gray levels") and "45.5" not in likelihood and "MNIST" not in likelihood


def _load_experiment(name: str):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location(name, REPO / f"experiments/sweep_kl_latent/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_tables_mark_each_cells_elbo_convergence(monkeypatch, tmp_path):
    import json

    tables = _load_experiment("tables")
    # 784 val_loss = rec + beta KL and -ELBO = rec + KL: latent_dim 8, kl_weight 1e-3 (beta 0.098).
    rec, kl = 80.0, 30.0
    loss = (rec + 0.098 * kl) / 784
    assert tables.kl_from(loss, rec + kl, 1e-3, 8) == pytest.approx(kl)
    assert tables.num(-0.0004, 2) == "0.00" and tables.num(-0.4, 1) == "-0.4"

    def job(kl_weight, elbos, seed=0):
        history = [{"epoch": i + 1, "val_loss": 0.1, "val_neg_elbo_nats": e} for i, e in enumerate(elbos)]
        return {"kl_weight": kl_weight, "latent_dim": 8, "seed": seed, "history": history}

    flat = [150.0] * 8
    rising = [150.0] * 5 + [151.0, 152.0, 153.0]  # last quarter: epoch 6 -> 8, ends 2 % above its lowest
    budget = tmp_path / "budget.json"
    runs = [
        {"kl_weight": 1e-3, "latent_dim": 8, "seed": 0, "budget": 48, "val_loss": [0.1], "val_neg_elbo_nats": [110.0]},
        {"kl_weight": 1e-3, "latent_dim": 8, "seed": 0, "budget": 96, "val_loss": [0.1], "val_neg_elbo_nats": [109.0]},
        {"kl_weight": 1e-2, "latent_dim": 8, "seed": 0, "budget": 48, "val_loss": [0.1], "val_neg_elbo_nats": [110.0]},
        {"kl_weight": 1e-2, "latent_dim": 8, "seed": 0, "budget": 96, "val_loss": [0.1], "val_neg_elbo_nats": [100.0]},
        {
            **{"kl_weight": 1e-4, "latent_dim": 8, "seed": 0, "budget": 48},
            "val_loss": [0.1],
            "val_neg_elbo_nats": [9.0],
        },
        {**{"kl_weight": 1e-4, "latent_dim": 8, "seed": 0, "budget": 96, "device": "cuda"}, "val_loss": [0.1]},
    ]
    budget.write_text(json.dumps({"runs": runs}))
    monkeypatch.setattr(tables, "BUDGET", budget)
    assert tables.elbo_status(0, 8, [job(0, flat)], "cpu").startswith("no: cannot")
    assert (
        tables.elbo_status(1e-5, 8, [job(1e-5, flat), job(1e-5, rising, 1)], "cpu") == "no: rising in the last quarter"
    )
    assert tables.elbo_status(1e-3, 8, [job(1e-3, flat)], "cpu") == "yes: doubling moves it 0.9 % (1 seed)"
    assert tables.elbo_status(1e-2, 8, [job(1e-2, flat)], "cpu") == "no: doubling moves it up to 9.1 % (1 seed)"
    # A 96-epoch run on another device does not pair with a CPU's 48: not checked.
    assert tables.elbo_status(1e-4, 8, [job(1e-4, flat)], "cpu") == "not checked"
    assert tables.elbo_status(1e-3, 8, [job(1e-3, flat)], "cuda") == "not checked"


def test_sweep_readme_holds_the_tables_of_the_committed_jobs():
    """The sweep README's three tables are what tables.py computes from the committed jobs, line for line,
    and the grid holds one kind of device (the H100 jobs only in the device check)."""
    from conftest import REPO

    tables = _load_experiment("tables")
    readme = set((REPO / "experiments/sweep_kl_latent/README.md").read_text().splitlines())
    lines = [line for line in tables.tables() if line]
    missing = [line for line in lines if line not in readme]
    assert not missing, f"README lines out of date (run experiments/sweep_kl_latent/tables.py): {missing[:3]}"
    grid = tables.jobs(tables.GRID)
    assert len(grid) == 27 and tables.devices(grid) == {"cpu"}
    assert tables.devices(tables.jobs(tables.CHECK)) == {"cuda"}


def test_replay_compares_every_epoch_number_for_number():
    replay = _load_experiment("replay")
    committed = [
        {"epoch": e, "train_loss": 0.3 / e, "val_loss": 0.2 / e, "val_neg_elbo_nats": 160.0 / e} for e in (1, 2)
    ]
    same = replay.compare(committed, [dict(entry) for entry in committed], 2)
    assert same["identical"] and [row["epoch"] for row in same["epochs"]] == [1, 2]
    off = [dict(entry) for entry in committed]
    off[1]["val_loss"] = 0.1 + 1e-12
    assert not replay.compare(committed, off, 2)["identical"]
    assert replay.compare(committed, off, 1)["identical"]  # only the compared epochs count


@pytest.mark.slow  # reads tiny_sweep: a CLI sweep in a subprocess
@pytest.mark.xdist_group("tiny_sweep")  # one worker builds the sweep (make test runs pytest -n)
def test_the_report_gains_sample_quality_columns_and_the_figure_of_the_study(tiny_sweep, tmp_path):
    import json

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    for number, job in enumerate(sorted(p for p in sweep.iterdir() if p.is_dir())):
        (job / "evals").mkdir(exist_ok=True)
        scores = {"fid": 10.0 + number, "precision": 0.5, "recall": 0.25, "kid_mean": 0.1}
        result = {
            "samples": scores,
            "reconstructions": {**scores, "fid": 2.0},
            "floor": {**scores, "fid": 0.05},
            "features": "mnist",
            "n": 300,
            "split": "test",
        }
        (job / "evals" / "quality_best_test_mnist_n300_t1_s0.json").write_text(json.dumps(result))
        if number == 0:  # an older validation result does not displace the test one
            (job / "evals" / "quality_best_val_mnist_n300_t1_s0.json").write_text(
                json.dumps({**result, "split": "val", "samples": {**scores, "fid": 99.0}})
            )
    rows = report(sweep, num_samples=4)
    assert [row["sample_fid"] for row in rows] == [10.0, 11.0, 12.0, 13.0]
    assert all(row["floor_fid"] == 0.05 and row["quality_features"] == "mnist" for row in rows)
    with open(sweep / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(row["sample_fid"]) for row in table] == [10.0, 11.0, 12.0, 13.0]
    assert table[0]["quality"] == "evals/quality_best_test_mnist_n300_t1_s0.json"
    markdown = (sweep / "report.md").read_text()
    assert "sample_fid" in markdown and "](quality.png)" in markdown
    image = Image.open(sweep / "quality.png").convert("L")
    assert image.size[0] > 600 and image.getextrema()[0] < image.getextrema()[1]


def test_the_quality_figure_shows_each_cells_first_sixteen_samples_of_the_trainers_sheet():
    from vae.report import _first_samples
    from vae.summaries import image_sheet

    images = torch.rand(64, 1, 28, 28)
    crop = _first_samples(image_sheet(images))  # the trainer's sheet: 8 a row
    first = images[[row * 8 + col for row in range(4) for col in range(4)]]
    assert torch.equal(crop, image_sheet(first, per_row=4))

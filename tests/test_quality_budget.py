"""experiments/sweep_kl_latent/quality_budget.py: the FID ranking of six cells by budget, on synthetic data."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import REPO, TINY


def _load(name: str):
    """experiments/sweep_kl_latent/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / "sweep_kl_latent" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_script():
    return _load("quality_budget")


def test_kendall_tau_counts_agreeing_pairs():
    script = _load_script()
    assert script.kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert script.kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert script.kendall_tau([1, 2, 3], [10, 30, 20]) == pytest.approx(1 / 3)
    # resolved: the reference's 20 and 21 are within the noise, so their swapped order does not count
    assert script.resolved_tau([1, 3, 2], [10, 20, 21], threshold=2.0) == (1.0, 2)
    assert script.resolved_tau([1, 3, 2], [10, 20, 21], threshold=0.5) == (pytest.approx(1 / 3), 3)
    assert script.resolved_tau([1, 2], [10, 10.5], threshold=2.0) == (None, 0)


@pytest.mark.slow  # trains six tiny runs, and six more as a tiny grid's multirun
def test_the_budget_study_trains_scores_the_snapshots_on_held_out_images_and_decides(tmp_path, monkeypatch):
    script, grid = _load_script(), _load_grid()
    monkeypatch.setattr(script, "FULL", 2)
    monkeypatch.setattr(script, "SNAPSHOT_EVERY", 1)
    monkeypatch.setattr(script, "N", 150)
    monkeypatch.setattr(grid, "KL_WEIGHTS", script.KL_WEIGHTS)
    monkeypatch.setattr(grid, "LATENT_DIMS", script.LATENT_DIMS)
    monkeypatch.setattr(grid, "EXTRA_SEEDS", ())
    runs, grid_runs, out = tmp_path / "runs", tmp_path / "grid", tmp_path / "budget.json"
    # 200 held-out images: more than the mnist space's 128 features, which FID needs.
    tiny = [o for o in TINY if not o.startswith("data.num_val")] + ["data.num_val=200", "data.split_seed=0"]
    common = ["--runs", str(runs), "--grid", str(grid_runs / "seed0")]
    with pytest.raises(SystemExit):
        script.main(["train", *common, "--override", *tiny])  # no --data-root: refused before anything runs
    assert not runs.exists()
    script.main(["train", "--data-root", str(tmp_path), *common, "--override", *tiny])
    assert len(list(runs.glob("kl*-d*-e2/checkpoints/epoch_000[12].pt"))) == 12  # a snapshot per epoch
    config = json.loads(next(runs.glob("*/run.json")).read_text())["runtime"]
    assert config["precision"] == "fp32" and config["device"] == "cpu" and config["threads"] == 1  # pinned
    script.main(["score", "--data-root", str(tmp_path), *common])  # before the grid: the snapshots alone
    assert len(list(runs.glob("*/evals/quality_*_val_mnist_n150_t1_s[01]_samples.json"))) == 6 * 2 * 2  # two draws each
    # The grid at a budget of 1 epoch (its own schedule): its seed-0 jobs of the six cells join the study.
    grid.main(["train", "--data-root", str(tmp_path), "--epochs", "1", "--runs", str(grid_runs), "--override", *tiny])
    script.main(["score", "--data-root", str(tmp_path), *common])
    scored = list(runs.glob("*/evals/quality_*.json")) + list(grid_runs.glob("seed0/*/evals/quality_*.json"))
    assert len(scored) == (6 * 2 + 6) * 2  # two snapshots of each 2-epoch run, the last of each grid job; two draws
    assert all(json.loads(path.read_text())["split"] == "val" for path in scored)  # no test image read
    assert all(json.loads(path.read_text())["samples_only"] for path in scored)  # no reconstructions, no floor
    record = script.main(["decide", *common, "--out", str(out)])
    assert json.loads(out.read_text()) == record
    keys = [(row["schedule_epochs"], row["epoch"]) for row in record["rows"]]
    assert keys == [(1, 1), (2, 1), (2, 2)]
    assert record["rows"][-1]["kendall_tau"] == 1.0  # epoch 2 of the 2-epoch runs is the reference itself
    assert record["smallest_snapshot_with_same_ranking"] in (1, 2) and record["cpu_id"]
    assert record["fid_sampling_sd"] > 0 and record["resolved_threshold"] == 2 * record["fid_sampling_sd"]
    reference = record["rows"][-1]
    assert all(reference["fid"][c] == sum(d) / 2 for c, d in reference["fid_draws"].items())  # the draws' mean
    assert reference["kendall_tau_resolved"] in (1.0, None)


def _load_grid():
    return _load("quality_grid")


@pytest.mark.slow  # two tiny multiruns in subprocesses
def test_the_quality_grid_trains_continues_scores_once_on_test_and_reports(tmp_path, monkeypatch):
    script = _load_grid()
    monkeypatch.setattr(script, "KL_WEIGHTS", ("0", "1e-3"))
    monkeypatch.setattr(script, "LATENT_DIMS", (2,))
    monkeypatch.setattr(script, "EXTRA_SEEDS", (1,))
    runs, out = tmp_path / "runs", tmp_path / "quality"
    tiny = [o for o in TINY if not o.startswith("data.num_test")] + ["data.num_test=200"]
    common = ["--runs", str(runs), "--out", str(out)]
    with pytest.raises(SystemExit):
        script.main(["train", "--data-root", str(tmp_path), *common])  # no --epochs: refused before anything runs
    assert not runs.exists()
    train = ["train", "--data-root", str(tmp_path), "--epochs", "1", *common, "--override", *tiny]
    script.main(train)
    jobs = script.finished_jobs(runs)
    assert [(job.parent.name, job.name) for job in jobs] == [("seed0", "0"), ("seed0", "1"), ("seeds", "0")]
    assert all((job / "checkpoints" / "epoch_0001.pt").is_file() for job in jobs)  # the final weights, kept and scored
    written = {job: (job / "metrics.json").stat().st_mtime_ns for job in jobs}
    script.main(train)  # the same command again: finished jobs are kept, not trained again
    assert {job: (job / "metrics.json").stat().st_mtime_ns for job in jobs} == written
    with pytest.raises(SystemExit, match="score first"):
        script.main(["report", *common])
    script.main(["score", "--data-root", str(tmp_path), "--n", "150", *common])
    results = [job / "evals" / "quality_epoch_0001_test_mnist_n150_t1_s0.json" for job in jobs]
    first = [json.loads(path.read_text()) for path in results]
    assert all(r["split"] == "test" and r["n"] == 150 for r in first)
    results[0].unlink()  # re-scored from the kept weights (the final snapshot alone): the same numbers
    for name in ("last.pt", "best.pt"):
        (jobs[0] / "checkpoints" / name).unlink()
    script.main(["score", "--data-root", str(tmp_path), "--n", "150", *common])
    assert json.loads(results[0].read_text())["samples"] == first[0]["samples"]
    script.main(["report", *common])
    assert (out / "quality.png").is_file() and "sample_fid" in (out / "report.csv").read_text()
    assert len(list(out.glob("*/evals/quality_epoch_0001_test_*.json"))) == 3  # collected with the jobs

"""experiments/gpu/run.sh: the GPU run's dry run on the CPU (every step at toy sizes), its record and its refusals."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import REPO

SCRIPT = REPO / "experiments" / "gpu" / "run.sh"


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _experiments_state() -> str:
    listing = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "experiments"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return listing.stdout if listing.returncode == 0 else sorted(str(p) for p in (REPO / "experiments").rglob("*"))


@pytest.mark.slow
def test_the_dry_run_runs_every_step_on_the_cpu_and_records_them_in_the_gpu_run_s_shape(tmp_path):
    before = _experiments_state()
    out = tmp_path / "dry"
    result = _run("--dry-run", "--out", str(out), "--carry", str(tmp_path / "no_carry"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert _experiments_state() == before  # nothing written into experiments/
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gpu_tests.txt", "log.txt", "results.json", "results.md"]
    results = json.loads((out / "results.json").read_text())
    env = results["environment"]
    assert env["dry_run"] is True and env["gpu"] is None and env["commit"] and env["torch"]
    assert results["install"]["skipped"].startswith("dry run")
    # the gpu-marked tests ran and skipped, saying why
    tests = results["gpu_tests"]
    assert tests["exit_code"] == 0 and tests["counts"].get("skipped", 0) >= 5 and "passed" not in tests["counts"]
    assert any("needs a CUDA GPU" in reason for reason in tests["skip_reasons"])
    # timings of the three models, through the trainer's own step
    figures = {f["model"]: f for f in results["speed"]["figures"]}
    assert set(figures) == {"lecture", "burda_resnet", "burda_hvae"}
    for figure in figures.values():
        assert figure["device"] == "cpu" and figure["seconds_per_epoch"] > 0 and figure["images_per_s"] > 0
    # lecture_fast trained (one toy epoch: the goal not reached, and said so) and its run was evaluated
    fast = results["lecture_fast"]
    assert fast["exit_code"] == 0 and len(fast["val_loss"]) == 1 and fast["epoch_reached"] is None
    [evaluated] = results["likelihood"]["runs"]
    assert evaluated["results"]["iwae_k"] == 10 and evaluated["results"]["num_images"] == 32
    # what would travel to a node, against its limit
    assert 0 < results["travel"]["tracked_bytes"] < 15_000_000 and results["travel"]["limit_bytes"] == 64 * 2**20
    table = (out / "results.md").read_text()
    assert "DRY RUN" in table and "| lecture | cpu |" in table and "| burda_hvae | cpu |" in table
    printed = subprocess.run(
        ["python3", str(REPO / "experiments/gpu/run.py"), "--table", str(out / "results.json")],
        capture_output=True,
        text=True,
    )
    assert printed.stdout == table
    assert "done in" in (out / "log.txt").read_text()


@pytest.mark.slow
def test_the_gpu_run_refuses_what_cannot_work_before_any_step(tmp_path):
    import torch

    if not torch.cuda.is_available():
        refused = _run("--out", str(tmp_path / "a"), timeout=60)
        assert refused.returncode == 2 and "no CUDA device here" in refused.stderr and "--dry-run" in refused.stderr
        assert not (tmp_path / "a").exists()
    inside = _run("--dry-run", "--out", str(REPO / "experiments" / "gpu" / "dry"), timeout=60)
    assert inside.returncode == 2 and "never writes into experiments/" in inside.stderr
    assert not (REPO / "experiments" / "gpu" / "dry").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    full = _run("--dry-run", "--out", str(tmp_path / "full"), timeout=60)
    assert full.returncode == 2 and "not empty" in full.stderr and (tmp_path / "full" / "keep.txt").read_text() == "x"
    bad = _run("--dry-run", "--budget-s", "0", "--out", str(tmp_path / "b"), timeout=60)
    assert bad.returncode == 2 and "--budget-s must be > 0" in bad.stderr

"""experiments/sweep_kl_latent/quality_budget.py: the FID ranking of six cells by budget, on synthetic data."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import REPO, TINY


def _load_script():
    path = REPO / "experiments" / "sweep_kl_latent" / "quality_budget.py"
    spec = importlib.util.spec_from_file_location("quality_budget", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kendall_tau_counts_agreeing_pairs():
    script = _load_script()
    assert script.kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert script.kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert script.kendall_tau([1, 2, 3], [10, 30, 20]) == pytest.approx(1 / 3)


@pytest.mark.slow  # trains twelve tiny runs
def test_the_budget_study_trains_scores_the_snapshots_on_held_out_images_and_decides(tmp_path, monkeypatch):
    script = _load_script()
    monkeypatch.setattr(script, "FULL", 2)
    monkeypatch.setattr(script, "SNAPSHOT_EVERY", 1)
    monkeypatch.setattr(script, "N", 150)
    runs, out = tmp_path / "runs", tmp_path / "budget.json"
    # 200 held-out images: more than the mnist space's 128 features, which FID needs.
    tiny = [o for o in TINY if not o.startswith("data.num_val")] + ["data.num_val=200", "data.split_seed=0"]
    common = ["--runs", str(runs), "--override", *tiny]
    with pytest.raises(SystemExit):
        script.main(["train", *common])  # no --data-root: refused before anything runs
    assert not runs.exists()
    script.main(["train", "--data-root", str(tmp_path), *common])
    script.main(["train", "--data-root", str(tmp_path), "--epochs", "1", *common])
    assert len(list(runs.glob("kl*-d*-e2/checkpoints/epoch_000[12].pt"))) == 12  # a snapshot per epoch
    script.main(["score", "--data-root", str(tmp_path), "--runs", str(runs)])
    scored = list(runs.glob("*/evals/quality_*_val_mnist_n150_t1_s0.json"))
    assert len(scored) == 6 * 2 + 6  # two snapshots of each 2-epoch run, the last of each 1-epoch run
    assert all(json.loads(path.read_text())["split"] == "val" for path in scored)  # no test image read
    record = script.main(["decide", "--runs", str(runs), "--out", str(out)])
    assert json.loads(out.read_text()) == record
    keys = [(row["schedule_epochs"], row["epoch"]) for row in record["rows"]]
    assert keys == [(1, 1), (2, 1), (2, 2)]
    assert record["rows"][-1]["kendall_tau"] == 1.0  # epoch 2 of the 2-epoch runs is the reference itself
    assert record["smallest_snapshot_with_same_ranking"] in (1, 2) and record["cpu_id"]

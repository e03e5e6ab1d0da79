"""experiments/sigma_vae/run.py: the swept sigma beside the learned one, on synthetic data."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from conftest import REPO, TINY_DATA


def _load_script():
    spec = importlib.util.spec_from_file_location("sigma_vae_run", REPO / "experiments" / "sigma_vae" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_swept_runs_are_the_l2_lambdas_as_fixed_sigmas():
    script = _load_script()
    names = script.run_names()
    assert [float(sigma) for name, sigma in names.items() if name.startswith("lambda")] == pytest.approx(
        [math.sqrt(value / 2) for value in script.LAMBDAS]
    )
    assert names["learned"] == "learned" and names["optimal"] == "optimal"


@pytest.mark.slow  # trains four tiny runs
def test_the_experiment_trains_evaluates_once_and_summarises_by_held_out_data(tmp_path, monkeypatch):
    script = _load_script()
    monkeypatch.setattr(script, "LAMBDAS", (1e-2, 1e-1))
    # 160 test images: more than the mnist space's 128 features, which FID needs.
    overrides = [o for o in TINY_DATA if o not in ("data=synthetic", "data.num_test=64")] + ["data.num_test=160"]
    args = ["--data-root", str(tmp_path), "--seeds", "0", "1", "--epochs", "1", "--runs-dir", str(tmp_path / "runs")]
    args += ["--out", str(tmp_path / "out"), "--only", "lambda0.01", "lambda0.1", "learned", "l2_lambda0.1"]
    args += ["--l2-seeds", "0", "--features", "mnist", "--quality-n", "160"]
    args += ["--override", "data=synthetic", *overrides]
    results = script.main(args)
    table = results["summary"]["table"]
    assert set(table) == {"lambda0.01", "lambda0.1", "learned", "l2_lambda0.1"}
    # The gen_loss=l2 twin is read as the Gaussian of sigma = sqrt(lambda / 2), beside the fixed-sigma run.
    assert table["l2_lambda0.1"]["sigma"]["mean"] == pytest.approx(math.sqrt(0.05), rel=1e-6)
    check = results["summary"]["l2_check"]["l2_lambda0.1"]["0"]
    assert check["gaussian_test"] == results["runs"]["lambda0.1"]["0"]["test"]["neg_elbo_nats"]
    assert check["l2_test"] == results["runs"]["l2_lambda0.1"]["0"]["test"]["neg_elbo_nats"]
    assert table["lambda0.1"]["sigma"]["mean"] == pytest.approx(math.sqrt(0.05), rel=1e-6)
    assert table["lambda0.1"]["test"]["n"] == 2 and "recalibrated_test" in table["lambda0.1"]
    assert "recalibrated_test" not in table["learned"]
    best = results["summary"]["best_by_val"]
    assert table[best]["val"]["mean"] == min(table[n]["val"]["mean"] for n in ("lambda0.01", "lambda0.1"))
    assert table["learned"]["effective_lambda"] == pytest.approx(2 * table["learned"]["sigma"]["mean"] ** 2)
    assert (tmp_path / "out" / "sigma_vae.png").stat().st_size > 1000
    # Sample quality of every run but the l2 twins, from the same weights, written into each run's evals/ too.
    quality = results["runs"]["learned"]["0"]["quality"]
    assert quality["n"] == 160 and quality["features"].startswith("MNIST")
    assert quality["samples"]["fid"] > 0 and 0 <= quality["samples"]["precision"] <= 1
    assert "quality" not in results["runs"]["l2_lambda0.1"]["0"]
    assert table["lambda0.1"]["quality"]["samples_fid"]["n"] == 2
    assert list((tmp_path / "runs" / "learned-seed0" / "evals").glob("quality_last_test_mnist_n160_*.json"))
    assert "sample FID" in script.markdown(results["summary"])
    check_table = script.l2_markdown(results["summary"], results)
    assert f"| 0.1 | 0 | {check['l2_test']:.1f} | {check['gaussian_test']:.1f} |" in check_table
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (
        saved["runs"]["learned"]["1"]["test"]["neg_elbo_nats"]
        == results["runs"]["learned"]["1"]["test"]["neg_elbo_nats"]
    )
    # A second call trains nothing and reads no split again: the numbers stay as they were.
    monkeypatch.setattr(script, "evaluate_one", lambda *a, **k: pytest.fail("evaluated twice"))
    again = script.main(args)
    assert again["runs"] == results["runs"]


def test_the_readme_holds_the_tables_of_the_committed_results():
    script = _load_script()
    results = json.loads((REPO / "experiments" / "sigma_vae" / "results.json").read_text())
    readme = (REPO / "experiments" / "sigma_vae" / "README.md").read_text()
    summary = script.summarise(results)
    lines = script.markdown(summary).splitlines() + script.l2_markdown(summary, results).splitlines()
    rows = [line for line in lines if line.startswith("| ") and "gen_loss=l2" not in line]
    assert len(rows) > 20 and "sample FID" in readme
    assert [row for row in rows if row not in readme] == []

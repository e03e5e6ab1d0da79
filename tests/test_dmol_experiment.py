"""experiments/dmol/run.py: the two decoders trained alike and compared in bits/dim, on synthetic data."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from conftest import REPO, TINY


@pytest.mark.slow  # trains two tiny runs and evaluates each
def test_the_experiment_trains_both_decoders_alike_and_records_bits_per_dim(tmp_path):
    spec = importlib.util.spec_from_file_location("dmol_run", REPO / "experiments" / "dmol" / "run.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    overrides = [*TINY]
    args = ["--data-root", str(tmp_path), "--epochs", "1", "--iwae-k", "2", "--runs-dir", str(tmp_path / "runs")]
    args += ["--out", str(tmp_path / "results.json"), "--override", *overrides, "--eval-args", "max_images=16"]
    record = script.main(args)
    assert json.loads((tmp_path / "results.json").read_text()) == record
    gaussian, dmol = record["runs"]["gaussian"], record["runs"]["dmol"]
    # the same model, data, budget and seed: the overrides differ in the decoder's keys only
    differ = set(gaussian["overrides"]) ^ set(dmol["overrides"])
    assert differ == {"gen_loss=gaussian", "decoder_sigma=learned", "gen_loss=dmol"}
    assert dmol["neg_elbo_bits_per_dim"] == pytest.approx(dmol["neg_elbo_nats"] / (784 * math.log(2)))
    to_8bit = (gaussian["neg_elbo_nats"] + 784 * math.log(256)) / (784 * math.log(2))
    assert gaussian["neg_elbo_bits_per_dim"] == pytest.approx(to_8bit)
    assert record["dmol_minus_gaussian_bits_per_dim"] == pytest.approx(
        dmol["iwae_bits_per_dim"] - gaussian["iwae_bits_per_dim"]
    )
    assert "<MNIST dir>" in record["command"] and str(tmp_path) not in record["command"].split("--runs-dir")[0]
    assert record["machine"]["cpu_id"] is not None or record["machine"]["cpu"]


def test_the_readme_shows_the_committed_result():
    spec = importlib.util.spec_from_file_location("dmol_run", REPO / "experiments" / "dmol" / "run.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    record = json.loads((REPO / "experiments" / "dmol" / "results.json").read_text())
    readme = (REPO / "experiments" / "dmol" / "README.md").read_text()
    assert script.table(record) in readme
    assert f"{-record['dmol_minus_gaussian_bits_per_dim']:.2f} bits/dim" in readme
    assert record["machine"]["cpu_id"] in readme and record["git"]["commit"][:7] in readme
    assert all(run["num_test_images"] == 10000 for run in record["runs"].values())
    dmol, gaussian = record["runs"]["dmol"]["iwae_bits_per_dim"], record["runs"]["gaussian"]["iwae_bits_per_dim"]
    root = (REPO / "README.md").read_text()
    assert f"{dmol:.3f} bits/dim against the learned-sigma Gaussian's {gaussian:.3f}" in root

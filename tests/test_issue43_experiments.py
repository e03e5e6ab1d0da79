"""experiments/vamp/run.py and experiments/beta_tcvae/run.py: each comparison's two runs alike, on synthetic data."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import REPO, TINY_DATA


def _script(folder: str):
    spec = importlib.util.spec_from_file_location(f"{folder}_run", REPO / "experiments" / folder / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMALL = [*TINY_DATA, "model=mlp", "model.hidden_dims=[16]"]


@pytest.mark.slow  # trains two tiny runs
def test_the_vamp_comparison_differs_in_the_prior_only_and_records_its_curves(tmp_path):
    script = _script("vamp")
    args = ["--data-root", str(tmp_path), "--epochs", "2", "--runs-dir", str(tmp_path / "runs"), "--experiment", ""]
    args += ["--out", str(tmp_path / "results.json"), "--components", "4", "--override", *SMALL]
    record = script.main(args)
    standard, vamp = record["runs"]["standard"], record["runs"]["vamp"]
    assert set(standard["overrides"]) ^ set(vamp["overrides"]) == {"prior=standard", "prior=vamp", "prior.components=4"}
    assert len(standard["val_neg_elbo_nats"]) == len(vamp["val_neg_elbo_nats"]) == 2
    assert (standard["kl_estimator"], vamp["kl_estimator"]) == ("closed form", "one sample")
    assert json.loads((tmp_path / "results.json").read_text()) == record and (tmp_path / "vamp.png").is_file()
    assert "prior=vamp" in script.table(record)


@pytest.mark.slow  # trains two tiny runs and measures both
def test_the_beta_tcvae_comparison_measures_both_models_alike_on_held_out_images(tmp_path):
    script = _script("beta_tcvae")
    args = ["--data-root", str(tmp_path), "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--experiment", ""]
    args += ["--out", str(tmp_path / "results.json"), "--override", *SMALL, "batch_size=32"]
    record = script.main(args)
    vae, tcvae = record["runs"]["beta_vae"], record["runs"]["beta_tcvae"]
    differ = set(vae["overrides"]) ^ set(tcvae["overrides"])
    assert differ == {"objective=elbo", "kl_weight=6.0", "objective=beta_tcvae", "kl_weight=1", "objective.beta=6.0"}
    for run in (vae, tcvae):  # MI + TC + DWKL is the one-sample KL estimate, close to the closed form's on average
        held = run["held_out"]
        assert set(held) == set(script.TERMS)
        assert abs(held["mi_nats"] + held["tc_nats"] + held["dwkl_nats"] - held["kl_nats"]) < 0.5 * held["kl_nats"] + 1
    assert (tmp_path / "traversals.png").is_file() and "beta-TCVAE" in script.table(record)


@pytest.mark.parametrize("folder", ["vamp", "beta_tcvae"])
def test_each_readme_shows_its_committed_result(folder):
    script = _script(folder)
    record = json.loads((REPO / "experiments" / folder / "results.json").read_text())
    readme = (REPO / "experiments" / folder / "README.md").read_text()
    assert script.table(record) in readme
    assert record["machine"]["cpu_id"] in readme and record["git"]["commit"][:7] in readme
    assert not record["git"]["dirty"]
    if folder == "beta_tcvae":
        held = {name: run["held_out"] for name, run in record["runs"].items()}
        gap = held["beta_vae"]["neg_elbo_nats"] - held["beta_tcvae"]["neg_elbo_nats"]
        assert f"{gap:.2f} nats lower than the beta-VAE's" in readme
    if folder == "vamp":
        assert f"{record['vamp_minus_standard_nats']:.2f} nats worse after 10 epochs" in readme

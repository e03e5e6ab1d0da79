"""Evaluation: the importance-weighted bound, active units, and eval.json."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from vae.bounds import active_units, iwae_log_likelihood
from vae.build import build_data
from vae.data import make_synthetic, to_model_input
from vae.latent import encode_images, mean_kl_per_dim
from vae.objectives import ELBO
from vae.runs import load_run
from vae.step import dataset_loss_terms

from conftest import MNIST_LIKE, REPO, make_vae, run_cli

NEG_ELBO = ELBO(kl_weight=1.0, gen_loss="bce", reduction="sum")
EVAL_KEYS = {
    "neg_elbo_nats",
    "neg_elbo_bits_per_dim",
    "gen_nats",
    "kl_nats",
    "iwae_nll_nats",
    "iwae_k",
    "active_units",
    "kl_per_dim",
    "mean_sigma",
    "binarize",
    "split",
}


def _model_and_data(latent_dim: int = 3, num_images: int = 6):
    torch.manual_seed(0)
    model = make_vae("mlp", latent_dim=latent_dim, hidden_dims=(32,)).eval()
    return model, to_model_input(make_synthetic(num_images, **MNIST_LIKE, seed=0).images)


def test_bound_with_one_sample_is_a_monte_carlo_elbo_with_the_same_noise():
    model, x = _model_and_data()
    bound = iwae_log_likelihood(model, x, num_samples=1, generator=torch.Generator().manual_seed(7))
    eps = torch.randn(1, x.shape[0], 3, generator=torch.Generator().manual_seed(7))[0]
    with torch.no_grad():
        posterior = model.encode(x)
        mu, sigma = posterior.mean, posterior.std
        z = mu + sigma * eps
        log_px_z = -F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").flatten(1).sum(1)
        # Monte Carlo KL from the same z, not the closed form.
        monte_carlo_kl = (Normal(mu, sigma).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1)
    assert torch.allclose(bound, log_px_z - monte_carlo_kl, atol=1e-3)


@pytest.mark.slow  # 60 bounds of up to k=100 (4 s)
def test_bound_rises_with_k_on_average():
    model, x = _model_and_data(num_images=4)
    generator = torch.Generator().manual_seed(0)
    means = [
        torch.stack(
            [iwae_log_likelihood(model, x, num_samples=k, chunk=50, generator=generator) for _ in range(20)]
        ).mean()
        for k in (1, 10, 100)
    ]
    assert means[0] < means[1] < means[2]


def test_active_units_count_a_models_live_dims():
    model, _ = _model_and_data(latent_dim=5, num_images=0)
    with torch.no_grad():  # dims 1 and 3 ignore the input: their mean is the same for every image
        model.encoder.mu.weight[[1, 3]] = 0.0
        model.encoder.mu.weight[[0, 2, 4]] *= 20.0
    x = to_model_input(make_synthetic(200, **MNIST_LIKE, seed=1).images)
    assert active_units(model.encode(x).mean) == 3
    assert active_units(torch.zeros(10, 4)) == 0


@pytest.mark.slow  # runs the CLI in a subprocess
def test_evaluate_writes_eval_json_with_the_contract_keys(tiny_run):
    result = run_cli("vae.evaluate", f"run={tiny_run}", "iwae_k=20", "max_images=32", "batch_size=16")
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tiny_run / "eval.json").read_text())
    assert EVAL_KEYS <= set(results)
    assert results["split"] == "test" and results["binarize"] == "none" and results["iwae_k"] == 20
    assert math.isclose(results["neg_elbo_nats"], results["gen_nats"] + results["kl_nats"], rel_tol=1e-6)
    assert results["iwae_nll_nats"] <= results["neg_elbo_nats"] + 1.0
    assert math.isclose(results["neg_elbo_bits_per_dim"], results["neg_elbo_nats"] / (784 * math.log(2)), rel_tol=1e-9)
    # Active units and the KL per dim are those of the run's best model on the same 32 test images.
    loaded = load_run(tiny_run)
    test = build_data(loaded.checkpoint["config"]).test.images[:32]
    posterior = encode_images(loaded.model, test)
    assert results["active_units"] == active_units(posterior.mean)
    torch.testing.assert_close(torch.tensor(results["kl_per_dim"]), mean_kl_per_dim(posterior), rtol=1e-4, atol=1e-5)


def test_dataset_loss_terms_report_the_encoders_mean_sigma_over_uneven_batches():
    model, x = _model_and_data(latent_dim=3, num_images=7)
    images = make_synthetic(7, **MNIST_LIKE, seed=0).images  # uint8, as the data sets hold them
    with torch.no_grad():
        for layer in model.encoder.log_var.modules():
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.normal_(layer.bias, mean=-1.0)  # sigmas well away from 1
        sigma = model.encode(x).std
    terms = dataset_loss_terms(model, images, objective=NEG_ELBO, batch_size=3)
    assert math.isclose(terms["mean_sigma"], float(sigma.mean()), rel_tol=1e-5)


def test_validation_loss_carries_the_free_bits_floor_like_the_training_loss():
    model, _ = _model_and_data()
    images = make_synthetic(10, **MNIST_LIKE, seed=1).images
    plain = dataset_loss_terms(model, images, objective=ELBO(0.5, "bce", "mean"), batch_size=4)
    # a floor above every dim's KL
    floored = dataset_loss_terms(model, images, objective=ELBO(0.5, "bce", "mean", free_bits=100.0), batch_size=4)
    assert floored["loss"] == pytest.approx(plain["gen_loss"] + 0.5 * 100.0, rel=1e-5)
    assert floored["kl"] == pytest.approx(plain["kl"]) and floored["neg_elbo_nats"] == pytest.approx(
        plain["neg_elbo_nats"]
    )


def test_validation_runs_in_full_fp32_with_tf32_off_and_restores_the_training_setting(monkeypatch):
    # apply_runtime turns TF32 on for training on a GPU; the reported loss terms must not use it.
    model, _ = _model_and_data()
    seen = []
    forward = model.forward

    def recording_forward(*args, **kwargs):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", recording_forward)
    images = make_synthetic(5, **MNIST_LIKE, seed=2).images
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # flags only: no GPU needed
    try:
        dataset_loss_terms(model, images, objective=NEG_ELBO, batch_size=2)
        restored = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert seen == [(False, False)] * 3
    assert restored == (True, True)


def test_an_exported_run_has_no_optimizer_or_data_path_and_reevaluates_through_vae_data_dir(tmp_path, monkeypatch):
    from test_data import write_fake_mnist

    from vae import evaluate, export
    from vae.checkpoint import load_checkpoint
    from vae.train import train

    from conftest import TINY_DATA, compose_config

    write_fake_mnist(tmp_path / "data" / "MNIST" / "raw", gz=True, num_train=40, num_test=8)
    run = tmp_path / "run"
    overrides = [
        *(word for word in TINY_DATA if not word.startswith("data")),
        "data=mnist",
        f"data.root={tmp_path / 'data'}",
        "data.val_split=8",
        "data.binarize=dynamic",
    ]
    train(compose_config([*overrides, "model=mlp", "model.hidden_dims=[16]", "epochs=1", "reduction=sum"]), run)
    out = tmp_path / "shared"
    export.main([f"run={run}", f"out={out}"])

    small = load_checkpoint(out / "checkpoints" / "last.pt")
    assert "optimizer" not in small and "rng" not in small and small["config"]["data"]["root"] is None
    assert str(tmp_path) not in (out / "checkpoints" / "last.pt").read_bytes().decode("latin-1")
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "data"))
    first = evaluate.main([f"run={out}", "iwae_k=4", "checkpoint=last"])
    second = evaluate.main([f"run={out}", "iwae_k=4", "checkpoint=last"])
    assert first["iwae_nll_nats"] == second["iwae_nll_nats"] and first["precision"] == "fp32"
    # the same weights in the full run give the same numbers
    assert evaluate.main([f"run={run}", "iwae_k=4", "checkpoint=last"])["iwae_nll_nats"] == first["iwae_nll_nats"]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "config.json",
        "eval.json",
        "evals",
        "metrics.json",
        "run.json",
    ]
    assert json.loads((out / "config.json").read_text()) == small["config"]  # the config, readable without weights
    # half-precision storage: half the bytes of the weights, loaded back into fp32 parameters
    half = tmp_path / "half"
    export.main([f"run={run}", f"out={half}", "dtype=fp16"])
    stored = load_checkpoint(half / "checkpoints" / "last.pt")
    assert stored["weights_dtype"] == "fp16" and all(t.dtype == torch.float16 for t in stored["model"].values())
    assert (half / "checkpoints" / "last.pt").stat().st_size < 0.7 * (out / "checkpoints" / "last.pt").stat().st_size
    halved = evaluate.main([f"run={half}", "iwae_k=4", "checkpoint=last"])
    assert (
        halved["iwae_nll_nats"] != first["iwae_nll_nats"]
        and abs(halved["iwae_nll_nats"] - first["iwae_nll_nats"]) < 0.5
    )
    with pytest.raises(SystemExit, match="dtype must be fp32 or fp16"):
        export.main([f"run={run}", f"out={tmp_path / 'bf'}", "dtype=bf16"])
    described = json.loads((out / "run.json").read_text())  # where it trained, without the command line's paths
    assert "command" not in described and described["machine"]["cpu"] and str(tmp_path) not in json.dumps(described)
    assert [p.name for p in (out / "evals").iterdir()] == ["last_test_k4_dynamic_fp32_n8.json"]  # twice the same one


def test_evaluations_of_other_settings_all_stay_on_disk_and_the_reader_picks_the_one_asked_for(
    tiny_run, tmp_path, capsys
):
    import shutil

    from vae import evaluate, export
    from vae.runs import find_eval

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval.json", "evals"))
    first = evaluate.main([f"run={run}", "iwae_k=2", "max_images=8"])
    kept_first = run / "evals" / "best_test_k2_none_fp32_n8.json"
    assert (
        capsys.readouterr().out.strip().endswith(f"wrote {kept_first} and {run / 'eval.json'} (the newest evaluation)")
    )
    second = evaluate.main([f"run={run}", "iwae_k=3", "max_images=8", "checkpoint=last"])
    kept_second = run / "evals" / "last_test_k3_none_fp32_n8.json"

    assert sorted((run / "evals").iterdir()) == [kept_first, kept_second]
    assert json.loads(kept_first.read_text()) == first and json.loads(kept_second.read_text()) == second
    assert json.loads((run / "eval.json").read_text()) == second  # eval.json: the newest, as before
    assert find_eval(run, iwae_k=2) == (kept_first, first)
    assert find_eval(run, split="test").path == kept_second  # the newest of those that match
    assert find_eval(run, checkpoint="best", iwae_k=3) is None and find_eval(run, split="val") is None
    with pytest.raises(TypeError, match="unknown keys"):
        find_eval(run, k=2)

    # vae.export copies evals/ with its times: the same evaluation is the newest there
    out = tmp_path / "exported"
    export.main([f"run={run}", f"out={out}"])
    assert sorted(p.name for p in (out / "evals").iterdir()) == [kept_first.name, kept_second.name]
    assert find_eval(out, split="test").path == out / "evals" / kept_second.name

    # a run evaluated before evals/ existed: its eval.json when that is the one asked for, else nothing
    shutil.rmtree(run / "evals")
    assert find_eval(run, checkpoint="last", iwae_k=3) == (run / "eval.json", second)
    assert find_eval(run, iwae_k=2) is None


def test_the_likelihood_table_reads_the_k5000_evaluation_and_refuses_a_run_without_one(tmp_path, monkeypatch, capsys):
    module = _experiment_module("experiments/likelihood/table.py")
    run = tmp_path / "runs" / "burda_vae-seed0"
    (run / "evals").mkdir(parents=True)  # a committed run: config.json, no weights (they are kept in git history)
    (run / "config.json").write_text(json.dumps({"seed": 0, "optim": {"stage_divisor": 30}}))
    (run / "metrics.json").write_text(json.dumps({"epoch": 110, "wall_seconds": 600.0}))
    common = {"checkpoint": "last", "split": "test", "binarize": "dynamic", "precision": "fp32", "num_images": 10000}
    table_one = {**common, "iwae_k": 5000, "iwae_nll_nats": 91.3, "neg_elbo_nats": 96.2, "active_units": 22}
    quick_look = {**common, "iwae_k": 100, "iwae_nll_nats": 92.0, "neg_elbo_nats": 96.2, "active_units": 22}
    wanted = run / "evals" / "last_test_k5000_dynamic_fp32_n10000.json"
    wanted.write_text(json.dumps(table_one))
    (run / "evals" / "last_test_k100_dynamic_fp32_n10000.json").write_text(json.dumps(quick_look))
    (run / "eval.json").write_text(json.dumps(quick_look))  # a later quick look is the newest
    monkeypatch.setattr(module, "HERE", tmp_path)

    [row] = module.rows()
    assert row["experiment"] == "burda_vae" and [(r["nll"], r["k"]) for r in row["runs"]] == [(91.3, 5000)]
    assert "burda_vae-seed0: read evals/last_test_k5000_dynamic_fp32_n10000.json" in capsys.readouterr().err
    wanted.unlink()
    with pytest.raises(SystemExit, match="no evaluation with checkpoint=last split=test iwae_k=5000 precision=fp32"):
        module.rows()


def test_snapshots_keep_the_weights_every_n_epochs_for_a_learning_curve(tmp_path):
    from vae import evaluate
    from vae.checkpoint import load_checkpoint
    from vae.train import train

    from conftest import TINY, compose_config

    train(
        compose_config([*TINY, "data.num_train=64", "epochs=3", "snapshot_every_epochs=2", "reduction=sum"]), tmp_path
    )
    snapshots = sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch_*.pt"))
    assert snapshots == ["epoch_0002.pt"]
    snapshot = load_checkpoint(tmp_path / "checkpoints" / "epoch_0002.pt")
    assert snapshot["epoch"] == 2 and "optimizer" not in snapshot
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert any(not torch.equal(snapshot["model"][k], last["model"][k]) for k in last["model"])  # epoch 3 moved on
    results = evaluate.main([f"run={tmp_path}", "checkpoint=epoch_0002", "iwae_k=2", "max_images=8"])
    assert results["epoch"] == 2


def _experiment_module(relative: str):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location(relative.replace("/", "_")[:-3], REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_curve_evaluates_every_snapshot_and_the_last_checkpoint_between_snapshots(tmp_path):
    from vae.train import train

    from conftest import TINY, compose_config

    train(compose_config([*TINY, "data.num_train=64", "epochs=3", "snapshot_every_epochs=2"]), tmp_path)
    module = _experiment_module("experiments/likelihood/curve.py")
    curve = module.run_curve(tmp_path, k=2, images=8, data_root=None)
    assert [point["epoch"] for point in curve["points"]] == [2, 3]  # epoch 3 comes from last.pt
    assert curve["epochs"] == 3 and curve["images"] == 8 and curve["objective"] == "elbo"
    assert curve["model"] == load_run(tmp_path).config.model.name
    final_only = module.run_curve(tmp_path, k=2, images=8, data_root=None, last_only=True)
    assert final_only["points"] == curve["points"][-1:]  # the same draws give the same number
    assert curve["split"] == "val"  # the held-out images, never the test split
    first, last = (point["heldout_iwae_nll_nats"] for point in curve["points"])
    assert math.isfinite(first) and math.isfinite(last) and first != last


def test_bf16_bias_compares_the_same_noise_in_both_precisions(tmp_path):
    from vae.train import train

    from conftest import TINY, compose_config

    train(compose_config([*TINY, "data.num_train=64", "epochs=1"]), tmp_path)
    module = _experiment_module("experiments/likelihood/bf16_bias.py")
    row = module.measure(tmp_path, k=3, images=8, data_root=None)
    assert row["images"] == 8 and row["k"] == 3
    assert row["bias_nats"] == pytest.approx(row["nll_bf16_nats"] - row["nll_fp32_nats"])
    # the same draws: rounding alone separates them, far less than the Monte Carlo spread of a k=3 bound
    assert 0 < row["max_abs_image_difference_nats"] < 1.0
    loaded = load_run(tmp_path, checkpoint="last")
    images = module.run_data(loaded).test.images[:8]
    again, _ = module.per_image_bound(loaded.model, images, k=3, dtype=None)
    assert float(-again.mean()) == row["nll_fp32_nats"]  # fp32 repeats exactly: one seed, one set of draws


def test_heldout_curves_come_from_the_validation_pass_of_every_epoch(tiny_run, tmp_path):
    module = _experiment_module("experiments/likelihood/heldout.py")
    curve = module.heldout_curve(tiny_run)
    assert curve["split"] == "val" and [p["epoch"] for p in curve["points"]] == [1, 2]
    final = json.loads((tiny_run / "metrics.json").read_text())["val"]
    assert curve["points"][-1]["neg_elbo_nats"] == pytest.approx(final["neg_elbo_nats"], rel=1e-6)
    module.plot([curve], tmp_path / "heldout.png")
    assert (tmp_path / "heldout.png").stat().st_size > 0


def test_the_likelihood_table_reads_the_beyond_burda_rows_at_the_largest_k_each_run_has(tmp_path, monkeypatch, capsys):
    module = _experiment_module("experiments/likelihood/table.py")
    common = {"checkpoint": "last", "split": "test", "binarize": "dynamic", "precision": "fp32", "num_images": 10000}
    for seed, (k, nll) in enumerate([(1000, 84.0), (5000, 83.0)]):
        precision = "bf16" if k == 1000 else "fp32"
        run = tmp_path / "runs" / f"burda_hvae-seed{seed}"
        (run / "evals").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"seed": seed}))
        (run / "metrics.json").write_text(json.dumps({"epoch": 12, "wall_seconds": 3000.0 + 600 * seed}))
        (run / "run.json").write_text(json.dumps({"machine": {"cpu": "AMD EPYC", "cpu_bf16": False, "gpu": None}}))
        result = {**common, "iwae_k": k, "iwae_nll_nats": nll, "neg_elbo_nats": nll + 4, "active_units": 30}
        result["precision"] = precision
        (run / "evals" / f"last_test_k{k}_dynamic_{precision}_n10000.json").write_text(
            json.dumps({**result, "active_units_per_layer": [60 + seed, 30]})
        )
        if k == 5000:  # a run with fp32 and bf16 evaluations at the same k: fp32 is read
            (run / "evals" / "last_test_k5000_dynamic_bf16_n10000.json").write_text(
                json.dumps({**result, "precision": "bf16", "iwae_nll_nats": 99.0, "active_units_per_layer": [1, 1]})
            )
        quick = {**result, "iwae_k": 100, "num_images": 1000}  # a quick look on a subset is never read
        (run / "evals" / "last_test_k100_dynamic_fp32_n1000.json").write_text(json.dumps(quick))
    (tmp_path / "runs" / "burda_resnet-seed0" / "checkpoints").mkdir(parents=True)  # trained, not evaluated yet
    monkeypatch.setattr(module, "HERE", tmp_path)

    assert module.rows() == []  # the beyond-Burda runs are not Burda et al.'s rows
    [row] = module.beyond_rows()
    assert row["experiment"] == "burda_hvae" and [(r["k"], r["precision"], r["nll"]) for r in row["runs"]] == [
        (1000, "bf16", 84.0),
        (5000, "fp32", 83.0),
    ]
    assert "burda_resnet-seed0: no whole-test-set evaluation" in capsys.readouterr().err
    module.print_beyond([row])
    line = capsys.readouterr().out.splitlines()[-1]
    assert "| 2 (0, 1) | 83.50 ± 0.71, k = 1000 (bf16)/k = 5000 (fp32) |" in line and "60.5 ± 0.7, 30.0 ± 0.0" in line
    assert "| CPU | AMD EPYC (no bf16) | 82.90 (IWAE k = 50, two layers) |" in line


def test_an_interrupted_evaluation_continues_from_its_saved_state_to_the_uninterrupted_numbers(tmp_path, monkeypatch):
    import vae.evaluate as evaluate

    model, _ = _model_and_data(latent_dim=3, num_images=0)
    images = make_synthetic(10, **MNIST_LIKE, seed=3).images
    settings = dict(iwae_k=7, batch_size=3, chunk=4, seed=5, progress=False)
    whole = evaluate.evaluate_run(model, images, **settings)
    state = tmp_path / "evals" / "last_test_k7.partial.pt"
    real, calls = evaluate.iwae_log_likelihood, []

    def dies_at_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the kill of a session's end, after two batches were saved
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "iwae_log_likelihood", dies_at_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_run(model, images, **settings, state_path=state)
    assert torch.load(state, weights_only=True)["done"] == 2
    monkeypatch.setattr(evaluate, "iwae_log_likelihood", real)
    counted = []
    monkeypatch.setattr(evaluate, "iwae_log_likelihood", lambda *a, **k: counted.append(1) or real(*a, **k))
    resumed = evaluate.evaluate_run(model, images, **settings, state_path=state)
    assert len(counted) == 2  # 4 batches of 3, 3, 3, 1 images: only the last two are computed again
    assert resumed == whole  # bit for bit: the same bound, ELBO terms and active units
    assert not state.exists()  # removed once the evaluation is whole


def test_an_evaluation_state_of_other_settings_or_weights_is_not_continued(tmp_path):
    import vae.evaluate as evaluate

    model, _ = _model_and_data(latent_dim=3, num_images=0)
    images = make_synthetic(6, **MNIST_LIKE, seed=3).images
    settings = dict(iwae_k=5, batch_size=3, chunk=5, seed=0, progress=False)
    key = evaluate._state_key(model, images, iwae_k=5, batch_size=3, chunk=5, seed=0, autocast_dtype=None)
    assert key != evaluate._state_key(model, images, iwae_k=6, batch_size=3, chunk=5, seed=0, autocast_dtype=None)
    assert key != evaluate._state_key(model, images[:3], iwae_k=5, batch_size=3, chunk=5, seed=0, autocast_dtype=None)
    state = tmp_path / "state.pt"
    evaluate._save_state(state, {"key": key, "done": 1, "terms": {}, "log_likelihoods": [torch.full((3,), 99.0)]})
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # other weights: the saved batch must not be reused
    result = evaluate.evaluate_run(model, images, **settings, state_path=state)
    assert result == evaluate.evaluate_run(model, images, **settings)
    state.write_bytes(b"cut short")  # a file truncated by a kill is ignored, not fatal
    assert evaluate.evaluate_run(model, images, **settings, state_path=state) == result


@pytest.mark.slow  # runs the CLI in a subprocess
def test_sigterm_during_an_evaluation_says_in_one_line_where_its_state_is_and_how_to_continue(tiny_run, tmp_path):
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    args = [f"run={run}", "iwae_k=2000", "batch_size=4", "checkpoint=last"]
    process = subprocess.Popen(
        [sys.executable, "-m", "vae.evaluate", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list((run / "evals").glob("*.partial.pt")):
        assert process.poll() is None and time.time() < deadline, process.stderr.read()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("stopped by SIGTERM")]
    [partial] = (run / "evals").glob("*.partial.pt")
    assert f"its state after the last whole batch is in {partial}" in line
    assert f"the same command continues it: {sys.executable} -m vae.evaluate {' '.join(args)}" in line


def test_the_likelihood_readme_holds_the_like_for_like_table_of_the_committed_evaluations():
    """Every line of table.py's like-for-like table, from the committed evaluations, is in the README."""
    module = _experiment_module("experiments/likelihood/table.py")
    lines = module.like_for_like(module.rows(), module.beyond_rows())
    readme = (REPO / "experiments" / "likelihood" / "README.md").read_text()
    assert len(lines) > 10 and any("tie" in line for line in lines)
    assert [line for line in lines if line and line not in readme] == []


def test_a_tie_is_called_only_where_the_interval_holds_the_published_number():
    module = _experiment_module("experiments/likelihood/table.py")
    assert (
        module.verdict([84.93, 84.50, 84.76], 84.78) == "tie (-0.05; interval 84.19-85.27)"
    )  # the rounded per-seed values
    assert module.verdict([84.93, 84.50, 84.76], 86.76).startswith("-2.03 (interval")
    assert module.verdict([88.86], 86.76) == "+2.10 (one seed)"


def test_the_likelihood_readme_holds_the_full_schedule_table_of_the_committed_metrics():
    module = _experiment_module("experiments/likelihood/full_schedule.py")
    table = module.table()
    assert table.count("\n") == 2 and "| 1 |" in table.splitlines()[0]
    assert table in (REPO / "experiments" / "likelihood" / "README.md").read_text()


def test_the_likelihood_readme_states_the_k_precision_record():
    import json

    record = json.loads((REPO / "experiments" / "likelihood" / "k_precision.json").read_text())
    readme = (REPO / "experiments" / "likelihood" / "README.md").read_text()
    for row in record["runs"]:
        for setting, nll in row["nll_nats"].items():
            assert f"{nll:.3f}" in readme, (row["run"], setting)
        if "bf16_minus_fp32_at_k1000" in row:
            diff = row["bf16_minus_fp32_at_k1000"]
            assert f"bf16 - fp32 = {diff['mean_nats']:+.3f} ± {diff['standard_error']:.3f}" in readme


def test_k_precision_continues_a_stopped_comparison_to_the_numbers_of_an_unstopped_one(tiny_run, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "experiments" / "likelihood"))
    module = _experiment_module("experiments/likelihood/k_precision.py")
    monkeypatch.setattr(module, "BATCH", 16)
    monkeypatch.setattr(
        module, "SETTINGS", {"k1000_bf16": (4, "bf16"), "k1000_fp32": (4, "fp32"), "k5000_fp32": (9, "fp32")}
    )
    whole, stopped = tmp_path / "whole.json", tmp_path / "stopped.json"
    args = [str(tiny_run), "--images", "48"]
    module.main([*args, "--out", str(whole)])
    row = json.loads(whole.read_text())["runs"][0]
    assert set(row["nll_nats"]) == set(module.SETTINGS) and "partial" not in row
    assert row["machine"]["cpu_id"] == module.cpu_id() and all(len(v) == 48 for v in row["per_image_nll"].values())
    # the two k = 4 settings pair the same draws: rounding alone, far below a k = 4 bound's Monte Carlo spread
    diff = [a - b for a, b in zip(row["per_image_nll"]["k1000_bf16"], row["per_image_nll"]["k1000_fp32"], strict=True)]
    assert 0 < max(abs(d) for d in diff) < 1.0
    calls, bound = [], module.per_image_bound

    def stops_at_the_fifth_batch(*a, **kw):
        calls.append(kw["seed"])
        if len(calls) == 5:
            raise KeyboardInterrupt  # a session's end, mid-setting
        return bound(*a, **kw)

    monkeypatch.setattr(module, "per_image_bound", stops_at_the_fifth_batch)
    with pytest.raises(KeyboardInterrupt):
        module.main([*args, "--out", str(stopped)])
    kept = json.loads(stopped.read_text())["runs"][0]
    assert list(kept["nll_nats"]) == ["k1000_bf16"] and len(kept["partial"]["k1000_fp32"]["per_image_nll"]) == 16
    monkeypatch.setattr(module, "per_image_bound", bound)
    continued = module.main([*args, "--out", str(stopped)])["runs"][0]
    assert continued["per_image_nll"] == row["per_image_nll"] and "partial" not in continued
    seconds = continued["seconds"]
    again = module.main([*args, "--out", str(stopped)])["runs"][0]  # all held: nothing is measured again
    assert again["seconds"] == seconds and len(json.loads(stopped.read_text())["runs"]) == 1
    monkeypatch.setattr(module, "cpu_id", lambda: "another CPU model")
    module.main([*args, "--settings", "k1000_fp32", "--out", str(stopped)])  # another CPU: a row of its own
    rows = json.loads(stopped.read_text())["runs"]
    assert [module.row_cpu_id(r) for r in rows] == [row["machine"]["cpu_id"], "another CPU model"]

"""End to end: a run through the real entry point writes the run directory the contract names."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae.data import make_synthetic, to_model_input
from vae.objectives import ELBO
from vae.runs import load_run
from vae.step import TrainingDiverged, check_finite
from vae.train import train

from conftest import MNIST_LIKE, REPO, TINY, TINY_DATA, compose_config, make_vae, one_layer_output, run_cli

LECTURE_LOSS = ELBO(kl_weight=1e-3, gen_loss="bce", reduction="mean")

CONTRACT_SCALARS = {
    "train/loss",
    "train/gen_loss",
    "train/kl",
    "val/loss",
    "val/gen_loss",
    "val/kl",
    "val/neg_elbo_nats",
}
TERMS = {"loss", "gen_loss", "kl", "neg_elbo_nats"}


def events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_run_directory_holds_what_the_contract_names(tiny_run):
    for name in (
        "metrics.json",
        "run.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "images/val_reconstructions.png",
        "images/samples_prior.png",
        "images/latent_grid.png",
    ):
        assert (tiny_run / name).is_file(), name
    assert list(tiny_run.glob("events.out.tfevents.*"))


def test_metrics_json_has_the_contract_fields(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["epoch"] == 2
    assert TERMS <= set(metrics["train"]) and TERMS | {"beta_effective"} <= set(metrics["val"])
    assert math.isclose(metrics["val"]["beta_effective"], 1e-3 * 784 / 2)
    assert metrics["wall_seconds"] > 0 and metrics["images_per_second"] > 0
    # The negative ELBO in nats per image is BCE + KL summed, far above the per-pixel loss.
    assert metrics["val"]["neg_elbo_nats"] > 10 * metrics["val"]["loss"]
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2]


def test_checkpoints_load_with_weights_only_and_hold_plain_data(tiny_run):
    checkpoint = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "epoch", "step", "config", "rng"} <= set(checkpoint)
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 2 * math.ceil(256 / 32)
    assert type(checkpoint["config"]) is dict and checkpoint["config"]["latent_dim"] == 2
    assert isinstance(checkpoint["rng"]["torch"], torch.Tensor) and isinstance(checkpoint["rng"]["python"], list)
    best = torch.load(tiny_run / "checkpoints" / "best.pt", weights_only=True)
    assert best["best_val_loss"] <= checkpoint["best_val_loss"] + 1e-12


def test_tensorboard_has_the_contract_scalars_once_per_epoch(tiny_run):
    accumulator = events(tiny_run)
    scalars = set(accumulator.Tags()["scalars"])
    assert CONTRACT_SCALARS <= scalars
    for tag in CONTRACT_SCALARS:
        assert [event.step for event in accumulator.Scalars(tag)] == [1, 2], tag
    assert {"z_hparams/val_loss", "z_hparams/val_neg_elbo_nats"} <= scalars


def test_tensorboard_has_reconstructions_samples_and_the_latent_grid(tiny_run):
    accumulator = events(tiny_run)
    assert {"val/reconstructions", "view/samples_prior", "view/latent_grid"} <= set(accumulator.Tags()["images"])
    grid = accumulator.Images("view/latent_grid")[-1]
    assert (grid.width, grid.height) == (5 * 28, 5 * 28)


def test_tensorboard_opens_on_the_training_curves(tiny_run, tmp_path):
    """TensorBoard's Time Series sorts tag groups by name (byte order) and expands only the first two: those
    must be the per-epoch curves, with every other group the tools write (pictures, the explorer's figures,
    one-point evaluations, HParams columns, per-step scalars) after them."""
    import shutil

    from vae.explore import main as explore
    from vae.metrics import CURVE_GROUPS, EVAL_GROUP, HPARAMS_GROUP, IMAGES_GROUP, QUALITY_GROUP, STEP_GROUP

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    explore([f"run={run}", "grid_size=3", "pairs=1", "steps=3", "edit_images=1", "embedding_points=10"])
    accumulator = events(run)
    written = {tag.split("/")[0] for kind in ("scalars", "images") for tag in accumulator.Tags()[kind]}
    assert {"train", "val", IMAGES_GROUP, HPARAMS_GROUP} <= written
    assert any(tag.startswith(f"{IMAGES_GROUP}/explore_") for tag in accumulator.Tags()["images"])
    every = written | {EVAL_GROUP, QUALITY_GROUP, STEP_GROUP}
    assert sorted(every)[:2] == list(CURVE_GROUPS) == ["train", "val"]


def test_tensorboard_has_one_hparams_entry(tiny_run):
    accumulator = events(tiny_run)
    content = accumulator.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in content and "_hparams_/session_start_info" in content
    assert b"kl_weight" in content["_hparams_/session_start_info"]


def dashboard_columns(run_dir) -> tuple[list[str], list[str], list[str]]:
    """The HParams dashboard's columns for a run: (ticked hparams, every hparam, ticked metric tags).

    TensorBoard's backend sorts the hparams by (not differs, name); its dashboard (tf-hparams-query-pane,
    TensorBoard 2.21) sorts them by differs again and ticks the first five, and ticks the first five
    metric columns in the order the experiment declares them.
    """
    from tensorboard.plugins.hparams import backend_context, metadata

    experiment = metadata.parse_experiment_plugin_data(
        events(run_dir).PluginTagToContent("hparams")["_hparams_/experiment"]
    )
    backend_context._sort_and_reduce_to_hparams_limit(experiment)
    infos = sorted(experiment.hparam_infos, key=lambda info: not info.differs)  # stable, as the dashboard's
    names = [info.name for info in infos]
    return names[:5], names, [info.name.tag for info in experiment.metric_infos][:5]


def test_hparams_dashboard_shows_the_studys_knobs_first_and_the_final_nats_as_columns(tiny_run):
    ticked, declared, metrics = dashboard_columns(tiny_run)
    assert ticked[:3] == ["beta_effective", "kl_weight", "latent_dim"]
    # Outside a sweep the other two are the seed and the reduction (what kl_weight means), never a constant
    # such as batch_size or binarize: those are recorded and listed, unticked.
    assert ticked[3:] == ["reduction", "seed"]
    assert {"batch_size", "binarize", "lr", "data"} <= set(declared) - set(ticked)
    assert metrics == [
        "z_hparams/val_neg_elbo_nats",
        "z_hparams/val_rec_nats",
        "z_hparams/val_kl_nats",
        "z_hparams/test_neg_elbo_nats",  # vae.evaluate writes these two: declared, so ticked before it runs
        "z_hparams/test_iwae_nll_nats",
    ]


def test_the_hparams_a_sweep_varies_are_recorded_and_ticked(tmp_path):
    from omegaconf import OmegaConf

    from vae.summaries import flat_hparams, shown_hparams, swept_keys

    # What Hydra's basic sweeper leaves in the sweep directory, and a job's own `hydra` node.
    command_line = ["data=synthetic", "batch_size=32", "optim.lr=1e-3,3e-3", "optim.warmup_steps=range(0,20,10)"]
    OmegaConf.save({"hydra": {"overrides": {"task": command_line}}}, tmp_path / "multirun.yaml")
    hydra = {
        "mode": "MULTIRUN",
        "sweep": {"dir": str(tmp_path)},
        "sweeper": {"params": {"data.binarize": "none,dynamic"}},
    }
    assert swept_keys(OmegaConf.create(hydra)) == ["data.binarize", "optim.lr", "optim.warmup_steps"]
    assert swept_keys(OmegaConf.create({**hydra, "mode": "RUN"})) == []
    assert swept_keys() == []  # no Hydra job running

    config = compose_config([*TINY, "optim.warmup_steps=10"])
    hparams = flat_hparams(OmegaConf.to_container(config, resolve=True), swept=swept_keys(OmegaConf.create(hydra)))
    assert hparams["optim.warmup_steps"] == 10 and hparams["lr"] == config.optim.lr  # a swept key outside the list
    shown = shown_hparams({**hparams, "beta_effective": 0.4}, ["data.binarize", "optim.lr", "optim.warmup_steps"])
    assert shown == ["kl_weight", "latent_dim", "beta_effective", "binarize", "lr", "optim.warmup_steps"]
    assert "batch_size" not in shown


@pytest.mark.slow  # runs the CLI in a subprocess
def test_a_sweeps_runs_tick_what_the_sweep_varies_in_hparams(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "vae.train",
        "-m",
        *TINY,
        "data.num_train=64",
        "epochs=1",
        "optim.warmup_steps=0,4",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for job in ("0", "1"):
        ticked, declared, _ = dashboard_columns(sweep_dir / job)
        assert ticked == ["beta_effective", "kl_weight", "latent_dim", "optim.warmup_steps", "seed"], job
        assert {"batch_size", "binarize"} <= set(declared)


def test_run_json_records_versions_and_resolved_settings(tiny_run):
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["versions"]["torch"] == torch.__version__.split("+")[0] or info["versions"]["torch"].startswith(
        torch.__version__.split("+")[0]
    )
    assert info["runtime"]["device"] == "cpu"
    assert info["runtime"]["precision"] in ("fp32", "bf16") and info["runtime"]["threads"] >= 1
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: run.json names its commit and whether it had local changes
        assert info["git"]["commit"] == head.stdout.strip() and isinstance(info["git"]["dirty"], bool)
    else:
        assert info["git"] == {"commit": None, "dirty": None}


def test_load_run_gives_the_trained_model_and_config(tiny_run):
    loaded = load_run(tiny_run, checkpoint="last")
    state = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(value, state[key]) for key, value in loaded.model.state_dict().items())
    assert loaded.config.latent_dim == 2 and not loaded.model.training


def test_loss_falls_over_training(tiny_run):
    history = json.loads((tiny_run / "metrics.json").read_text())["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.slow  # runs the CLI in a subprocess
def test_one_epoch_through_the_cli_writes_a_hydra_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "vae.train", *TINY_DATA, "epochs=1", "latent_dim=3", "model=mlp", "optim=rmsprop", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert not (run_dir / "images" / "latent_grid.png").exists()  # the grid is for latent_dim 2 only
    assert json.loads((run_dir / "metrics.json").read_text())["epoch"] == 1


@pytest.mark.slow  # runs the CLI in a subprocess
@pytest.mark.xdist_group("tiny_sweep")  # one worker builds the sweep (make test runs pytest -n)
def test_multirun_writes_one_directory_per_job(tiny_sweep):
    settings = sorted(
        (config["kl_weight"], config["latent_dim"])
        for config in (OmegaConf.load(tiny_sweep / job / ".hydra" / "config.yaml") for job in "0123")
    )
    assert settings == [(0, 2), (0, 3), (1e-3, 2), (1e-3, 3)]
    for job in "0123":
        assert json.loads((tiny_sweep / job / "metrics.json").read_text())["epoch"] == 1


@pytest.mark.slow  # runs the CLI in a subprocess
def test_missing_data_stops_with_a_short_message(tmp_path):
    result = run_cli(
        "vae.train", f"data.root={tmp_path / 'nothing'}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "t10k-labels-idx1-ubyte" in output and "data=synthetic" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists() and "nothing is kept" in output  # a run that never started leaves nothing
    assert not (tmp_path / "nothing").exists()


@pytest.mark.slow  # runs the CLI in a subprocess
def test_a_run_that_never_started_leaves_no_empty_folders_but_a_run_that_trained_keeps_its_directory(tmp_path):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / ".gitkeep").touch()  # the repository's outputs/ as a fresh clone has it
    result = run_cli("vae.train", f"data.root={tmp_path / 'nothing'}", "data.download=false", cwd=tmp_path)
    assert result.returncode == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["outputs", "outputs/.gitkeep"]

    from vae.train import remove_unstarted_run

    trained = tmp_path / "trained"
    (trained / "checkpoints").mkdir(parents=True)
    (trained / "checkpoints" / "last.pt").touch()
    (trained / "train.log").touch()
    assert not remove_unstarted_run(trained) and (trained / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("overrides", [["gen_loss=l2"], ["reduction=sum", "kl_weight=1"], ["data.binarize=dynamic"]])
def test_training_variants_run_and_report_finite_nats(tmp_path, overrides):
    metrics = train(compose_config([*TINY, "data.num_train=64", "epochs=1", *overrides]), tmp_path)
    assert all(math.isfinite(metrics["val"][name]) for name in TERMS)


@pytest.mark.slow  # trains for a few hundred steps (about 12 s on 2 cores)
def test_glorot_init_leaves_the_mean_image_within_a_few_hundred_steps():
    # The trap: with PyTorch's default init the lecture's network sits at the mean image.
    # Trained with the trainer's own step and default runtime (bf16 + channels_last where the CPU has bf16).
    from vae.runtime import resolve_runtime
    from vae.step import batch_input, forward_backward

    runtime = resolve_runtime(
        device="cpu", threads=0, precision="auto", compile=False, channels_last="auto", deterministic=False
    )
    torch.manual_seed(0)
    images = make_synthetic(1024, **MNIST_LIKE, seed=0).images
    x = to_model_input(images)
    mean_image = x.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4)
    mean_image_bce = torch.nn.functional.binary_cross_entropy(mean_image.expand_as(x), x).item()
    model = make_vae("conv", image_shape=(1, 28, 28), latent_dim=2, init="glorot")
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    for _ in range(300):
        batch = batch_input(images, torch.randint(0, len(images), (64,)), runtime=runtime)
        forward_backward(model, optimizer, batch, runtime=runtime, objective=LECTURE_LOSS)
        optimizer.step()
    with torch.no_grad():
        output = model(x[:256])
        final = LECTURE_LOSS(output, x[:256]).gen_loss.item()
    # A network at the mean image scores 1.00 x its BCE; after 300 steps glorot's is well below it
    # (0.86 x in bf16 on an AVX512-BF16 EPYC at 1 thread, lower in fp32), so 0.9 x tells the two apart.
    assert final < 0.9 * mean_image_bce


def test_nan_loss_stops_training_naming_the_term():
    output = one_layer_output(torch.zeros(1, 1, 2, 2), torch.tensor([[float("nan"), 0.0]]), torch.zeros(1, 2))
    terms = ELBO(kl_weight=1.0, gen_loss="bce", reduction="sum")(output, torch.zeros(1, 1, 2, 2))
    with pytest.raises(TrainingDiverged, match=r"epoch 3, step 7 \(bad term: kl\)"):
        check_finite(terms, epoch=3, step=7)


def test_kl_warmup_is_logged_rising_to_the_configured_weight(tmp_path):
    train(compose_config([*TINY, "data.num_train=64", "epochs=3", "kl_warmup_epochs=2", "kl_weight=0.5"]), tmp_path)
    logged = [event.value for event in events(tmp_path).Scalars("train/kl_weight")]
    # 2 steps per epoch, 4 warm-up steps: the last step of epoch 1 is step 1 (0.25), of epoch 2 step 3 (0.75).
    assert logged == pytest.approx([0.5 * 0.25, 0.5 * 0.75, 0.5])


@pytest.fixture(scope="module")
def first_offline_runs(tmp_path_factory):
    """What a new user's first runs are: one epoch of the default `data=synthetic`, at kl_weight 1e-3 and 0."""
    runs = {}
    for kl_weight in ("1e-3", "0"):
        run_dir = tmp_path_factory.mktemp(f"first_run_kl{kl_weight}")
        runs[kl_weight] = (
            run_dir,
            train(compose_config(["data=synthetic", "epochs=1", f"kl_weight={kl_weight}"]), run_dir),
        )
    return runs


@pytest.mark.slow  # two epochs of the default synthetic set (80 steps each, about 25 s each on 2 cores)
def test_one_epoch_of_the_default_synthetic_data_learns_a_latent_space_that_varies_with_z(first_offline_runs):
    from vae.latent import decode_images, grid_latents

    model, _, _ = load_run(first_offline_runs["1e-3"][0])
    grid = decode_images(model, grid_latents(15, latent_dim=model.latent_dim, dims=(0, 1)))
    samples = model.sample(64, generator=torch.Generator().manual_seed(0))
    # Spent in the 200-step warm-up (the old default on 16 steps) both were one gray image: sd about 0.001.
    assert float(grid.std(0).mean()) > 0.05
    assert float(samples.std(0).mean()) > 0.05


@pytest.mark.slow  # shares the two runs above
def test_a_first_sweep_over_kl_weight_gives_jobs_that_differ(first_offline_runs):
    with_kl, without_kl = (first_offline_runs[w][1]["val"]["neg_elbo_nats"] for w in ("1e-3", "0"))
    assert abs(with_kl - without_kl) > 0.05 * with_kl  # lambda = 0 lets the KL grow: the -ELBO moves

"""The training loop, in plain PyTorch: `train(cfg, run_dir)` writes a run directory of docs/design.md.

`train` sets up, then for each epoch trains, validates, checkpoints and logs, each a function
below it; `on_step` sees every optimizer step. The command, `python -m vae.train key=value ...`,
is vae/train.py (Hydra, `resume=<run dir> [epochs=N]`, error.txt); this module knows nothing of it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from vae import distributed
from vae.build import build_data, build_model, build_optimizer, build_scheduler, warmup_steps
from vae.checkpoint import load_model_state, rng_state, save_checkpoint, set_rng_state
from vae.config import ConfigError, validate
from vae.data import DataSplits, SplitError, epoch_batches
from vae.features import FEATURES, FeatureError, FeatureSpace, load_features, space_for
from vae.likelihoods import likelihood_of
from vae.losses import LossTerms, beta_effective, kl_warmup_factor
from vae.metrics import STEP_GROUP
from vae.model import init_output_bias
from vae.objectives import Objective, ObjectiveContext, build_objective
from vae.progress import progress as show_progress
from vae.quality_metrics import QualityError, check_counts, score
from vae.runs import write_run_json
from vae.runtime import Runtime, apply_runtime, resolve_runtime
from vae.step import (
    TERM_NAMES,
    TrainingDiverged,
    batch_input,
    check_finite,
    dataset_loss_terms,
    forward_backward,
    is_finite,
)
from vae.summaries import flat_hparams, log_epoch, write_epoch_images, write_hparams_entry

log = logging.getLogger("vae.train")


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM: the run saved last.pt and stopped."""


class NoWriter:
    """Stands in for SummaryWriter on ranks other than 0, which write nothing."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


@dataclasses.dataclass
class TrainState:
    """What training has done so far, besides the weights and the optimizer: all a resume needs."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches of the next epoch already done (a mid-epoch checkpoint)
    epoch_sums: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(len(TERM_NAMES)))
    epoch_seen: int = 0  # images behind epoch_sums (per-image sums of the loss terms)
    best_val_loss: float = math.inf
    history: list[dict] = dataclasses.field(default_factory=list)
    skipped_steps: int = 0  # non-finite batches skipped (on_nan=skip)

    def to_checkpoint(self, model, optimizer, scheduler, *, config: dict, runtime: Runtime) -> dict:
        """The checkpoint dict of the run directory contract (loads with weights_only=True)."""
        return {
            **dataclasses.asdict(self),
            "epoch_sums": self.epoch_sums.detach().cpu(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": config,
            "rng": rng_state(),
            "runtime": runtime.as_dict(),
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> TrainState:
        """The state a checkpoint saved (the weights, optimizer and RNGs are restored by `restore`)."""
        fields = {f.name: checkpoint[f.name] for f in dataclasses.fields(cls) if f.name in checkpoint}
        return cls(**{**fields, "history": list(fields.get("history", []))})

    def start_epoch(self, device: torch.device) -> int:
        """The batch the next epoch starts at; the epoch's sums move to the device."""
        self.epoch_sums = self.epoch_sums.to(device)
        return self.batch_in_epoch

    def end_epoch(self) -> None:
        """The training pass of an epoch is done (on every rank): count it and clear its sums."""
        self.epoch, self.batch_in_epoch, self.epoch_seen = self.epoch + 1, 0, 0
        self.epoch_sums = torch.zeros(len(self.epoch_sums))

    def record_epoch(self, val_loss: float, record: dict) -> bool:
        """Add the epoch to the history; True when its val_loss is the best so far."""
        improved = val_loss < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, val_loss)
        self.history.append(record)
        return improved


@dataclasses.dataclass
class TrainingQuality:
    """quality_every_epochs: FID (and precision, recall) of `n` prior samples against the validation split,
    in `space`, whose validation features are computed once."""

    every: int
    n: int
    space: FeatureSpace
    reference: torch.Tensor  # (N_val, D) features of the validation images

    @classmethod
    def from_config(cls, config: dict, splits: DataSplits) -> TrainingQuality | None:
        every = config.get("quality_every_epochs", 0)  # absent in runs saved before the key existed
        if not every:
            return None
        name = space_for(config["data"]["name"], config.get("quality_features"))
        if name is None or name not in FEATURES:
            raise ConfigError(
                f"quality_features must be one of {', '.join(FEATURES.names())} for data={config['data']['name']} "
                f"(got {config.get('quality_features')!r}; only mnist and fashion_mnist have a default)"
            )
        try:
            space = load_features(name)
            space.check(tuple(splits.val.images.shape[1:]), "the run's images")
            check_counts(config["quality_n"], len(splits.val), space.num_features)
        except (FeatureError, QualityError) as error:
            raise ConfigError(f"quality_every_epochs: {error} (quality_n={config['quality_n']})") from None
        return cls(every=every, n=config["quality_n"], space=space, reference=space(splits.val.images))

    def measure(self, model: torch.nn.Module, *, epoch: int, seed: int) -> dict:
        """{'val_fid_<space>', 'val_precision_<space>', 'val_recall_<space>', 'quality_seconds'} on its epochs, else {}."""
        if epoch % self.every:
            return {}
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(seed)  # the same z every epoch: a curve of the model alone
        with torch.no_grad():
            batches = [model.sample(min(500, self.n - i), generator=generator) for i in range(0, self.n, 500)]
        model.train(was_training)
        samples = (torch.cat(batches).float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        scores = score(self.space(samples), self.reference)
        name = self.space.name
        return {
            f"val_fid_{name}": scores["fid"],
            f"val_precision_{name}": scores["precision"],
            f"val_recall_{name}": scores["recall"],
            "quality_seconds": time.perf_counter() - start,
        }


@dataclasses.dataclass
class Session:
    """What set-up builds once and every phase of the loop reads."""

    config: dict
    run_dir: Path
    runtime: Runtime
    ddp: distributed.Distributed
    splits: DataSplits
    model: torch.nn.Module
    forward: torch.nn.Module  # the model, wrapped in DDP and torch.compile as the runtime says
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # the lr as a function of the step (optim.schedule)
    train_images: torch.Tensor  # the training split, uint8, on the device
    writer: SummaryWriter | NoWriter
    beta: float  # the KL weight in per-image sums
    objective: Objective  # what training minimises, built once from the config (vae.objectives)
    term_names: tuple[str, ...]  # the loss terms summed over an epoch: TERM_NAMES, then each layer's KL if several
    # What the loop reads every step, read from the config once.
    epochs: int
    seed: int
    batch_size: int
    log_every: int
    on_nan: str  # "raise" or "skip"
    checkpoint_every_steps: int  # 0: only at the end of each epoch
    latent_dim: int
    kl_weight: float
    kl_warmup_epochs: float
    binarize: str  # data.binarize: "dynamic" draws each pixel afresh every step
    on_step: Callable[[Session, TrainState, LossTerms], None] | None = None  # after each optimizer step
    quality: TrainingQuality | None = None  # quality_every_epochs: the feature space and the validation features

    @property
    def device(self) -> torch.device:
        return torch.device(self.runtime.device)

    def save(self, state: TrainState, name: str = "last") -> None:
        checkpoint = state.to_checkpoint(
            self.model, self.optimizer, self.scheduler, config=self.config, runtime=self.runtime
        )
        save_checkpoint(self.run_dir / "checkpoints" / f"{name}.pt", checkpoint)


class StopSignal:
    """Remembers SIGINT / SIGTERM so the loop can finish its step, checkpoint and leave."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (a launcher's worker): leave signals alone
                pass
        return self

    def _handle(self, signum, _frame):
        if self.received is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# long: the loop itself: set-up, then per epoch train, validate, checkpoint, log; each step a function below
def train(
    cfg: DictConfig,
    run_dir: Path,
    *,
    resume_from: dict | None = None,
    on_step: Callable[[Session, TrainState, LossTerms], None] | None = None,
) -> dict:
    """Train as `cfg` says, writing the run directory of docs/design.md; returns the final metrics.

    `resume_from` is a checkpoint of this run: training goes on from its state, bit for bit.
    `on_step(session, state, terms)` is called after each optimizer step, before it is logged
    (state.step counts it): an experiment probes the model mid-epoch there. It runs in train
    mode inside the epoch; a probe that switches to eval() must switch back to train().
    """
    session, state = set_up(cfg, Path(run_dir), resume_from)
    session.on_step = on_step
    ddp = session.ddp
    if state.epoch >= session.epochs:
        log.info(
            "the run has finished its %d epochs; pass epochs=N (more than %d) to train further",
            *[session.epochs, state.epoch],
        )
        session.writer.close()
        metrics_path = session.run_dir / "metrics.json"
        return json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if resume_from is not None and ddp.is_main:
        log.info(
            "resumed from epoch %d, step %d (batch %d of the epoch)%s",
            *(state.epoch, state.step, state.batch_in_epoch),
            f"; best val_loss so far {state.best_val_loss:.4f}" if math.isfinite(state.best_val_loss) else "",
        )
    started, metrics = time.perf_counter(), {}
    with StopSignal() as stop:
        for epoch in range(state.epoch + 1, session.epochs + 1):
            epoch_start = time.perf_counter()
            train_metrics, images_per_second, schedule = train_epoch(session, state, epoch, stop)
            if ddp.is_main:  # rank 0 validates, checkpoints and logs; the others wait for it
                val_metrics = validate_epoch(session)
                record = {
                    "epoch": epoch,
                    "train_loss": train_metrics["loss"],
                    "val_loss": val_metrics["loss"],
                    "val_neg_elbo_nats": val_metrics["neg_elbo_nats"],
                    "images_per_second": images_per_second,
                    "epoch_seconds": time.perf_counter() - epoch_start,
                }
                if session.quality is not None:
                    record |= session.quality.measure(session.model, epoch=epoch, seed=session.seed)
                improved = state.record_epoch(val_metrics["loss"], record)
                save_checkpoints(session, state, improved)
                metrics = log_epoch_end(session, state, train_metrics, val_metrics, schedule=schedule, started=started)
            ddp.barrier()
    session.writer.close()
    distributed.destroy_process_group(ddp)
    if ddp.is_main and state.history:
        best = min(state.history, key=lambda record: record["val_loss"])
        log.info(
            "finished %d epochs: best val_loss %.4f at epoch %d (checkpoints/best.pt), last %.4f. Run: %s. Next: "
            "python -m vae.explore run=%s | python -m vae.evaluate run=%s | tensorboard --logdir %s",
            *(state.epoch, best["val_loss"], best["epoch"], state.history[-1]["val_loss"], session.run_dir),
            *(session.run_dir, session.run_dir, session.run_dir),
        )
    return metrics


# long: builds a run's parts in the order they depend on each other (runtime, data, model, optimizer, state, writer)
def set_up(cfg: DictConfig, run_dir: Path, resume_from: dict | None) -> tuple[Session, TrainState]:
    """Check the config, resolve the runtime, load the data, build the model and optimizer, restore a checkpoint."""
    validate(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    ddp = distributed.from_environment()  # torchrun's rank and world size; one process otherwise
    if ddp.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    runtime = run_runtime(config, ddp, saved=resume_from.get("runtime") if resume_from is not None else None)
    apply_runtime(runtime, seed=config["seed"])  # the same seed on every rank: the same noise for the global batch
    distributed.init_process_group(ddp, runtime.device)
    device = torch.device(runtime.device)
    splits = load_data(config)
    # quality_every_epochs: its feature space checked (and the validation features computed) before anything is written
    quality = TrainingQuality.from_config(config, splits) if ddp.is_main else None
    model = build_model(config).to(device)
    if resume_from is None and config["model"].get("output_bias") == "data_mean":
        init_output_bias(model, splits.train.images.float().mean(0) / 255)  # uint8 splits: 0..255
    optimizer = build_optimizer(model.parameters(), config)
    steps_per_epoch = math.ceil(len(splits.train) / config["batch_size"])
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=steps_per_epoch)
    warmup = warmup_steps(config["optim"], steps_per_epoch=steps_per_epoch)
    if warmup < config["optim"]["warmup_steps"]:
        log.info(
            "lr warm-up: %d steps, optim.warmup_steps=%d bounded by optim.max_warmup_epochs=%g of an epoch "
            "(%d steps); optim.max_warmup_epochs=0 lifts the bound",
            *(warmup, config["optim"]["warmup_steps"], config["optim"]["max_warmup_epochs"], steps_per_epoch),
        )
    objective = build_objective(config, likelihood=likelihood_of(model))
    names = objective.term_names(len(model.latent_dims))  # TERM_NAMES, each layer's KL if several, its own
    if resume_from is None:
        state = TrainState(epoch_sums=torch.zeros(len(names)))
    else:
        state = restore(resume_from, model, optimizer, scheduler)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if ddp.enabled:
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(forward) if runtime.compile else forward
    if ddp.is_main:
        write_run_json(
            run_dir,
            runtime=runtime.as_dict(),
            resumed_from_step=state.step if resume_from else None,
            saved_runtime=resume_from.get("runtime") if resume_from else None,
        )
    log.info("run directory %s | %s", run_dir, runtime.as_dict())
    beta = beta_effective(
        kl_weight=config["kl_weight"],
        reduction=config["reduction"],
        num_pixels=math.prod(config["data"]["image_shape"]),
        latent_dim=config["latent_dim"],
    )
    writer = NoWriter()
    if ddp.is_main:
        # purge_step: TensorBoard drops what an interrupted attempt logged after the checkpoint, so curves never double.
        writer = SummaryWriter(log_dir=str(run_dir), purge_step=state.step + 1 if resume_from else None)
        if resume_from is None:
            write_hparams_entry(writer, {**flat_hparams(config), "beta_effective": beta})
    train_images = splits.train.images.to(device)  # the whole split lives on the device
    session = Session(
        *(config, run_dir, runtime, ddp, splits, model, forward, optimizer, scheduler, train_images, writer, beta),
        objective=objective,
        term_names=names,
        epochs=config["epochs"],
        seed=config["seed"],
        batch_size=config["batch_size"],
        log_every=config["log_every"],
        on_nan=config["on_nan"],
        checkpoint_every_steps=config["checkpoint_every_steps"],
        latent_dim=config["latent_dim"],
        kl_weight=config["kl_weight"],
        kl_warmup_epochs=config["kl_warmup_epochs"],
        binarize=config["data"]["binarize"],
        quality=quality,
    )
    return session, state


def run_runtime(config: dict, ddp: distributed.Distributed, *, saved: dict | None) -> Runtime:
    """The run's settings, resolved for this machine from the config: `auto`, or what the command line says.

    A resumed run resolves them afresh too (`config` is its own, with the overrides a resume may make),
    so a run moves between machines: one started on a GPU goes on on a CPU and the other way round.
    Only `deterministic`, which defines the run, is kept from the settings it was saved with (`saved`).
    """
    deterministic = config["deterministic"] if saved is None else saved.get("deterministic", config["deterministic"])
    runtime = resolve_runtime(
        device=config["device"],
        threads=config["threads"],
        precision=config["precision"],
        compile=config["compile"],
        channels_last=config["channels_last"],
        deterministic=deterministic,
    )
    if ddp.enabled and config["threads"] == 0 and runtime.device == "cpu":  # ranks on one machine share its cores
        runtime.threads = max(1, runtime.threads // int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world_size)))
    if ddp.enabled and runtime.device == "cuda":
        runtime.device = f"cuda:{ddp.local_rank}"
        torch.cuda.set_device(runtime.device)
    return runtime


def load_data(config: dict) -> DataSplits:
    """The config's splits, refused by name when the images are not of data.image_shape, the validation split
    cannot be held out, or a batch is larger than the training split (before any step)."""
    try:
        splits = build_data(config)
    except SplitError as error:
        raise ConfigError(str(error)) from None
    expected, found = list(config["data"]["image_shape"]), list(splits.train.images.shape[1:])
    if found != expected:
        raise ConfigError(f"data.image_shape is {expected} but the images are {found}")
    if config["batch_size"] > len(splits.train):
        raise ConfigError(
            f"batch_size must be at most the training split's {len(splits.train)} images (got {config['batch_size']})"
        )
    return splits


def restore(checkpoint: dict, model, optimizer, scheduler) -> TrainState:
    """Put a checkpoint's weights, optimizer and schedule state and RNG states back; returns its training state."""
    load_model_state(model, checkpoint["model"], source="checkpoints/last.pt")
    optimizer.load_state_dict(checkpoint["optimizer"])  # its lr is the one for the next step
    state = TrainState.from_checkpoint(checkpoint)
    if "scheduler" in checkpoint:
        scheduler.load_state_dict(checkpoint["scheduler"])
    else:  # written before schedules existed: the step counter is the schedule's position
        scheduler.last_epoch = state.step
    set_rng_state(checkpoint["rng"])
    return state


def train_epoch(session: Session, state: TrainState, epoch: int, stop: StopSignal) -> tuple[dict, float, dict]:
    """One pass over the training split (from a mid-epoch checkpoint's batch on a resume).

    Returns the epoch's per-image mean loss terms, its images per second, and the KL weight and
    learning rate of its last step (as TensorBoard tags).
    """
    ddp = session.ddp
    session.model.train()
    first_batch, epoch_start = state.start_epoch(session.device), time.perf_counter()
    batches = list(epoch_batches(len(session.train_images), session.batch_size, seed=session.seed, epoch=epoch))
    # a bar on a terminal, else a log line every 15 s (console and train.log); rank 0 only under torchrun
    progress = show_progress(
        batches[first_batch:], desc=f"epoch {epoch}/{session.epochs}", unit="batch", enabled=ddp.is_main
    )
    kl_warmup_steps = round(session.kl_warmup_epochs * len(batches))
    kl_weight, lr = session.kl_weight, session.optimizer.param_groups[0]["lr"]
    for batch_number, index in enumerate(progress, start=first_batch + 1):
        state.batch_in_epoch = batch_number
        kl_scale = kl_warmup_factor(state.step, warmup_steps=kl_warmup_steps)
        kl_weight = session.kl_weight * kl_scale  # what this step weighs the KL by (logged)
        lr = session.optimizer.param_groups[0]["lr"]  # what this step uses
        if not train_step(session, state, index, kl_scale=kl_scale, epoch=epoch):
            continue  # a skipped non-finite batch
        if state.step % session.log_every == 0:
            progress.set_postfix(loss=f"{float(state.epoch_sums[0]) / state.epoch_seen:.4f}")
        save_or_stop(session, state, stop, last_batch=batch_number == len(batches), progress=progress)
    train_seconds = time.perf_counter() - epoch_start
    sums = ddp.sum(state.epoch_sums)
    seen = int(ddp.sum(torch.tensor([state.epoch_seen], device=session.device)).item())
    if seen == 0:
        raise TrainingDiverged(f"every batch of epoch {epoch} was skipped as non-finite")
    state.end_epoch()
    return (
        {name: float(value) / seen for name, value in zip(session.term_names, sums.tolist(), strict=True)},
        seen / train_seconds,
        {"train/kl_weight": kl_weight, "train/lr": lr},
    )


def train_step(session: Session, state: TrainState, index: torch.Tensor, *, kl_scale: float, epoch: int) -> bool:
    """One optimizer step on the batch `index`; False when on_nan=skip skipped it as non-finite."""
    ddp, runtime = session.ddp, session.runtime
    binarize_dynamic = session.binarize == "dynamic"
    dequantize = likelihood_of(session.model).dequantize
    x = batch_input(  # (B, C, H, W)
        session.train_images, index, runtime=runtime, binarize_dynamic=binarize_dynamic, dequantize=dequantize
    )
    # The noise is drawn for the whole global batch, the same on every rank, then sliced: every
    # layer's eps side by side, K per image when the objective takes several.
    samples = (session.objective.samples,) if session.objective.samples > 1 else ()
    eps = torch.randn(x.shape[0], *samples, sum(session.model.latent_dims)).to(session.device)  # (B, L) or (B, K, L)
    global_size, x, eps = x.shape[0], ddp.shard(x), ddp.shard(eps)
    eps = eps.transpose(0, 1) if samples else eps  # (K, B, L)
    terms, grad_norm = forward_backward(
        session.forward,
        session.optimizer,
        x,
        runtime=runtime,
        objective=session.objective,
        eps=eps,
        loss_scale=ddp.loss_scale(global_size, x.shape[0]),
        context=step_context(session, state, kl_scale),
    )
    if session.on_nan == "skip" and not is_finite(terms, grad_norm):
        state.skipped_steps += 1
        log.warning(
            "skipped a non-finite batch at epoch %d, step %d (%d skipped so far)",
            epoch,
            state.step + 1,
            state.skipped_steps,
        )
        return False
    # On CPU the check is free; on GPU it waits for the device, so only every log_every steps.
    if runtime.device == "cpu" or (state.step + 1) % session.log_every == 0:
        try:
            check_finite(terms, epoch=epoch, step=state.step + 1, grad_norm=grad_norm)
        except TrainingDiverged as error:  # name the checkpoint to go back to only if there is one
            last = session.run_dir / "checkpoints" / "last.pt"
            kept = (
                f"{last} holds the last good state (resume from it with other settings)"
                if last.is_file()
                else "no checkpoint was saved before it, so there is nothing to resume"
            )
            raise TrainingDiverged(f"{error} {kept}.") from None
    session.optimizer.step()
    session.scheduler.step()
    state.step += 1
    state.epoch_seen += x.shape[0]
    state.epoch_sums += torch.stack([t.detach() for t in terms.scalars()]) * x.shape[0]
    if session.on_step is not None:
        session.on_step(session, state, terms)
    if state.step % session.log_every == 0:
        session.writer.add_scalar(f"{STEP_GROUP}/loss", terms.loss.item(), state.step)
        session.writer.add_scalar(f"{STEP_GROUP}/grad_norm", grad_norm.item(), state.step)
        session.writer.add_scalar(f"{STEP_GROUP}/lr", session.scheduler.get_last_lr()[0], state.step)
        sigma = likelihood_of(session.model).sigma()
        if sigma is not None:
            session.writer.add_scalar(f"{STEP_GROUP}/decoder_sigma", sigma, state.step)
    return True


def save_or_stop(session: Session, state: TrainState, stop: StopSignal, *, last_batch: bool, progress) -> None:
    """Write a mid-epoch last.pt every checkpoint_every_steps steps, and on SIGINT / SIGTERM, then stop."""
    every = session.checkpoint_every_steps
    stopping = session.ddp.any(stop.received is not None, session.device)  # every rank stops at the same step
    if ((every and state.step % every == 0) or stopping) and not last_batch and session.ddp.is_main:
        session.save(state)
    if stopping:
        progress.close()
        session.writer.close()
        raise Interrupted(
            f"stopped by {signal.Signals(stop.received or signal.SIGTERM).name} at epoch {state.epoch + 1}, "
            f"step {state.step}; checkpoints/last.pt is saved. Resume with: {resume_hint(session.run_dir)}"
        )


def resume_hint(run_dir: Path) -> str:
    """The command that resumes a run in a fresh shell: this interpreter's own path (no venv to activate), or make."""
    import sys

    return f'{sys.executable} -m vae.train resume={run_dir}  (or: make train ARGS="resume={run_dir}")'


def step_context(session: Session, state: TrainState, kl_scale: float) -> ObjectiveContext:
    """What the objective reads at a training step besides the batch (vae.objectives.ObjectiveContext)."""
    return ObjectiveContext(
        step=state.step,
        kl_scale=kl_scale,
        num_train=session.train_images.shape[0],
        likelihood=likelihood_of(session.model),
        prior=getattr(session.model, "prior", None),
    )


def validate_epoch(session: Session) -> dict:
    """The validation split's loss terms in the run's objective (fp32, fixed noise), mean sigma and beta_effective."""
    config = session.config
    terms = dataset_loss_terms(
        session.model,
        session.splits.val.images,
        objective=session.objective,
        batch_size=config["eval_batch_size"],
        channels_last=session.runtime.channels_last,
        num_train=session.train_images.shape[0],
    )
    return {**terms, "beta_effective": session.beta}


def save_checkpoints(session: Session, state: TrainState, improved: bool) -> None:
    """last.pt, and best.pt when the validation loss improved; before logging, so a kill in between
    loses a few scalars and never duplicates them."""
    session.save(state)
    if improved:
        session.save(state, "best")
    every = session.config.get("snapshot_every_epochs", 0)
    if every and state.epoch % every == 0:  # weights only: for learning curves evaluated afterwards
        snapshot = {"model": session.model.state_dict(), "config": session.config, "epoch": state.epoch}
        save_checkpoint(session.run_dir / "checkpoints" / f"epoch_{state.epoch:04d}.pt", snapshot)


def log_epoch_end(
    session: Session, state: TrainState, train_metrics: dict, val_metrics: dict, *, schedule: dict, started: float
) -> dict:
    """The epoch's scalars and images to TensorBoard (and images/), metrics.json, and a line to the console."""
    config, epoch, images_per_second = session.config, state.epoch, state.history[-1]["images_per_second"]
    extra = {"train/images_per_second": images_per_second, **schedule}
    for name in session.term_names[len(TERM_NAMES) :]:  # each layer's KL when several, the objective's own terms
        extra.update({f"train/{name}": train_metrics[name], f"val/{name}": val_metrics[name]})
    if state.skipped_steps:
        extra["train/skipped_steps"] = state.skipped_steps
    for key, value in state.history[-1].items():  # quality_every_epochs: val/fid_<space>, ... on its epochs
        if key.startswith(("val_fid_", "val_precision_", "val_recall_")):
            extra[f"val/{key[len('val_') :]}"] = value
    if "decoder_sigma" in val_metrics:  # the Gaussian decoder's sigma (vae.likelihoods), as validation used it
        extra["val/decoder_sigma"] = val_metrics["decoder_sigma"]
    log_epoch(session.writer, epoch, train=train_metrics, val=val_metrics, extra=extra)
    write_epoch_images(
        session.writer,
        session.model,
        session.splits,
        step=epoch,
        num_samples=config["num_image_samples"],
        grid_size=config["grid_size"],
        seed=session.seed,
        run_dir=session.run_dir,
        channels_last=session.runtime.channels_last,
    )
    session.writer.flush()
    metrics = {
        "epoch": epoch,
        "train": train_metrics,
        "val": val_metrics,
        "wall_seconds": time.perf_counter() - started,
        "images_per_second": images_per_second,
        "best_val_loss": state.best_val_loss,
        "skipped_steps": state.skipped_steps,
        # the objective's own terms (in train and val above): vae.report makes a column of each
        "objective_terms": list(session.objective.extra_names),
        # how kl and kl_nats were computed: "closed form" (N(0, I)) or "one sample" (a prior with no closed form)
        "kl_estimator": getattr(session.model.prior, "kl_estimator", "closed form"),
        "history": state.history,
    }
    (session.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info(
        "epoch %d/%d  loss %.4f  val_loss %.4f  val -ELBO %.2f nats  %.0f img/s  %.1f s",
        *(epoch, session.epochs, train_metrics["loss"], val_metrics["loss"], val_metrics["neg_elbo_nats"]),
        *(images_per_second, state.history[-1]["epoch_seconds"]),
    )
    return metrics

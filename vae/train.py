"""`python -m vae.train key=value ...`: train a VAE, logging to TensorBoard in a Hydra run directory.

The loop is plain PyTorch (`train`); `main` is the Hydra entry point around it.
`python -m vae.train resume=<run dir> [epochs=N]` continues a run in its own directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image
from tqdm import tqdm

from vae import distributed
from vae.build import build_data, build_model, build_optimizer
from vae.checkpoint import CheckpointError, load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state
from vae.config import ConfigError, validate
from vae.data import DataNotFoundError, epoch_batches, to_model_input
from vae.evaluate import autocast_context, dataset_loss_terms
from vae.latent import decoded_grid
from vae.losses import beta_effective, kl_warmup_factor, vae_loss
from vae.runs import config_dir, write_run_json
from vae.runtime import Runtime, apply_runtime, physical_cores, resolve_runtime
from vae.summaries import flat_hparams, image_sheet, reconstruction_sheet, write_hparams_entry

log = logging.getLogger("vae.train")
TRAIN_TERMS = ("loss", "gen_loss", "kl", "neg_elbo_nats", "rec_nats", "kl_nats")
# Keys a resumed run may change: where and how fast it runs, and how long. Anything else
# (the model, the loss, the data) would make the continued run a different experiment.
RESUMABLE_OVERRIDES = {
    "resume",
    "epochs",
    "device",
    "threads",
    "log_every",
    "checkpoint_every_steps",
    "data.root",
    "on_nan",
}


class NoWriter:
    """Stands in for SummaryWriter on ranks other than 0, which write nothing."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


class TrainingDiverged(RuntimeError):
    """A loss term or a gradient became NaN or infinite."""


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM: the run saved last.pt and stopped."""


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


def write_images(
    writer: SummaryWriter, model, splits, *, step: int, cfg: dict, run_dir: Path, channels_last: bool
) -> None:
    """Reconstructions beside their inputs, prior samples and (latent_dim 2) the decoded grid, to TensorBoard and images/."""
    model.eval()
    device = next(model.parameters()).device
    n = cfg["num_image_samples"]
    with torch.no_grad():
        x = to_model_input(splits.val.images[: min(n, 32)]).to(device)  # (B, C, H, W)
        mu, _ = model.encode(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        reconstructions = torch.sigmoid(model.decode(mu).float())
        samples = model.sample(n, generator=torch.Generator().manual_seed(cfg["seed"]))
    sheets = {
        "val/reconstructions": reconstruction_sheet(x.cpu(), reconstructions.cpu()),
        "samples/prior": image_sheet(samples.cpu()),
    }
    if model.latent_dim == 2:
        sheets["latent/grid"] = decoded_grid(model, grid_size=cfg["grid_size"])
    images_dir = run_dir / "images"
    images_dir.mkdir(exist_ok=True)
    for tag, image in sheets.items():
        writer.add_image(tag, image, global_step=step)
        save_image(image, images_dir / f"{tag.replace('/', '_')}.png")
    model.train()


def check_finite(terms, *, epoch: int, step: int, grad_norm: torch.Tensor | None = None) -> None:
    """Stop at once, naming the term, when the loss or the gradient stops being a number."""
    loss_ok = bool(torch.isfinite(terms.loss))
    if loss_ok and (grad_norm is None or bool(torch.isfinite(grad_norm))):
        return
    if loss_ok:
        what, bad = f"gradient norm became {float(grad_norm)}", "gradients"
    else:
        what = f"loss became {float(terms.loss)}"
        bad = ", ".join(name for name in ("gen_loss", "kl") if not bool(torch.isfinite(getattr(terms, name)))) or "loss"
    raise TrainingDiverged(
        f"{what} at epoch {epoch}, step {step} (bad term: {bad}); checkpoints/last.pt holds the last good state. "
        "Lower optim.lr or kl_weight, use precision=fp32, or on_nan=skip."
    )


def batch_input(
    images: torch.Tensor, index: torch.Tensor, *, runtime: Runtime, binarize_dynamic: bool = False
) -> torch.Tensor:
    """The model's input for one batch: uint8 rows picked by index on the device, as floats in [0, 1]."""
    x = to_model_input(images[index.to(images.device, non_blocking=True)], binarize_dynamic=binarize_dynamic)
    return x.contiguous(memory_format=torch.channels_last) if runtime.channels_last else x  # (B, C, H, W)


def forward_backward(
    forward, optimizer: torch.optim.Optimizer, x: torch.Tensor, *, runtime: Runtime, kl_weight: float, gen_loss: str,
    reduction: str, kl_floor: float = 0.0, eps: torch.Tensor | None = None, loss_scale: float = 1.0,
):  # fmt: skip
    """One step's forward and backward (autocast as the runtime says); returns the loss terms and the gradient norm.

    `eps` is the reparameterization noise (drawn inside when None); `loss_scale` multiplies the
    loss before backward (DDP shards of unequal size).
    """
    with autocast_context(runtime.device, runtime.autocast_dtype):
        output = forward(x, eps)
    terms = vae_loss(
        output.logits,
        x,
        output.mu,
        output.log_var,
        kl_weight=kl_weight,
        gen_loss=gen_loss,
        reduction=reduction,
        kl_floor=kl_floor,
    )
    optimizer.zero_grad(set_to_none=True)
    (terms.loss * loss_scale if loss_scale != 1.0 else terms.loss).backward()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return terms, torch.nn.utils.get_total_norm(grads)


def train(cfg: DictConfig, run_dir: Path, *, resume_from: dict | None = None) -> dict:
    """Train as `cfg` says, writing the run directory of DESIGN.md section 3; returns the final metrics.

    `resume_from` is a checkpoint of this run: training goes on from its state, bit for bit.
    """
    validate(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(run_dir)
    ddp = distributed.from_environment()  # torchrun's rank and world size; one process otherwise
    if ddp.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if resume_from is not None:  # the settings resolved when the run started, unless the command line moved it
        saved = resume_from["runtime"]
        runtime = Runtime(**{**saved, "device": saved["device"] if config["device"] == "auto" else config["device"]})
        if config["threads"]:
            runtime.threads = config["threads"]
    else:
        runtime = resolve_runtime(
            device=config["device"], threads=config["threads"], precision=config["precision"],
            compile=config["compile"], channels_last=config["channels_last"], deterministic=config["deterministic"],
        )  # fmt: skip
    if ddp.enabled and config["threads"] == 0 and runtime.device == "cpu":  # ranks on one machine share its cores
        runtime.threads = max(1, runtime.threads // int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world_size)))
    if ddp.enabled and runtime.device == "cuda":
        runtime.device = f"cuda:{ddp.local_rank}"
        torch.cuda.set_device(runtime.device)
    apply_runtime(runtime, seed=config["seed"])  # the same seed on every rank: the same noise for the global batch
    distributed.init_process_group(ddp, runtime.device)
    device = torch.device(runtime.device)
    splits = build_data(config)
    expected_shape = tuple(config["data"]["image_shape"])
    if tuple(splits.train.images.shape[1:]) != expected_shape:
        raise ConfigError(
            f"data.image_shape is {list(expected_shape)} but the images are {list(splits.train.images.shape[1:])}"
        )

    model = build_model(config).to(device)
    optimizer = build_optimizer(model.parameters(), config)
    step, completed_epochs, best_val_loss, history = 0, 0, math.inf, []
    if resume_from is not None:
        versions = getattr(resume_from["model"], "_metadata", {})
        if (
            any(versions.get(part, {}).get("version") == 1 for part in ("encoder", "decoder"))
            and config["model"]["name"] == "conv"
        ):
            raise CheckpointError(
                "checkpoints/last.pt was written by vae before the conv model's dense layers took the (H, W, C) order; "
                "its optimizer state cannot be carried over: evaluate/explore/serve still read it, but resuming needs "
                "a new run"
            )
        load_model_state(model, resume_from["model"], source="checkpoints/last.pt")
        optimizer.load_state_dict(resume_from["optimizer"])
        step, completed_epochs = resume_from["step"], resume_from["epoch"]
        best_val_loss, history = resume_from["best_val_loss"], list(resume_from.get("history", []))
        set_rng_state(resume_from["rng"])
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if ddp.enabled:
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(forward) if runtime.compile else forward
    if ddp.is_main:
        write_run_json(run_dir, runtime=runtime.as_dict(), resumed_from_step=step if resume_from else None)
    log.info("run directory %s | %s", run_dir, runtime.as_dict())

    beta = beta_effective(
        kl_weight=config["kl_weight"],
        reduction=config["reduction"],
        num_pixels=math.prod(expected_shape),
        latent_dim=config["latent_dim"],
    )
    loss_options = dict(kl_weight=config["kl_weight"], gen_loss=config["gen_loss"], reduction=config["reduction"])
    warmup_steps = round(config["kl_warmup_epochs"] * math.ceil(len(splits.train) / config["batch_size"]))
    train_images = splits.train.images.to(device)  # the whole split lives on the device
    dynamic_binarize = config["data"]["binarize"] == "dynamic"
    # purge_step: TensorBoard drops what an interrupted attempt logged after the checkpoint, so curves never double.
    writer = (
        SummaryWriter(log_dir=str(run_dir), purge_step=step + 1 if resume_from else None) if ddp.is_main else NoWriter()
    )
    if resume_from is None and ddp.is_main:
        write_hparams_entry(writer, {**flat_hparams(config), "beta_effective": beta})

    def checkpoint_state(
        epochs_done: int, batch_in_epoch: int, sums: torch.Tensor | None = None, seen: int = 0
    ) -> dict:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epochs_done, "step": step,
            "batch_in_epoch": batch_in_epoch, "epoch_sums": (sums if sums is not None else torch.zeros(len(TRAIN_TERMS))).cpu(),
            "epoch_seen": seen, "config": config, "rng": rng_state(), "runtime": runtime.as_dict(),
            "best_val_loss": best_val_loss, "history": history, "skipped_steps": skipped,
        }  # fmt: skip

    started, metrics, skipped = time.perf_counter(), {}, int(resume_from.get("skipped_steps", 0)) if resume_from else 0
    if completed_epochs >= config["epochs"]:
        log.info(
            "the run has finished its %d epochs; pass epochs=N (more than %d) to train further",
            config["epochs"],
            completed_epochs,
        )
        return json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    with StopSignal() as stop:
        for epoch in range(completed_epochs + 1, config["epochs"] + 1):
            model.train()
            sums = torch.zeros(len(TRAIN_TERMS), device=device)  # per-image sums, synced once per log interval
            seen, epoch_start, first_batch = 0, time.perf_counter(), 0
            if resume_from is not None and epoch == completed_epochs + 1 and resume_from.get("batch_in_epoch", 0):
                first_batch, seen = resume_from["batch_in_epoch"], resume_from["epoch_seen"]
                sums += resume_from["epoch_sums"].to(device)
            batches = list(epoch_batches(len(train_images), config["batch_size"], seed=config["seed"], epoch=epoch))
            progress = tqdm(
                batches[first_batch:],
                desc=f"epoch {epoch}/{config['epochs']}",
                leave=False,
                dynamic_ncols=True,
                disable=None,
            )
            for batch_number, index in enumerate(progress, start=first_batch + 1):
                x = batch_input(train_images, index, runtime=runtime, binarize_dynamic=dynamic_binarize)  # (B, C, H, W)
                # The noise is drawn for the whole global batch, the same on every rank, then sliced.
                eps = torch.randn(x.shape[0], config["latent_dim"]).to(device)  # (B, L)
                global_size, x, eps = x.shape[0], ddp.shard(x), ddp.shard(eps)
                kl_weight_now = config["kl_weight"] * kl_warmup_factor(step, warmup_steps=warmup_steps)
                terms, grad_norm = forward_backward(
                    forward, optimizer, x, runtime=runtime, **{**loss_options, "kl_weight": kl_weight_now},
                    kl_floor=config["free_bits"], eps=eps, loss_scale=ddp.loss_scale(global_size, x.shape[0]),
                )  # fmt: skip
                # On CPU the check is free; on GPU it waits for the device, so only every log_every steps.
                if config["on_nan"] == "skip" and not bool(torch.isfinite(terms.loss) & torch.isfinite(grad_norm)):
                    skipped += 1
                    log.warning(
                        "skipped a non-finite batch at epoch %d, step %d (%d skipped so far)", epoch, step + 1, skipped
                    )
                    continue
                if runtime.device == "cpu" or (step + 1) % config["log_every"] == 0:
                    check_finite(terms, epoch=epoch, step=step + 1, grad_norm=grad_norm)
                optimizer.step()
                step += 1
                seen += x.shape[0]
                sums += torch.stack([t.detach() for t in terms]) * x.shape[0]
                if step % config["log_every"] == 0:
                    writer.add_scalar("train_step/loss", terms.loss.item(), step)
                    writer.add_scalar("train_step/grad_norm", grad_norm.item(), step)
                    progress.set_postfix(loss=f"{float(sums[0]) / seen:.4f}")
                at_save_point = config["checkpoint_every_steps"] and step % config["checkpoint_every_steps"] == 0
                stopping = ddp.any(stop.received is not None, device)  # every rank stops at the same step
                if (at_save_point or stopping) and batch_number < len(batches) and ddp.is_main:
                    save_checkpoint(
                        run_dir / "checkpoints" / "last.pt", checkpoint_state(epoch - 1, batch_number, sums, seen)
                    )
                if stopping:
                    progress.close()
                    writer.close()
                    raise Interrupted(
                        f"stopped by {signal.Signals(stop.received or signal.SIGTERM).name} at epoch {epoch}, step {step}; "
                        f"checkpoints/last.pt is saved. Resume with: python -m vae.train resume={run_dir}"
                    )
            train_seconds = time.perf_counter() - epoch_start
            ddp.sum(sums)
            seen = int(ddp.sum(torch.tensor([seen], device=device)).item())
            if seen == 0:
                raise TrainingDiverged(f"every batch of epoch {epoch} was skipped as non-finite")

            train_metrics = {name: float(value) / seen for name, value in zip(TRAIN_TERMS, sums.tolist(), strict=True)}
            if not ddp.is_main:  # rank 0 validates and writes; the others wait for it
                ddp.barrier()
                continue
            val_metrics = dataset_loss_terms(
                model,
                splits.val.images,
                batch_size=config["eval_batch_size"],
                channels_last=runtime.channels_last,
                **loss_options,
            )
            val_metrics["beta_effective"] = beta
            improved = val_metrics["loss"] < best_val_loss
            best_val_loss = min(best_val_loss, val_metrics["loss"])
            history.append({
                "epoch": epoch, "train_loss": train_metrics["loss"], "val_loss": val_metrics["loss"],
                "val_neg_elbo_nats": val_metrics["neg_elbo_nats"], "images_per_second": seen / train_seconds,
                "epoch_seconds": time.perf_counter() - epoch_start,
            })  # fmt: skip
            # Checkpoint before logging: a kill in between loses a few scalars, never duplicates them.
            save_checkpoint(run_dir / "checkpoints" / "last.pt", checkpoint_state(epoch, 0))
            if improved:
                save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint_state(epoch, 0))

            for name in ("loss", "gen_loss", "kl", "neg_elbo_nats"):
                writer.add_scalar(f"train/{name}", train_metrics[name], epoch)
            for name in ("loss", "gen_loss", "kl", "neg_elbo_nats", "kl_nats", "rec_nats", "mean_sigma"):
                writer.add_scalar(f"val/{name}", val_metrics[name], epoch)
                if name not in ("mean_sigma",):
                    writer.add_scalar(f"hparams/val_{name}", val_metrics[name], epoch)
            writer.add_scalar("hparams/train_loss", train_metrics["loss"], epoch)
            writer.add_scalar("train/images_per_second", seen / train_seconds, epoch)
            writer.add_scalar("train/kl_weight", kl_weight_now, epoch)
            if skipped:
                writer.add_scalar("train/skipped_steps", skipped, epoch)
            write_images(
                writer, model, splits, step=epoch, cfg=config, run_dir=run_dir, channels_last=runtime.channels_last
            )
            metrics = {
                "epoch": epoch, "train": train_metrics, "val": val_metrics, "wall_seconds": time.perf_counter() - started,
                "images_per_second": seen / train_seconds, "best_val_loss": best_val_loss, "skipped_steps": skipped,
                "history": history,
            }  # fmt: skip
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
            writer.flush()
            log.info(
                "epoch %d/%d  loss %.4f  val_loss %.4f  val -ELBO %.2f nats  %.0f img/s  %.1f s", epoch, config["epochs"],
                train_metrics["loss"], val_metrics["loss"], val_metrics["neg_elbo_nats"], seen / train_seconds,
                time.perf_counter() - epoch_start,
            )  # fmt: skip
            ddp.barrier()
    writer.close()
    distributed.destroy_process_group(ddp)
    return metrics


def resume_config(run_dir: Path, composed: DictConfig, overrides: list[str]) -> tuple[DictConfig, dict]:
    """The run's own config and last checkpoint, with the few overrides a resume may make.

    `composed` is what Hydra built from the command line; an override that changes anything
    else (model, loss, data) is refused by name.
    """
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    original = OmegaConf.create(checkpoint["config"])
    keys = [override.split("=", 1)[0].lstrip("+~") for override in overrides]
    changed = [
        key for key in keys
        if key not in RESUMABLE_OVERRIDES and OmegaConf.select(composed, key) != OmegaConf.select(original, key)
    ]  # fmt: skip
    if changed:
        raise ConfigError(
            f"resume continues a run with its own config; these overrides would change it: {', '.join(changed)} "
            f"(a resumed run accepts only {', '.join(sorted(RESUMABLE_OVERRIDES - {'resume'}))})"
        )
    for key in keys:
        if key in RESUMABLE_OVERRIDES and key != "resume":
            OmegaConf.update(original, key, OmegaConf.select(composed, key), merge=False)
    original.resume = str(run_dir)
    return original, checkpoint


USER_ERRORS = (ConfigError, DataNotFoundError, CheckpointError, TrainingDiverged, Interrupted)


def threads_per_parallel_job(n_jobs: int | None) -> int:
    """CPU threads for each of `n_jobs` jobs run at once (joblib's -1 or None: one job per core)."""
    cores = physical_cores()
    jobs = cores if n_jobs is None or n_jobs < 1 else n_jobs
    return max(1, cores // jobs)


def _resume_dir_from_argv(argv: list[str]) -> Path | None:
    for word in argv:
        if word.startswith("resume=") and word.split("=", 1)[1] not in ("", "null"):
            return Path(word.split("=", 1)[1])
    return None


def _hydra_main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    resume_dir = _resume_dir_from_argv(sys.argv[1:])
    if resume_dir is not None and not (resume_dir / "checkpoints" / "last.pt").is_file():
        sys.exit(f"error: resume={resume_dir}: no checkpoints/last.pt there to resume from")
    if distributed.from_environment().rank != 0:
        # Under torchrun only rank 0 writes into the run directory; the others log to a scratch folder.
        import tempfile

        sys.argv = [word for word in sys.argv if not word.startswith("hydra.run.dir=")]
        sys.argv += [f"hydra.run.dir={tempfile.mkdtemp(prefix='vae-rank-')}", "hydra.output_subdir=null"]
    elif resume_dir is not None:
        # Continue in the run's own directory and keep its original .hydra/ config.
        sys.argv += [f"hydra.run.dir={resume_dir}", "hydra.output_subdir=null"]

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    def main(cfg: DictConfig) -> float | None:
        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        launcher = hydra_cfg.launcher
        if cfg.threads == 0 and "joblib" in str(launcher.get("_target_", "")):
            # Jobs running side by side share the cores instead of each taking all of them.
            cfg.threads = threads_per_parallel_job(launcher.get("n_jobs"))
        try:
            if cfg.resume:
                overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.")]
                cfg, checkpoint = resume_config(Path(cfg.resume), cfg, overrides)
                metrics = train(cfg, run_dir, resume_from=checkpoint)
            else:
                metrics = train(cfg, run_dir)
        except USER_ERRORS as error:
            (run_dir / "error.txt").write_text(f"{type(error).__name__}: {error}\n")
            if hydra_cfg.mode == RunMode.MULTIRUN:
                raise  # Hydra records the failed job and goes on with the others
            log.error("%s", error)
            sys.exit(130 if isinstance(error, Interrupted) else 2)
        return metrics.get("val", {}).get("neg_elbo_nats")

    main()


if __name__ == "__main__":
    _hydra_main()

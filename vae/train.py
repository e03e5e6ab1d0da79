"""`python -m vae.train key=value ...`: train a VAE, logging to TensorBoard in a Hydra run directory.

The loop is plain PyTorch (`train`); `main` is the Hydra entry point around it.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image
from tqdm import tqdm

from vae.build import build_data, build_model, build_optimizer
from vae.checkpoint import CheckpointError, rng_state, save_checkpoint
from vae.config import ConfigError, validate
from vae.data import DataNotFoundError, epoch_batches, to_model_input
from vae.evaluate import autocast_context, dataset_loss_terms, mean_sigma
from vae.latent import decoded_grid
from vae.losses import beta_effective, kl_warmup_factor, vae_loss
from vae.runs import config_dir, write_run_json
from vae.runtime import apply_runtime, resolve_runtime
from vae.summaries import flat_hparams, image_sheet, reconstruction_sheet, write_hparams_entry

log = logging.getLogger("vae.train")
TRAIN_TERMS = ("loss", "gen_loss", "kl", "neg_elbo_nats", "rec_nats", "kl_nats")


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite."""


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


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train as `cfg` says, writing the run directory of DESIGN.md section 3; returns the final metrics."""
    validate(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    runtime = resolve_runtime(
        device=config["device"],
        threads=config["threads"],
        precision=config["precision"],
        compile=config["compile"],
        channels_last=config["channels_last"],
        deterministic=config["deterministic"],
    )
    apply_runtime(runtime, seed=config["seed"])
    device = torch.device(runtime.device)
    splits = build_data(config)
    expected_shape = tuple(config["data"]["image_shape"])
    if tuple(splits.train.images.shape[1:]) != expected_shape:
        raise ConfigError(
            f"data.image_shape is {list(expected_shape)} but the images are {list(splits.train.images.shape[1:])}"
        )

    model = build_model(config).to(device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), config)
    forward = torch.compile(model) if runtime.compile else model
    write_run_json(run_dir, runtime=runtime.as_dict())
    log.info("run directory %s | %s", run_dir, runtime.as_dict())

    num_pixels = math.prod(expected_shape)
    beta = beta_effective(
        kl_weight=config["kl_weight"],
        reduction=config["reduction"],
        num_pixels=num_pixels,
        latent_dim=config["latent_dim"],
    )
    loss_options = dict(kl_weight=config["kl_weight"], gen_loss=config["gen_loss"], reduction=config["reduction"])
    steps_per_epoch = math.ceil(len(splits.train) / config["batch_size"])
    warmup_steps = round(config["kl_warmup_epochs"] * steps_per_epoch)
    train_images = splits.train.images.to(device)  # the whole split lives on the device
    dynamic_binarize = config["data"]["binarize"] == "dynamic"
    writer = SummaryWriter(log_dir=str(run_dir))
    write_hparams_entry(writer, {**flat_hparams(config), "beta_effective": beta})

    step, best_val_loss, history = 0, math.inf, []
    started = time.perf_counter()
    metrics: dict = {}
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        sums = torch.zeros(len(TRAIN_TERMS), device=device)  # per-image sums, synced once per log interval
        seen, epoch_start = 0, time.perf_counter()
        batches = list(epoch_batches(len(train_images), config["batch_size"], seed=config["seed"], epoch=epoch))
        progress = tqdm(
            batches, desc=f"epoch {epoch}/{config['epochs']}", leave=False, dynamic_ncols=True, disable=None
        )
        for index in progress:
            x = to_model_input(train_images[index.to(device)], binarize_dynamic=dynamic_binarize)  # (B, C, H, W)
            if runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_context(runtime.device, runtime.autocast_dtype):
                output = forward(x)
            kl_weight_now = config["kl_weight"] * kl_warmup_factor(step, warmup_steps=warmup_steps)
            terms = vae_loss(
                output.logits,
                x,
                output.mu,
                output.log_var,
                **{**loss_options, "kl_weight": kl_weight_now},
                kl_floor=config["free_bits"],
            )
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            optimizer.step()
            step += 1
            seen += x.shape[0]
            sums += torch.stack([t.detach() for t in terms]) * x.shape[0]
            # On CPU the check is free; on GPU it waits for the device, so only every log_every steps.
            if runtime.device == "cpu" or step % config["log_every"] == 0:
                check_finite(terms, epoch=epoch, step=step)
            if step % config["log_every"] == 0:
                writer.add_scalar("train_step/loss", terms.loss.item(), step)
                progress.set_postfix(loss=f"{float(sums[0]) / seen:.4f}")
        train_seconds = time.perf_counter() - epoch_start

        train_metrics = {name: float(value) / seen for name, value in zip(TRAIN_TERMS, sums.tolist())}
        val_metrics = dataset_loss_terms(
            model,
            splits.val.images,
            batch_size=config["eval_batch_size"],
            channels_last=runtime.channels_last,
            **loss_options,
        )
        val_metrics["beta_effective"] = beta
        val_metrics["mean_sigma"] = mean_sigma(model, splits.val.images, batch_size=config["eval_batch_size"])
        for name in ("loss", "gen_loss", "kl", "neg_elbo_nats"):
            writer.add_scalar(f"train/{name}", train_metrics[name], epoch)
        for name in ("loss", "gen_loss", "kl", "neg_elbo_nats", "kl_nats", "rec_nats", "mean_sigma"):
            writer.add_scalar(f"val/{name}", val_metrics[name], epoch)
        writer.add_scalar("train/images_per_second", seen / train_seconds, epoch)
        writer.add_scalar("train/kl_weight", kl_weight_now, epoch)
        write_images(
            writer, model, splits, step=epoch, cfg=config, run_dir=run_dir, channels_last=runtime.channels_last
        )

        checkpoint = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "step": step,
            "config": config,
            "rng": rng_state(),
            "runtime": runtime.as_dict(),
            "best_val_loss": min(best_val_loss, val_metrics["loss"]),
        }
        save_checkpoint(run_dir / "checkpoints" / "last.pt", checkpoint)
        if val_metrics["loss"] < best_val_loss:
            best_val_loss = val_metrics["loss"]
            save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint)

        history.append(
            {
                "epoch": epoch,
                "train_loss": train_metrics["loss"],
                "val_loss": val_metrics["loss"],
                "val_neg_elbo_nats": val_metrics["neg_elbo_nats"],
                "images_per_second": seen / train_seconds,
                "epoch_seconds": time.perf_counter() - epoch_start,
            }
        )
        metrics = {
            "epoch": epoch,
            "train": train_metrics,
            "val": val_metrics,
            "wall_seconds": time.perf_counter() - started,
            "images_per_second": seen / train_seconds,
            "best_val_loss": best_val_loss,
            "history": history,
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for name in ("loss", "neg_elbo_nats", "gen_loss", "kl", "kl_nats", "rec_nats"):
            writer.add_scalar(f"hparams/val_{name}", val_metrics[name], epoch)
        writer.add_scalar("hparams/train_loss", train_metrics["loss"], epoch)
        writer.flush()
        log.info(
            "epoch %d/%d  loss %.4f  val_loss %.4f  val -ELBO %.2f nats  %.0f img/s  %.1f s",
            epoch,
            config["epochs"],
            train_metrics["loss"],
            val_metrics["loss"],
            val_metrics["neg_elbo_nats"],
            seen / train_seconds,
            time.perf_counter() - epoch_start,
        )
    writer.close()
    return metrics


def check_finite(terms, *, epoch: int, step: int) -> None:
    """Stop at once, naming the term, when the loss stops being a number."""
    if bool(torch.isfinite(terms.loss)):
        return
    bad = [name for name in ("gen_loss", "kl") if not bool(torch.isfinite(getattr(terms, name)))]
    raise TrainingDiverged(
        f"loss became {float(terms.loss)} at epoch {epoch}, step {step} (bad term: {', '.join(bad) or 'loss'}); "
        "the last checkpoint is the last good state. Lower optim.lr or kl_weight, or use precision=fp32."
    )


USER_ERRORS = (ConfigError, DataNotFoundError, CheckpointError, TrainingDiverged)


def _hydra_main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    def main(cfg: DictConfig) -> float:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            metrics = train(cfg, run_dir)
        except USER_ERRORS as error:
            (run_dir / "error.txt").write_text(f"{type(error).__name__}: {error}\n")
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                raise  # Hydra records the failed job and goes on with the others
            log.error("%s", error)
            sys.exit(2)
        return metrics["val"]["neg_elbo_nats"]

    main()


if __name__ == "__main__":
    _hydra_main()

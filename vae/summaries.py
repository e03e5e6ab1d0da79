"""What a run shows in TensorBoard: image sheets, and the HParams entry."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchvision.utils import make_grid

# Final metrics shown in the HParams dashboard; a prefix of their own keeps them off the val/* charts.
HPARAM_METRICS = (
    "val_loss",
    "val_neg_elbo_nats",
    "val_gen_loss",
    "val_kl",
    "val_kl_nats",
    "val_rec_nats",
    "train_loss",
)


def reconstruction_sheet(inputs: torch.Tensor, reconstructions: torch.Tensor, *, per_row: int = 8) -> torch.Tensor:
    """Rows of inputs, each followed by the row of their reconstructions: one (C, H, W) image."""
    rows = []
    for start in range(0, inputs.shape[0], per_row):
        rows += [inputs[start : start + per_row], reconstructions[start : start + per_row]]
    return make_grid(torch.cat(rows).clamp(0, 1), nrow=per_row, padding=2, pad_value=0.5)


def image_sheet(images: torch.Tensor, *, per_row: int = 8) -> torch.Tensor:
    """A grid of images: one (C, H, W) image."""
    return make_grid(images.clamp(0, 1), nrow=per_row, padding=2, pad_value=0.5)


def flat_hparams(cfg: Mapping) -> dict[str, float | int | str | bool]:
    """The settings a sweep varies, flattened to the scalar types the HParams plugin takes."""
    values = {
        "latent_dim": cfg["latent_dim"],
        "kl_weight": float(cfg["kl_weight"]),
        "gen_loss": cfg["gen_loss"],
        "reduction": cfg["reduction"],
        "epochs": cfg["epochs"],
        "batch_size": cfg["batch_size"],
        "seed": cfg["seed"],
        "data": cfg["data"]["name"],
        "binarize": cfg["data"]["binarize"],
        "model": cfg["model"]["name"],
        "optim": cfg["optim"]["name"],
        "lr": float(cfg["optim"]["lr"]),
        "kl_warmup_epochs": float(cfg.get("kl_warmup_epochs", 0)),
        "free_bits": float(cfg.get("free_bits", 0.0)),
    }
    return {key: value for key, value in values.items() if value is not None}


def write_hparams_entry(writer: SummaryWriter, hparams: Mapping[str, float | int | str | bool]) -> None:
    """Declare this run in the HParams dashboard; its `hparams/*` scalars fill the metric columns."""
    experiment, session_start, session_end = hparams_summary(
        dict(hparams), {f"hparams/{name}": 0.0 for name in HPARAM_METRICS}
    )
    file_writer = writer._get_file_writer()
    for summary in (experiment, session_start, session_end):
        file_writer.add_summary(summary)

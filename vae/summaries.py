"""What a run shows in TensorBoard: the epoch's scalars, image sheets, and the HParams entry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchvision.utils import make_grid, save_image

from vae.data import DataSplits, to_model_input
from vae.latent import decoded_grid
from vae.likelihoods import likelihood_of
from vae.metrics import HPARAMS_GROUP, IMAGES_GROUP, epoch_scalars, hparams_columns
from vae.schema import likelihood_group

# The HParams dashboard (TensorBoard 2.x) sorts the hparams by `differs` (True first), then by name,
# and ticks the first SHOWN_HPARAMS of them; the others are listed, unticked. `differs` is declared
# here for what is shown: the study's knobs, what the run's sweep varies (`swept_keys`), and, while
# fewer than five, FILL_HPARAMS (each named to sort after the knobs). Constants such as batch_size
# and binarize are still recorded and listed, unticked.
STUDY_HPARAMS = ("kl_weight", "latent_dim", "beta_effective")
FILL_HPARAMS = ("seed", "reduction", "lr", "model", "optim")
SHOWN_HPARAMS = 5
# The config key behind each hparam that is not named by its key.
HPARAM_KEYS = {
    "data": "data.name",
    "binarize": "data.binarize",
    "model": "model.name",
    "optim": "optim.name",
    "lr": "optim.lr",
}


def reconstruction_sheet(inputs: torch.Tensor, reconstructions: torch.Tensor, *, per_row: int = 8) -> torch.Tensor:
    """Rows of inputs, each followed by the row of their reconstructions: one (C, H, W) image."""
    rows = []
    for start in range(0, inputs.shape[0], per_row):
        rows += [inputs[start : start + per_row], reconstructions[start : start + per_row]]
    return make_grid(torch.cat(rows).clamp(0, 1), nrow=per_row, padding=2, pad_value=0.5)


def image_sheet(images: torch.Tensor, *, per_row: int = 8) -> torch.Tensor:
    """A grid of images: one (C, H, W) image."""
    return make_grid(images.clamp(0, 1), nrow=per_row, padding=2, pad_value=0.5)


def swept_keys(hydra_cfg: Mapping | None = None) -> list[str]:
    """The config keys the running Hydra multirun varies: its sweeper's `params` and the command line's
    sweep overrides (`kl_weight=0,1e-3`, `range(...)`, `interval(...)`), the latter read from the sweep's
    multirun.yaml, which Hydra's basic sweeper writes before the jobs start. [] outside a multirun.

    `hydra_cfg`: the `hydra` node (default: the running job's HydraConfig, when there is one).
    """
    from omegaconf import OmegaConf

    if hydra_cfg is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        hydra_cfg = HydraConfig.get()
    if str(hydra_cfg.get("mode")) not in ("MULTIRUN", "RunMode.MULTIRUN"):
        return []
    words = [f"{key}={value}" for key, value in ((hydra_cfg.get("sweeper") or {}).get("params") or {}).items()]
    multirun = Path(str(hydra_cfg["sweep"]["dir"])) / "multirun.yaml"
    if multirun.is_file():
        words += list(OmegaConf.select(OmegaConf.load(multirun), "hydra.overrides.task", default=None) or [])
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, keys = OverridesParser.create(), []
    for word in words:
        try:
            (override,) = parser.parse_overrides([str(word)])
        except OverrideParseException:  # names no sweep this Hydra can tell
            continue
        key = override.key_or_group
        if override.is_sweep_override() and not key.startswith("hydra.") and key not in keys:
            keys.append(key)
    return keys


def hparam_name(key: str) -> str:
    """The HParams name of a config key: `optim.lr` is `lr`, `data` (the group) is `data`, others their key."""
    names = {config_key: name for name, config_key in HPARAM_KEYS.items()}
    return names.get(key, key)


def _config_value(cfg: Mapping, key: str):
    value = cfg
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, Mapping):  # a group chosen on the command line: its `name`
        value = value.get("name")
    return str(value) if isinstance(value, (list, tuple)) else value


def flat_hparams(cfg: Mapping, *, swept: Sequence[str] | None = None) -> dict[str, float | int | str | bool]:
    """The run's settings, flattened to the scalar types the HParams plugin takes: the usual ones, and
    every key its sweep varies (`swept`, default: the running multirun's, `swept_keys`)."""
    values = {
        "latent_dim": cfg["latent_dim"],
        "kl_weight": float(cfg["kl_weight"]),
        "gen_loss": likelihood_group(cfg.get("gen_loss"))["name"],
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
    for key in swept_keys() if swept is None else swept:
        if hparam_name(key) not in values:
            values[hparam_name(key)] = _config_value(cfg, key)
    return {key: value for key, value in values.items() if isinstance(value, (bool, int, float, str))}


def shown_hparams(hparams: Mapping, swept: Sequence[str] = ()) -> list[str]:
    """The hparams the dashboard ticks: the study's knobs, the swept ones, then FILL_HPARAMS up to five."""
    shown = [name for name in STUDY_HPARAMS if name in hparams]
    shown += [name for name in map(hparam_name, swept) if name in hparams and name not in shown]
    fill = [name for name in FILL_HPARAMS if name in hparams and name not in shown]
    return shown + fill[: max(0, SHOWN_HPARAMS - len(shown))]


def hparams_experiment(hparams: Mapping[str, float | int | str | bool], *, shown: Sequence[str] | None = None):
    """The HParams dashboard's experiment: every hparam declared, those `shown` (default: the study's knobs
    and the fill) declared as differing so that the dashboard ticks them; the final metrics as columns."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    def data_type(value) -> int:
        if isinstance(value, bool):
            return api_pb2.DATA_TYPE_BOOL
        return api_pb2.DATA_TYPE_FLOAT64 if isinstance(value, (int, float)) else api_pb2.DATA_TYPE_STRING

    shown = shown_hparams(hparams) if shown is None else list(shown)
    names = [*shown, *sorted(name for name in hparams if name not in shown)]
    hparam_infos = [
        api_pb2.HParamInfo(name=name, type=data_type(hparams[name]), differs=name in shown) for name in names
    ]
    # The metric columns, under a prefix of their own that keeps them off the val/* charts: the final
    # numbers and the test ones vae.evaluate writes (empty until then), the ticked ones first (vae.metrics).
    metric_infos = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"{HPARAMS_GROUP}/{name}"), display_name=label)
        for name, label in hparams_columns().items()
    ]
    experiment = api_pb2.Experiment(hparam_infos=hparam_infos, metric_infos=metric_infos)
    content = HParamsPluginData(experiment=experiment, version=metadata.PLUGIN_DATA_VERSION).SerializeToString()
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content)
    return Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=SummaryMetadata(plugin_data=plugin))])


def write_hparams_entry(
    writer: SummaryWriter, hparams: Mapping[str, float | int | str | bool], *, swept: Sequence[str] | None = None
) -> None:
    """Declare this run in the HParams dashboard; its `z_hparams/*` scalars fill the metric columns.

    `swept`: the config keys the run's sweep varies (default: the running multirun's, `swept_keys`), ticked.
    """
    swept = swept_keys() if swept is None else swept
    columns = {f"{HPARAMS_GROUP}/{name}": 0.0 for name in hparams_columns()}
    _, session_start, session_end = hparams_summary(dict(hparams), columns)
    file_writer = writer._get_file_writer()
    for summary in (hparams_experiment(hparams, shown=shown_hparams(hparams, swept)), session_start, session_end):
        file_writer.add_summary(summary)


def log_epoch(writer: SummaryWriter, epoch: int, *, train: Mapping, val: Mapping, extra: Mapping[str, float]) -> None:
    """Write an epoch's scalars at step = epoch: the train and val terms (vae.metrics: the `train/*` and `val/*`
    curves, and `z_hparams/*`, the same numbers under the HParams dashboard's metric names, kept apart from the
    curves), and `extra` tags as they are."""
    for split, values in (("train", train), ("val", val)):
        for tag, name in epoch_scalars(split):
            writer.add_scalar(tag, values[name], epoch)
    for tag, value in extra.items():
        writer.add_scalar(tag, value, epoch)


def write_epoch_images(
    writer: SummaryWriter,
    model,
    splits: DataSplits,
    *,
    step: int,
    num_samples: int,
    grid_size: int,
    seed: int,
    run_dir: Path,
    channels_last: bool,
) -> None:
    """Reconstructions beside their inputs, prior samples and (latent_dim 2) the decoded grid, to TensorBoard and images/."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        x = to_model_input(splits.val.images[: min(num_samples, 32)]).to(device)  # (B, C, H, W)
        mu = model.encode(x.contiguous(memory_format=torch.channels_last) if channels_last else x).mean
        reconstructions = likelihood_of(model).mean(model.decode(mu).float())
        samples = model.sample(num_samples, generator=torch.Generator().manual_seed(seed))
    # file name in images/ -> TensorBoard tag
    sheets = {
        "val_reconstructions": ("val/reconstructions", reconstruction_sheet(x.cpu(), reconstructions.cpu())),
        "samples_prior": (f"{IMAGES_GROUP}/samples_prior", image_sheet(samples.cpu())),
    }
    if model.latent_dim == 2:
        sheets["latent_grid"] = (f"{IMAGES_GROUP}/latent_grid", decoded_grid(model, grid_size=grid_size))
    images_dir = Path(run_dir) / "images"
    images_dir.mkdir(exist_ok=True)
    for name, (tag, image) in sheets.items():
        writer.add_image(tag, image, global_step=step)
        save_image(image, images_dir / f"{name}.png")
    model.train()

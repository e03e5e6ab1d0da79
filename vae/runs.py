"""Run directories: where the configs live, run.json, and loading a trained run back."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf

from vae.build import build_model
from vae.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from vae.model import VAE
from vae.runtime import git_commit, machine_info, package_versions


def write_run_json(
    run_dir: Path, *, runtime: dict, resumed_from_step: int | None = None, saved_runtime: dict | None = None
) -> dict:
    """Record the commit, the package versions, the machine and every setting resolved from `auto`.

    A resume is appended to `resumes`: its step, start, commit and command as before, and (added keys)
    `runtime`, the settings resolved afresh for the machine it runs on, `saved_runtime`, those the
    checkpoint was saved with, `machine` and `versions`, so a run that moved between machines says where
    each part of it ran.
    """
    path = Path(run_dir) / "run.json"
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    machine = machine_info(runtime["device"])
    if resumed_from_step is not None and path.is_file():
        info = json.loads(path.read_text())
        info.setdefault("resumes", []).append(
            {
                "step": resumed_from_step,
                "started": now,
                "git": git_commit(),
                "command": sys.argv,
                "runtime": runtime,
                "saved_runtime": saved_runtime,
                "machine": machine,
                "versions": package_versions(),
            }
        )
    else:
        info = {
            "git": git_commit(),
            "versions": package_versions(),
            "runtime": runtime,
            "machine": machine,
            "command": sys.argv,
            "started": now,
        }
    path.write_text(json.dumps(info, indent=2))
    return info


class LoadedRun(NamedTuple):
    model: VAE
    config: DictConfig
    checkpoint: dict


def run_data(loaded: LoadedRun, *, data_root: str | None = None):
    """The train / val / test splits a run was trained on; `data_root` if the data set has moved."""
    from vae.build import build_data

    config = dict(loaded.checkpoint["config"])
    saved = config["data"].get("root")
    environment = os.environ.get("VAE_DATA_DIR")
    if not data_root and environment and (saved is None or not Path(saved).is_dir()):
        data_root = environment  # an exported run (no root) or one trained on another machine
    if data_root:
        config["data"] = {**config["data"], "root": data_root}
    return build_data(config)


# What names an evaluation: `vae.evaluate` keeps each one as evals/<checkpoint>_<split>_k<iwae_k>_<binarize>_<precision>_n<num_images>.json
EVAL_KEYS = ("checkpoint", "split", "iwae_k", "binarize", "precision", "num_images")


class Evaluation(NamedTuple):
    path: Path  # evals/<name>.json, or eval.json for a run evaluated before evals/ existed
    results: dict


def eval_file_name(results: dict) -> str:
    """evals/ file name of an evaluation, e.g. best_test_k1000_dynamic_fp32_n10000.json."""
    return "{checkpoint}_{split}_k{iwae_k}_{binarize}_{precision}_n{num_images}.json".format(**results)


def write_eval(run_dir: str | Path, results: dict) -> tuple[Path, Path]:
    """eval.json (the newest evaluation) and evals/<name>.json (this one, kept whatever comes later): both paths."""
    run_dir = Path(run_dir)
    text = json.dumps(results, indent=2)
    kept = run_dir / "evals" / eval_file_name(results)
    kept.parent.mkdir(exist_ok=True)
    kept.write_text(text)
    (run_dir / "eval.json").write_text(text)
    return run_dir / "eval.json", kept


def run_evals(run_dir: str | Path) -> list[Evaluation]:
    """A run's likelihood evaluations, newest first: evals/*.json (not vae.quality's quality_*.json), then eval.json
    (the newest again, or one from before evals/)."""
    run_dir = Path(run_dir)
    kept = sorted(
        (path for path in (run_dir / "evals").glob("*.json") if not path.name.startswith("quality_")),  # vae.quality's
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    paths = kept + ([run_dir / "eval.json"] if (run_dir / "eval.json").is_file() else [])
    return [Evaluation(path, json.loads(path.read_text())) for path in paths]


def find_eval(run_dir: str | Path, **wanted) -> Evaluation | None:
    """The newest evaluation of a run whose `checkpoint`, `split`, `iwae_k`, `binarize`, `precision` and
    `num_images` are those asked for (None or left out: any), or None when no evaluation matches.

    evals/ first; eval.json when it matches (a run evaluated before evals/ existed has only that).
    """
    unknown = set(wanted) - set(EVAL_KEYS)
    if unknown:
        raise TypeError(f"find_eval: unknown keys {sorted(unknown)} (known: {', '.join(EVAL_KEYS)})")
    wanted = {key: value for key, value in wanted.items() if value is not None}
    for evaluation in run_evals(run_dir):
        if all(evaluation.results.get(key) == value for key, value in wanted.items()):
            return evaluation
    return None


# The binarization's own entropy, sum_p H(x_p), averaged over MNIST's gray-level test images
# (experiments/likelihood/entropy_floor.py): the part of a gray-level MNIST -ELBO no model removes.
# Measured for MNIST only; other data sets have a floor of their own, not measured here.
MNIST_ENTROPY_FLOOR_NATS = 45.5


def entropy_floor_nats(data: str | None, binarize: str | None) -> float | None:
    """The entropy floor under a -ELBO in nats per image where it is known: gray-level MNIST's (45.5);
    None for binarized images (they have none) and for other data sets (not measured)."""
    return MNIST_ENTROPY_FLOOR_NATS if data == "mnist" and binarize == "none" else None


def likelihood_note(data: str | None, binarize: str | None, decoder_note: str | None = None) -> str:
    """What a -ELBO in nats is for this data set, binarization and decoder (eval.json's `likelihood`): the
    likelihood's own `note` where it has one (a density of 8-bit images), else the Bernoulli's on this data;
    the floor is quoted for gray-level MNIST only."""
    if decoder_note:
        return decoder_note
    if binarize not in (None, "none"):
        return "Bernoulli likelihood of binarized images"
    floor = entropy_floor_nats(data, binarize)
    if floor is not None:
        return (
            "gray levels: an upper bound on the expected NLL of a binarization of each image, including the "
            f"binarization's entropy ({floor:g} nats per MNIST test image); compare with the literature only when binarized"
        )
    return (
        "gray levels: an upper bound on the expected NLL of a binarization of each image, including the "
        "binarization's own entropy; not a likelihood of the gray-level images"
    )


def describe_eval(results: dict) -> str:
    """checkpoint=last split=test iwae_k=5000 ...: what `vae.evaluate` was asked for (the keys present)."""
    return " ".join(f"{key}={results[key]}" for key in EVAL_KEYS if results.get(key) is not None)


# Storage types of an exported run's floating-point weights; they load back into the model's fp32 parameters.
EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def export_run(run_dir: str | Path, out_dir: str | Path, *, checkpoint: str = "last", dtype: str = "fp32") -> dict:
    """A small, shareable copy of a run: weights-only `checkpoints/last.pt` with its config, `config.json`
    (the same config, readable without the weights), and metrics.json.

    No optimizer state, RNG state or machine paths (data.root is dropped: `vae.evaluate` then finds
    the data through data_root= or VAE_DATA_DIR). `eval.json` and `evals/` are copied when the run has them,
    and run.json (the commit, versions, runtime and machine it trained on) without its command line.
    `dtype=fp16` stores the floating-point weights in half precision (half the bytes; `weights_dtype` in the
    checkpoint says so); loading copies them back into fp32 parameters. What that changes in an evaluation is
    measured by experiments/likelihood/restore_check.py (its README).
    """
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(EXPORT_DTYPES)} (got {dtype!r})")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    state = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")
    config = dict(state["config"])
    config["data"] = {**config["data"], "root": None}
    config["resume"] = None
    weights = {
        key: tensor.to(EXPORT_DTYPES[dtype]) if tensor.is_floating_point() else tensor
        for key, tensor in state["model"].items()
    }
    small = {
        "model": weights,
        "config": config,
        "epoch": state["epoch"],
        "exported_from": checkpoint,
        "weights_dtype": dtype,
    }
    save_checkpoint(out_dir / "checkpoints" / "last.pt", small)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ("metrics.json", "eval.json"):
        if (run_dir / name).is_file():
            (out_dir / name).write_text((run_dir / name).read_text())
    if (run_dir / "run.json").is_file():  # the command line names the machine's paths: left out
        described = {k: v for k, v in json.loads((run_dir / "run.json").read_text()).items() if k != "command"}
        (out_dir / "run.json").write_text(json.dumps(described, indent=2) + "\n")
    for path in sorted((run_dir / "evals").glob("*.json")):
        (out_dir / "evals").mkdir(exist_ok=True)
        shutil.copy2(path, out_dir / "evals" / path.name)  # keeps the times: "newest" stays the same evaluation
    return small


def load_run(run_dir: str | Path, *, checkpoint: str = "best", device: str = "cpu") -> LoadedRun:
    """The trained model (in eval mode) and the config of a run directory, for notebooks and tools.

    `checkpoint` is `best` or `last`; `best.pt` falls back to `last.pt` when absent.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if checkpoint == "best" and not path.is_file():
        path = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(path, map_location=device)
    config = OmegaConf.create(state["config"])
    model = build_model(state["config"])
    load_model_state(model, state["model"], source=str(path))
    model.to(torch.device(device)).eval()
    return LoadedRun(model, config, state)

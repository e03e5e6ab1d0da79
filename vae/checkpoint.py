"""Checkpoints as plain dicts that load with `torch.load(weights_only=True)`, written atomically."""

from __future__ import annotations

import errno
import io
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from vae.kept import restore_hint


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def rng_state() -> dict:
    """Every RNG a run draws from, as tensors and lists (no numpy objects), so weights_only loading accepts it."""
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class DiskFullError(CheckpointError):
    """No room to write a checkpoint: the message names the path, the bytes it needed and those free."""


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write to a temporary file, fsync, then rename: a kill at any moment leaves the old or the new file whole.

    The checkpoint is serialized in memory first, so a full disk is told apart from any other failure and
    reported in one line (DiskFullError: the path, the bytes needed, the bytes free, the previous file intact).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getbuffer()
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except OSError as error:
        if tmp_name:
            Path(tmp_name).unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            previous = f"the previous {path.name} is intact" if path.is_file() else f"there was no {path.name} before"
            raise DiskFullError(
                f"disk full writing {path}: it needs {len(data):,} bytes, {free:,} are free; {previous}. "
                "Free some space and resume the run"
            ) from None
        raise
    except BaseException:
        if tmp_name:
            Path(tmp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (`weights_only=True`: a checkpoint cannot run code); one clear line when it cannot be read.

    Every tensor lands on `map_location`, the CPU by default, whatever device it was saved from: a
    checkpoint written on a GPU loads on a CPU-only machine. The RNG states must stay CPU tensors
    (`set_rng_state`); `load_state_dict` copies the weights and the optimizer state onto the device of
    the model's parameters (Adam's fused `step` included), so a resume loads here and moves them there.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}{restore_hint(path)}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - truncated, corrupt or unsafe: all unusable
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first_line})") from None
    missing = [key for key in ("model", "config", "epoch") if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is not a vae checkpoint (missing {', '.join(missing)})")
    return checkpoint


def load_model_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """Load weights, refusing a checkpoint whose tensors do not fit the model and naming the first mismatch."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]} "
            "(another model= than the one it was trained with?)"
        )
    for key, tensor in expected.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source} does not fit the model: {key} has shape {tuple(state_dict[key].shape)} "
                f"in the checkpoint but {tuple(tensor.shape)} in the model (another latent_dim or data shape?)"
            )
    model.load_state_dict(state_dict)

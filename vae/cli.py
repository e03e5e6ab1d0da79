"""`key=value` arguments for the tools that read a run directory, checked like the trainer's."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")
__all__ = ["MISSING", "parse_args"]


def parse_args(schema: type[T], argv: Sequence[str] | None = None, *, usage: str = "") -> T:
    """Merge `key=value` words into the dataclass `schema`; exit 2 naming an unknown key, a bad value or a missing one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(word in ("-h", "--help") for word in argv):
        print(usage or schema.__doc__)
        sys.exit(0)
    bad_words = [word for word in argv if "=" not in word]
    if bad_words:
        sys.exit(f"error: arguments are key=value (got {bad_words[0]!r})\n{usage}")
    try:
        config = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        missing = sorted(OmegaConf.missing_keys(config))
        if missing:
            sys.exit(f"error: {missing[0]} is required, e.g. {missing[0]}=outputs/runs/<timestamp>\n{usage}")
        return resolve_latest(OmegaConf.to_object(config))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or ""
        first_line = str(error).splitlines()[0]
        sys.exit(f"error: {key + ': ' if key else ''}{first_line}\n{usage}")


# `run=latest` and `sweep=latest`: the newest directory (timestamps sort by name) that holds what a tool reads.
# A run counts once it saved a checkpoint: a failed start (an empty checkpoints/) is never picked.
LATEST = {"run": ("outputs/runs", "checkpoints/last.pt"), "sweep": ("outputs/multirun", "multirun.yaml")}


def newest(folder: str, holding: str) -> Path | None:
    """The last-named directory under `folder` (relative to the working directory) that holds `holding`."""
    candidates = sorted(path for path in Path(folder).glob("*") if (path / holding).exists())
    return candidates[-1] if candidates else None


def resolve_latest(args: T) -> T:
    """`run=latest` / `sweep=latest` replaced by the newest run or sweep under outputs/ (said on stderr)."""
    for key, (folder, holding) in LATEST.items():
        if getattr(args, key, None) == "latest":
            found = newest(folder, holding)
            if found is None:
                sys.exit(f"error: {key}=latest: no directory under {Path(folder).resolve()} holds {holding}")
            print(f"{key}=latest: {found}", file=sys.stderr)
            setattr(args, key, str(found))
    return args


def check(condition: bool, key: str, expectation: str, value: Any) -> None:
    """Exit 2 with `key must be ... (got ...)` when a value cannot work."""
    if not condition:
        sys.exit(f"error: {key} must be {expectation} (got {value!r})")


def load_run_or_exit(run: str, *, checkpoint: str = "best", device: str = "cpu", data_root: str | None = None):
    """A run's model and data for a tool; one clear line and exit 2 when either is missing."""
    from vae.checkpoint import CheckpointError
    from vae.data import DataNotFoundError
    from vae.runs import load_run, run_data

    try:
        loaded = load_run(run, checkpoint=checkpoint, device=device)
    except CheckpointError as error:
        sys.exit(f"error: {run} has no usable checkpoint: {error}")
    try:
        splits = run_data(loaded, data_root=data_root)
    except DataNotFoundError as error:
        sys.exit(f"error: {str(error).splitlines()[0]} (the run's data; point to it with data_root=...)")
    return loaded, splits

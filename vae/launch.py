"""Moved: the command is vae/train.py (`python -m vae.train`). Kept one release for `from vae.launch import ...`."""

from __future__ import annotations

import warnings

from vae.train import main, remove_unstarted_run, resume_config

warnings.warn("vae.launch moved to vae.train (the command); import from there", DeprecationWarning, stacklevel=2)

__all__ = ["main", "remove_unstarted_run", "resume_config"]

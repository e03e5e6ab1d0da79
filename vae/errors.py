"""The errors a config or a user's value raises, below every module that raises them (no import circle)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""

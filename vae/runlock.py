"""One writer per run directory: an OS file lock (`flock`) on <run>/.lock, held for a training's or a resume's life.

A second writer (another training with the same `hydra.run.dir`, a second `resume=` of the run) is refused at
once with `RunLocked`, naming the holder (PID, host, start time, command) that the file records. The OS drops
the lock when its process dies, however it dies (kill -9 included), so a lock left by a dead process is taken
over at once, and the log says so, naming the process that left it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = ".lock"
log = logging.getLogger("vae.runlock")


class RunLocked(RuntimeError):
    """The run directory is being written by another process (named in the message)."""


class RunLock:
    """`with RunLock(run_dir):` holds the run's lock; RunLocked when another process holds it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self.file = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's whole life
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            self.file.close()
            raise RunLocked(
                f"{self.path.parent} is being written by another process ({describe(holder)}): one writer per run; "
                "wait for it to finish, or give this one another hydra.run.dir"
            ) from None
        left = self._holder()
        if left.get("pid") is not None:
            log.warning("took over the lock of %s, left by %s (no longer running)", self.path.parent, describe(left))
        self.file.seek(0)
        self.file.truncate()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        }
        self.file.write(json.dumps(holder) + "\n")
        self.file.flush()
        return self

    def _holder(self) -> dict:
        try:
            return json.loads(Path(self.path).read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def __exit__(self, *exc) -> None:
        if self.file is not None and not self.file.closed:
            self.file.seek(0)
            self.file.truncate()  # released: an empty file is nobody's lock
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()


def describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"PID {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: {holder.get('command')}"

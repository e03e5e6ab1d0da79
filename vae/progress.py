"""Progress of long loops: tqdm's bar on a terminal, a plain log line at a steady interval anywhere else.

    for batch in progress(batches, desc=f"epoch {epoch}/{epochs}", unit="batch"):
        ...

On a terminal (stderr and stdout both) this is a tqdm bar. Written to a file, a pipe, nohup,
a cluster job or CI, a bar is carriage returns nobody sees, so the loop logs a line instead
every `interval_s` seconds (`VAE_PROGRESS_INTERVAL_S`, default 15) and one at the end:

    epoch 3/10: 210/430 batches (49%), 12.3 batch/s, 18 s left, loss=0.1234

through the `vae.progress` logger. Under Hydra that reaches the console and `<run dir>/train.log`;
a command without logging set up gets a stderr handler (`logging.basicConfig`), which flushes
each line as it is written.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator

from tqdm import tqdm

INTERVAL_ENV = "VAE_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 15.0
log = logging.getLogger("vae.progress")


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    interval_s: float | None = None,
    stream=None,
    logger: logging.Logger | None = None,
    enabled: bool = True,
    clock: Callable[[], float] = time.monotonic,
):
    """A tqdm bar over `iterable` on a terminal, else a `LogProgress` logging a line every `interval_s` seconds.

    Both have `set_postfix(**values)`, `update(n)` (for `iterable=None` with a `total`) and `close()`.
    `interval_s` None reads `VAE_PROGRESS_INTERVAL_S` (default 15 s); `stream` is where a bar goes
    (stderr); `enabled=False` shows nothing (a disabled tqdm).
    """
    if total is None and iterable is not None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=stream)
    logger = log if logger is None else logger
    ensure_handler(logger)
    return LogProgress(
        iterable, total=total, desc=desc, unit=unit, interval_s=interval(interval_s), logger=logger, clock=clock
    )


def is_terminal(stream) -> bool:
    """A bar only where someone watches it: the bar's stream and stdout are both terminals."""

    def tty(s) -> bool:
        try:
            return s is not None and s.isatty()
        except (AttributeError, ValueError):  # no isatty, or closed
            return False

    return tty(stream) and tty(sys.stdout)


def interval(interval_s: float | None) -> float:
    """Seconds between lines: the argument, else VAE_PROGRESS_INTERVAL_S, else 15."""
    if interval_s is not None:
        return max(0.0, float(interval_s))
    value = os.environ.get(INTERVAL_ENV)
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            log.warning("%s=%r is not a number of seconds; using %g", INTERVAL_ENV, value, DEFAULT_INTERVAL_S)
    return DEFAULT_INTERVAL_S


def ensure_handler(logger: logging.Logger) -> None:
    """Outside Hydra nothing handles INFO records: log to stderr then (StreamHandler flushes every line)."""
    if not logger.hasHandlers():
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 2 h 10 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def rate_text(rate: float, unit: str) -> str:
    """12.3 batch/s, or 4.2 s/batch below one per second."""
    if rate <= 0:
        return f"? {unit}/s"
    if rate < 1:
        return f"{1 / rate:.1f} s/{unit}"
    return f"{rate:.1f} {unit}/s"


class LogProgress:
    """The non-terminal progress: iterate over it (or call `update`), and it logs done/total, the rate and the time left."""

    def __init__(
        self,
        iterable: Iterable | None,
        *,
        total: int | None,
        desc: str,
        unit: str,
        interval_s: float,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.interval_s, self.logger, self.clock = interval_s, logger, clock
        self.n, self.postfix, self.closed = 0, "", False
        self.start = self.last_time = clock()
        self.last_n = 0

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress has no total")
        return self.total

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("progress(None, total=...) is updated by hand: call update()")
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """`n` more items done; a line when `interval_s` has passed since the last one (the end's line comes from close)."""
        self.n += n
        if self.closed or (self.total is not None and self.n >= self.total):
            return
        now = self.clock()
        if now - self.last_time >= self.interval_s:
            rate = (self.n - self.last_n) / (now - self.last_time) if now > self.last_time else 0.0
            left = f", {duration((self.total - self.n) / rate)} left" if self.total is not None and rate > 0 else ""
            self.emit(f"{rate_text(rate, self.unit)}{left}")
            self.last_time, self.last_n = now, self.n

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values) -> None:
        """Shown at the end of each line, as `key=value` (tqdm's signature)."""
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        """The last line, once: the average rate and the time taken (`stopped` when the total was not reached)."""
        if self.closed:
            return
        self.closed = True
        elapsed = self.clock() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        stopped = self.total is not None and self.n < self.total
        self.emit(f"{rate_text(rate, self.unit)}, {'stopped after' if stopped else 'done in'} {duration(elapsed)}")

    def emit(self, timing: str) -> None:
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        percent = f" ({100 * self.n // self.total}%)" if self.total else ""
        unit = self.unit if (self.total if self.total is not None else self.n) == 1 else plural(self.unit)
        parts = [f"{done} {unit}{percent}", timing] + ([self.postfix] if self.postfix else [])
        self.logger.info("%s%s", f"{self.desc}: " if self.desc else "", ", ".join(parts))

"""Progress: tqdm's bar on a terminal; elsewhere a log line every interval with done/total, the rate and the time left."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import time

import pytest
from tqdm import tqdm

from vae.progress import LogProgress, duration, progress

from conftest import REPO


class FakeClock:
    """A clock the test moves by hand: one `tick` per item."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "vae.progress"]


def test_off_a_terminal_a_line_every_interval_with_rate_and_time_left_and_one_at_the_end(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="vae.progress")
    bar = progress(range(10), desc="epoch 3/10", unit="batch", interval_s=3.0, stream=io.StringIO(), clock=clock)
    assert isinstance(bar, LogProgress) and len(bar) == 10
    seen = []
    for item in bar:
        clock.tick(0.5 if item < 6 else 2.0)  # 2 batch/s, then 0.5 batch/s
        seen.append(item)
        bar.set_postfix(loss=f"{item / 10:.4f}")
    assert seen == list(range(10))
    assert _messages(caplog) == [
        # at 3 s: 6 batches in 3 s; 4 left at 2 batch/s
        "epoch 3/10: 6/10 batches (60%), 2.0 batch/s, 2 s left, loss=0.5000",
        # 3 s later, slower: the rate of the last interval, not of the whole run
        "epoch 3/10: 8/10 batches (80%), 2.0 s/batch, 4 s left, loss=0.7000",
        # the end: the whole loop's rate and time
        "epoch 3/10: 10/10 batches (100%), 1.1 s/batch, done in 11 s, loss=0.9000",
    ]


def test_a_loop_stopped_early_says_so_once_on_close(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="vae.progress")
    bar = progress(range(100), desc="epoch 1/2", unit="batch", interval_s=60.0, stream=io.StringIO(), clock=clock)
    for item in bar:
        clock.tick(2.0)
        if item == 29:  # what train.py does on SIGTERM, in the loop's body, before it raises
            bar.close()
            bar.close()
            break
    assert _messages(caplog) == ["epoch 1/2: 29/100 batches (29%), 2.1 s/batch, stopped after 1 min 00 s"]


def test_updated_by_hand_without_an_iterable_and_unknown_totals(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="vae.progress")
    steps = progress(total=3, desc="explore", unit="step", interval_s=0.0, stream=io.StringIO(), clock=clock)
    for _ in range(3):
        clock.tick(4.0)
        steps.update()
    steps.close()
    endless = progress(iter(range(5)), desc="jobs", unit="job", interval_s=2.0, stream=io.StringIO(), clock=clock)
    for _ in endless:
        clock.tick(1.0)
    assert _messages(caplog) == [
        "explore: 1/3 steps (33%), 4.0 s/step, 8 s left",
        "explore: 2/3 steps (66%), 4.0 s/step, 4 s left",
        "explore: 3/3 steps (100%), 4.0 s/step, done in 12 s",
        "jobs: 2 jobs, 1.0 job/s",
        "jobs: 4 jobs, 1.0 job/s",
        "jobs: 5 jobs, 1.0 job/s, done in 5 s",
    ]


def test_the_interval_comes_from_vae_progress_interval_s_when_not_given(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="vae.progress")
    clock = FakeClock()
    monkeypatch.setenv("VAE_PROGRESS_INTERVAL_S", "0")
    for _ in progress(range(4), desc="every item", stream=io.StringIO(), clock=clock):
        clock.tick()
    assert len(_messages(caplog)) == 4
    caplog.clear()
    monkeypatch.setenv("VAE_PROGRESS_INTERVAL_S", "soon")
    bar = progress(range(4), desc="default", stream=io.StringIO(), clock=clock)
    assert bar.interval_s == 15.0
    assert "VAE_PROGRESS_INTERVAL_S='soon' is not a number" in caplog.text
    monkeypatch.delenv("VAE_PROGRESS_INTERVAL_S")
    assert progress(range(4), stream=io.StringIO()).interval_s == 15.0


def test_on_a_terminal_it_is_a_tqdm_bar_and_logs_nothing(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="vae.progress")
    monkeypatch.setattr(sys, "stdout", Terminal())
    screen = Terminal()
    bar = progress(range(5), desc="epoch 1/2", unit="batch", stream=screen)
    assert isinstance(bar, tqdm)
    for _ in bar:
        bar.set_postfix(loss="0.5000")
    bar.close()
    assert "epoch 1/2" in screen.getvalue() and "batch" in screen.getvalue()
    assert _messages(caplog) == []


def test_stdout_to_a_file_gives_lines_even_when_stderr_is_a_terminal(caplog, monkeypatch):
    # `python -m vae.train > file`: the lines go where the output is kept (Hydra's console log is stdout)
    caplog.set_level(logging.INFO, logger="vae.progress")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    screen = Terminal()
    bar = progress(range(2), desc="epoch 1/1", unit="batch", stream=screen, interval_s=60.0)
    assert isinstance(bar, LogProgress)
    list(bar)
    assert screen.getvalue() == "" and len(_messages(caplog)) == 1


def test_disabled_progress_iterates_and_shows_nothing(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="vae.progress")
    monkeypatch.setattr(sys, "stdout", Terminal())
    screen = Terminal()
    bar = progress(range(3), desc="quiet", stream=screen, enabled=False)
    assert list(bar) == [0, 1, 2]
    bar.set_postfix(loss=1.0)
    bar.close()
    assert screen.getvalue() == "" and _messages(caplog) == []


def test_durations_read_as_seconds_minutes_hours():
    assert [duration(s) for s in (0.4, 18, 59.6, 245, 7830)] == [
        "0 s",
        "18 s",
        "1 min 00 s",
        "4 min 05 s",
        "2 h 10 min",
    ]


def test_without_logging_set_up_the_lines_reach_stderr_as_they_are_written():
    # A command outside Hydra (evaluate, explore, report) configures no logging: progress adds a stderr handler.
    code = (
        "import sys, time\n"
        "from vae.progress import progress\n"
        "for i in progress(range(3), desc='work', unit='item', interval_s=0):\n"
        "    time.sleep(0.01)\n"
        "print('stdout stays clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stdout stays clean\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all("vae.progress: work: " in line for line in lines)
    assert "1/3 items (33%)" in lines[0] and "left" in lines[0] and "3/3 items (100%)" in lines[2]


@pytest.mark.slow  # runs the CLI in a subprocess
def test_evaluate_into_a_file_writes_progress_lines_while_it_runs(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    log_path = tmp_path / "log.txt"
    env = {**os.environ, "VAE_PROGRESS_INTERVAL_S": "0"}
    env.pop("PYTHONUNBUFFERED", None)  # stdout to a file is block-buffered: the progress lines must not be
    args = [f"run={run}", "iwae_k=200", "batch_size=4", "max_images=32"]
    seen_while_running = []
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "vae.evaluate", *args], cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if "IWAE k=200: " in log_path.read_text():
                seen_while_running.append(log_path.read_text())
                break
            time.sleep(0.02)
        assert process.wait(timeout=300) == 0, log_path.read_text()[-2000:]
    text = log_path.read_text()
    assert seen_while_running, f"no progress line reached the file before the command ended:\n{text}"
    lines = [line for line in text.splitlines() if "vae.progress: IWAE k=200: " in line]
    assert len(lines) == 8, text  # 32 images in batches of 4: one line per batch at interval 0
    assert "1/8 batches (12%)" in lines[0] and ("batch/s" in lines[0] or "s/batch" in lines[0])
    assert lines[0].endswith(" left") and "8/8 batches (100%)" in lines[-1] and "done in" in lines[-1]
    assert "\r" not in text  # no bar
    final = [line for line in text.splitlines() if line.endswith(f"{run / 'eval.json'} (the newest evaluation)")]
    assert len(final) == 1 and f"wrote {run / 'evals' / 'best_test_k200_none_fp32_n32.json'} and" in final[0]

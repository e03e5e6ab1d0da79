"""Reliability: exact resume, signals and kills survived, bad checkpoints and bad input refused."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from vae.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from vae.train import resume_config, train

from conftest import REPO, TINY, compose_config, make_vae, run_cli

DETERMINISTIC = [*TINY, "data.num_train=128", "deterministic=true", "latent_dim=2"]


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert different == [], f"weights differ in {different}"


def test_two_epochs_equal_one_epoch_then_resume_bit_for_bit(tmp_path):
    train(compose_config([*DETERMINISTIC, "epochs=2"]), tmp_path / "straight")
    train(compose_config([*DETERMINISTIC, "epochs=1"]), tmp_path / "resumed")
    composed = compose_config([*DETERMINISTIC, "epochs=2"])
    config, checkpoint = resume_config(tmp_path / "resumed", composed, ["epochs=2"])
    metrics = train(config, tmp_path / "resumed", resume_from=checkpoint)
    assert metrics["epoch"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed"))


def _start_cli(*args, cwd=REPO):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "vae.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()[-2000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow  # runs the CLI in a subprocess
def test_sigterm_mid_epoch_saves_and_resume_finishes_the_same_run(tmp_path):
    args = [*DETERMINISTIC, "data.num_train=256", "epochs=2", "checkpoint_every_steps=3"]
    straight = run_cli("vae.train", *args, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-2000:]

    run_dir = tmp_path / "interrupted"
    process = _start_cli(*args, f"hydra.run.dir={run_dir}")
    _wait_for(run_dir / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]
    # the hint works in a fresh shell: this interpreter's own path, or make
    assert (
        f"{sys.executable} -m vae.train resume={run_dir}" in output and f'make train ARGS="resume={run_dir}"' in output
    )
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] < 2 * 8

    resumed = run_cli("vae.train", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    said = resumed.stdout + resumed.stderr
    assert (
        "resumed from epoch 0, step " in said
        and "finished 2 epochs: best val_loss" in said
        and f"Run: {run_dir}" in said
    )
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(run_dir))
    assert json.loads((run_dir / "metrics.json").read_text())["epoch"] == 2
    assert (run_dir / ".hydra" / "overrides.yaml").read_text().count("resume") == 0  # the original config is kept


@pytest.mark.slow  # runs the CLI in a subprocess
def test_resume_latest_continues_the_newest_run_with_a_checkpoint(tmp_path):
    first = run_cli(
        "vae.train", *DETERMINISTIC, "data.num_train=64", "epochs=1", "hydra.run.dir=outputs/runs/a", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / "outputs" / "runs" / "b" / "checkpoints").mkdir(parents=True)  # newer, but nothing to resume
    resumed = run_cli("vae.train", "resume=latest", "epochs=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        "resume=latest: outputs/runs/a" in resumed.stderr and "resumed from epoch 1" in resumed.stdout + resumed.stderr
    )
    assert json.loads((tmp_path / "outputs" / "runs" / "a" / "metrics.json").read_text())["epoch"] == 2
    nothing = run_cli("vae.train", "resume=latest", cwd=tmp_path / "outputs")
    assert nothing.returncode != 0 and "resume=latest: no run under" in nothing.stderr


@pytest.mark.slow  # runs the CLI in a subprocess
def test_kill_9_at_random_moments_always_leaves_a_loadable_last_checkpoint(tmp_path):
    rng = random.Random(0)
    run_dir = tmp_path / "run"
    args = [*TINY, "data.num_train=512", "epochs=50", "checkpoint_every_steps=1", f"hydra.run.dir={run_dir}"]
    process = _start_cli(*args)
    _wait_for(run_dir / "checkpoints" / "last.pt", process)
    process.kill()
    process.wait()
    steps = [load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]]
    for _ in range(3):
        before = (run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns
        process = _start_cli(f"resume={run_dir}", "checkpoint_every_steps=1")
        deadline = time.time() + 120
        while (run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns == before and time.time() < deadline:
            time.sleep(0.02)  # wait until the resumed run is writing a checkpoint every step
        time.sleep(rng.uniform(0.0, 0.5))  # then kill it at a random moment, mid-write or not
        process.kill()
        process.wait()
        steps.append(load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"])
    assert steps == sorted(steps) and steps[-1] > steps[0]


@pytest.mark.slow  # runs the CLI in a subprocess
def test_resume_refuses_an_override_that_changes_the_model_and_writes_nothing_into_the_run(tiny_run):
    before = {p.relative_to(tiny_run): p.stat().st_mtime_ns for p in tiny_run.rglob("*") if p.is_file()}
    for override in ("latent_dim=8", "model=mlp"):
        result = run_cli("vae.train", f"resume={tiny_run}", override, "epochs=3")
        assert result.returncode != 0
        assert (
            override.split("=")[0] in result.stdout + result.stderr and "Traceback" not in result.stdout + result.stderr
        )
    assert load_checkpoint(tiny_run / "checkpoints" / "last.pt")["epoch"] == 2  # nothing was trained
    after = {p.relative_to(tiny_run): p.stat().st_mtime_ns for p in tiny_run.rglob("*") if p.is_file()}
    # no error.txt, nothing touched (vae.report still lists it as finished); Hydra's train.log gets the refusal's
    # line, and the one-writer lock file (.lock) is there, empty once released
    kept = {"train.log", ".lock"}
    assert {k: v for k, v in after.items() if k.name not in kept} == {
        k: v for k, v in before.items() if k.name not in kept
    }
    assert (tiny_run / ".lock").read_text() == ""


@pytest.mark.slow  # runs the CLI in a subprocess
def test_resuming_a_finished_run_exits_zero_saying_so(tiny_run):
    before = (tiny_run / "checkpoints" / "last.pt").stat().st_mtime_ns
    result = run_cli("vae.train", f"resume={tiny_run}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "finished its 2 epochs" in result.stdout + result.stderr
    assert (tiny_run / "checkpoints" / "last.pt").stat().st_mtime_ns == before


@pytest.mark.slow  # runs the CLI in a subprocess
def test_resume_without_a_checkpoint_is_one_clear_line(tmp_path):
    result = run_cli("vae.train", f"resume={tmp_path}")
    assert result.returncode != 0 and "no checkpoints/last.pt" in result.stderr and "Traceback" not in result.stderr


def test_truncated_checkpoint_is_refused_in_one_line(tmp_path, tiny_run):
    broken = tmp_path / "last.pt"
    broken.write_bytes((tiny_run / "checkpoints" / "last.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="is not a readable checkpoint") as error:
        load_checkpoint(broken)
    assert "\n" not in str(error.value)


def test_checkpoint_of_another_latent_dim_is_refused_naming_the_mismatch(tiny_run):
    state = load_checkpoint(tiny_run / "checkpoints" / "last.pt")["model"]
    other = make_vae("conv", image_shape=(1, 28, 28), latent_dim=8, channels=(8, 16, 16, 16), hidden_dim=16)  # TINY's
    with pytest.raises(
        CheckpointError, match=r"encoder\.mu\.weight has shape \(2, 16\) in the checkpoint but \(8, 16\)"
    ):
        load_model_state(other, state, source="last.pt")
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_model_state(make_vae("mlp", image_shape=(1, 28, 28), latent_dim=2), state, source="last.pt")


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "config": {}, "epoch": 1})

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {}, "config": {}, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


@pytest.mark.slow  # runs the CLI in a subprocess
def test_a_failed_sweep_job_leaves_the_others_intact_and_says_why(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "vae.train", "-m", *TINY, "data.num_train=64", "epochs=1", "kl_weight=1e-3,-1", f"hydra.sweep.dir={sweep}"
    )
    assert result.returncode != 0
    assert json.loads((sweep / "0" / "metrics.json").read_text())["epoch"] == 1
    assert "kl_weight must be a number >= 0" in (sweep / "1" / "error.txt").read_text()
    assert not (sweep / "1" / "checkpoints" / "last.pt").exists()


def test_nan_skip_counts_skipped_batches(tmp_path, monkeypatch):
    from vae.objectives import ELBO

    real_loss = ELBO.__call__
    calls = {"n": 0}

    def sometimes_nan(self, output, x, kl_scale=1.0):
        terms = real_loss(self, output, x, kl_scale)
        if torch.is_grad_enabled():  # a training step, not the validation pass
            calls["n"] += 1
            if calls["n"] in (2, 4):  # 2 of the 4 batches
                return terms._replace(loss=terms.loss * float("nan"))
        return terms

    monkeypatch.setattr(ELBO, "__call__", sometimes_nan)
    metrics = train(compose_config([*TINY, "data.num_train=128", "epochs=1", "on_nan=skip"]), tmp_path)
    assert metrics["skipped_steps"] == 2
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4 - 2


@pytest.mark.slow  # runs the CLI in a subprocess
def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path):
    from vae.report import report

    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "data.num_train=2048", "epochs=2", "checkpoint_every_steps=5", "latent_dim=2,3,4"]
    args.append(f"hydra.sweep.dir={sweep}")
    process = _start_cli(*args)
    _wait_for(sweep / "1" / "checkpoints" / "last.pt", process)  # job 0 done, job 1 under way
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]  # the whole sweep stops, not just the job
    assert json.loads((sweep / "0" / "metrics.json").read_text())["epoch"] == 2
    assert load_checkpoint(sweep / "1" / "checkpoints" / "last.pt")["step"] < 2 * 64
    assert not (sweep / "2").exists()
    finished_before = (sweep / "0" / "checkpoints" / "last.pt").stat().st_mtime_ns

    result = run_cli("vae.train", *args)  # the same command continues it
    assert result.returncode == 0, result.stderr[-2000:]
    assert (sweep / "0" / "checkpoints" / "last.pt").stat().st_mtime_ns == finished_before  # not run again
    assert len(json.loads((sweep / "1" / "run.json").read_text())["resumes"]) == 1  # resumed, not restarted
    assert not (sweep / "1" / "error.txt").exists()
    rows = report(sweep, num_samples=4)
    assert [(row["latent_dim"], row["status"], row["epochs_done"]) for row in rows] == [
        (2, "ok", 2),
        (3, "ok", 2),
        (4, "ok", 2),
    ]


@pytest.mark.slow  # runs the CLI in subprocesses
def test_a_second_writer_of_a_run_directory_is_refused_at_once_and_the_first_is_unharmed(tmp_path):
    run_dir = tmp_path / "shared"
    from concurrent.futures import ThreadPoolExecutor

    args = [*DETERMINISTIC, "data.num_train=256", "epochs=5", f"hydra.run.dir={run_dir}"]
    first = _start_cli(*args)
    _wait_for(run_dir / "checkpoints" / "last.pt", first)  # its first epoch saved: a resume would have a checkpoint
    # Paused, not slowed down with more epochs: it holds its lock, mid-run, for as long as the others take to start.
    os.kill(first.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(2) as pool:  # a second training and a concurrent resume, both while the first runs
            second_future = pool.submit(run_cli, "vae.train", *args, "seed=1")
            resume_future = pool.submit(run_cli, "vae.train", f"resume={run_dir}")
            second, resumed = second_future.result(), resume_future.result()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.poll() is None and time.monotonic() - started < 60  # refused while it ran: the lock's doing
    assert (
        second.returncode != 0
        and f"{run_dir} is being written by another process (PID {first.pid} on " in second.stderr
    )
    assert "Traceback" not in second.stderr
    assert resumed.returncode != 0 and "being written by another process" in resumed.stderr
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epoch"] == 5 and load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]["seed"] == 0
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1 and (run_dir / ".lock").read_text() == ""


def test_a_lock_left_by_a_dead_process_is_taken_over_saying_so(tmp_path, caplog):
    from vae.runlock import RunLock, RunLocked

    (tmp_path / ".lock").write_text(json.dumps({"pid": 999999, "host": "h", "started": "then", "command": "gone"}))
    with caplog.at_level("WARNING"), RunLock(tmp_path):
        assert "took over the lock" in caplog.text and "PID 999999 on h" in caplog.text
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(RunLocked, match=f"being written by another process \\(PID {os.getpid()} on "):
            RunLock(tmp_path).__enter__()  # a second holder, even in the same process
    assert (tmp_path / ".lock").read_text() == ""
    with RunLock(tmp_path):  # released: the next writer takes it without a word
        pass


def test_a_divergence_names_a_checkpoint_only_if_one_was_saved(tmp_path, monkeypatch):
    from vae.objectives import ELBO
    from vae.step import TrainingDiverged

    real_loss = ELBO.__call__
    calls = {"n": 0, "at": 1}

    def nan_at_step(self, output, x, kl_scale=1.0):
        terms = real_loss(self, output, x, kl_scale)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == calls["at"]:
                return terms._replace(loss=terms.loss * float("nan"))
        return terms

    monkeypatch.setattr(ELBO, "__call__", nan_at_step)
    with pytest.raises(
        TrainingDiverged, match="step 1 .* no checkpoint was saved before it, so there is nothing to resume"
    ):
        train(compose_config([*TINY, "data.num_train=64", "epochs=2"]), tmp_path / "first_step")
    calls.update(n=0, at=3)  # epoch 2's first step: epoch 1's last.pt exists
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3 .*checkpoints/last.pt holds the last good state"):
        train(compose_config([*TINY, "data.num_train=64", "epochs=2"]), tmp_path / "later")


@pytest.mark.slow  # runs the CLI in a subprocess
def test_an_unexpected_failure_is_one_line_with_the_traceback_in_the_run(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import sys, vae.trainer as t\n"
        "def boom(*a, **k):\n"
        '    raise RuntimeError("DefaultCPUAllocator: can\'t allocate memory: you tried to allocate 9999999 bytes")\n'
        "t.train_epoch = boom\n"
        f"sys.argv = ['vae.train', *{TINY!r}, 'hydra.run.dir={run_dir}']\n"
        "from vae.train import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
    assert len(said) == 1 and "out of memory (RuntimeError: DefaultCPUAllocator" in said[0]
    assert "batch_size=32 and eval_batch_size=64: lower them" in said[0] and str(run_dir / "error.txt") in said[0]
    assert "Traceback" in (run_dir / "error.txt").read_text() and "Traceback" in (run_dir / "train.log").read_text()
    assert not (run_dir / "checkpoints" / "last.pt").exists()  # so run=latest never picks it


def test_a_full_disk_is_one_line_naming_the_bytes_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    import errno

    from vae.checkpoint import DiskFullError, save_checkpoint

    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {}, "epoch": 1})
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", FullDisk)
    with pytest.raises(
        DiskFullError,
        match=r"disk full writing .*last.pt: it needs [\d,]+ bytes, [\d,]+ are free; the previous last.pt is intact",
    ):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_truncated_or_non_gzip_idx_file_is_named_with_what_to_do(tmp_path):
    from vae.data import DataFileError, read_idx

    good = tmp_path / "good-idx3-ubyte.gz"
    import gzip

    with gzip.open(good, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]))
    assert read_idx(good).tolist() == [1, 2, 3, 4]
    cut = tmp_path / "train-images-idx3-ubyte.gz"
    cut.write_bytes(good.read_bytes()[:15])
    with pytest.raises(
        DataFileError, match=r"train-images-idx3-ubyte.gz cannot be read .*delete it to download it afresh"
    ):
        read_idx(cut)
    plain = tmp_path / "t10k-labels-idx1-ubyte.gz"
    plain.write_bytes(b"not gzip at all")
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz cannot be read"):
        read_idx(plain)

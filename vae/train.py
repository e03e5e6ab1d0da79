"""`python -m vae.train key=value ...`, the command: Hydra's entry point around the loop, `vae.trainer.train`.

Resuming (`resume=<run dir>`: the run's own config, with the few overrides a resume may make),
the command line rewritten for Hydra (a resumed run's own directory, torchrun's other ranks),
`--help`, and what a failed run leaves: error.txt, or nothing when it never started.

`from vae.train import train` (the loop, for notebooks and scripts) keeps working: the loop's public
names are re-exported below from vae.trainer, where they live.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vae import distributed
from vae.checkpoint import CheckpointError, load_checkpoint
from vae.config import ConfigError, config_dir, help_text, register_configs, with_shared_defaults
from vae.data import DataNotFoundError
from vae.runlock import LOCK_NAME, RunLock, RunLocked
from vae.runtime import threads_per_parallel_job
from vae.schedules import DECAYING
from vae.step import TrainingDiverged
from vae.trainer import Interrupted, epoch_batches, run_runtime, set_up, train, train_step

log = logging.getLogger("vae.train")
# Keys a resumed run may change: where and how fast it runs, and how long. Anything else
# (the model, the loss, the data, `deterministic`) would make the continued run a different experiment.
RESUMABLE_OVERRIDES = {
    "resume",
    "epochs",
    "device",
    "threads",
    "precision",
    "compile",
    "channels_last",
    "log_every",
    "checkpoint_every_steps",
    "snapshot_every_epochs",
    "quality_every_epochs",
    "data.root",
    "on_nan",
}


def resume_config(run_dir: Path, composed: DictConfig, overrides: list[str]) -> tuple[DictConfig, dict]:
    """The run's own config and last checkpoint, with the few overrides a resume may make.

    `composed` is what Hydra built from the command line; an override that changes anything
    else (model, loss, data) is refused by name.
    """
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    original = OmegaConf.create(with_shared_defaults(checkpoint["config"]))
    keys = [override.split("=", 1)[0].lstrip("+~") for override in overrides]
    changed = [
        key
        for key in keys
        if key not in RESUMABLE_OVERRIDES and OmegaConf.select(composed, key) != OmegaConf.select(original, key)
    ]
    if changed:
        raise ConfigError(
            f"resume continues a run with its own config; these overrides would change it: {', '.join(changed)} "
            f"(a resumed run accepts only {', '.join(sorted(RESUMABLE_OVERRIDES - {'resume'}))})"
        )
    schedule, epochs = original.optim.schedule, composed.epochs
    if "epochs" in keys and epochs != original.epochs and schedule in DECAYING:
        raise ConfigError(
            f"epochs={epochs}: this run's {schedule} schedule decays its lr over the {original.epochs} epochs it was "
            "started with, so a run of another length would have taken other steps from the start; "
            "start a new run with the longer schedule instead"
        )
    for key in keys:
        if key in RESUMABLE_OVERRIDES and key != "resume":
            OmegaConf.update(original, key, OmegaConf.select(composed, key), merge=False)
    original.resume = str(run_dir)
    return original, checkpoint


USER_ERRORS = (ConfigError, DataNotFoundError, CheckpointError, TrainingDiverged, Interrupted)


# What a run directory holds when its run stopped before the first step: Hydra's config and log,
# the error, and the (empty) checkpoint folder.
UNSTARTED_RUN_ENTRIES = {".hydra", "train.log", "error.txt", "checkpoints", LOCK_NAME, "run.json"}


def remove_unstarted_run(run_dir: Path) -> bool:
    """Remove a new run's directory that never saved a checkpoint and holds nothing but what such a run writes
    (Hydra's config and log, the error, run.json, the first TensorBoard events, the empty checkpoint folder),
    and the empty folders above it (outputs/runs/) up to the working directory: a run without a checkpoint is
    not a run. False (and nothing removed) when it holds anything else: a checkpoint, a file of the user's."""
    import shutil

    entries = {path.name for path in run_dir.iterdir()} if run_dir.is_dir() else set()
    ours = {name for name in entries if name in UNSTARTED_RUN_ENTRIES or name.startswith("events.out.tfevents.")}
    checkpoints = run_dir / "checkpoints"
    if not entries or entries != ours or (checkpoints.is_dir() and any(checkpoints.iterdir())):
        return False
    shutil.rmtree(run_dir)
    cwd, parent = Path.cwd().resolve(), run_dir.resolve().parent
    while parent != cwd and cwd in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True


def _resume_dir_from_argv(argv: list[str]) -> Path | None:
    """The run a command line resumes; `resume=latest` is the newest run with a checkpoint (as run=latest in the
    tools), rewritten in argv to its directory and said on stderr."""
    from vae.cli import newest

    for i, word in enumerate(argv):
        if word.startswith("resume=") and word.split("=", 1)[1] not in ("", "null"):
            value = word.split("=", 1)[1]
            if value == "latest":
                found = newest("outputs/runs", "checkpoints/last.pt")
                if found is None:
                    sys.exit(f"error: resume=latest: no run under {Path('outputs/runs').resolve()} has a checkpoint")
                print(f"resume=latest: {found}", file=sys.stderr)
                argv[i] = f"resume={found}"
                return found
            return Path(value)
    return None


def _rewrite_argv() -> Path | None:
    """The command line for Hydra: `resume=` resolved (and its run's own directory), a torchrun rank other
    than 0 sent to a scratch folder. Returns the resumed run's directory, or None."""
    argv = sys.argv[1:]
    resume_dir = _resume_dir_from_argv(argv)
    sys.argv[1:] = argv
    if resume_dir is not None and not (resume_dir / "checkpoints" / "last.pt").is_file():
        sys.exit(f"error: resume={resume_dir}: no checkpoints/last.pt there to resume from")
    if distributed.from_environment().rank != 0:
        # Under torchrun only rank 0 writes into the run directory; the others log to a scratch folder.
        import tempfile

        sys.argv = [word for word in sys.argv if not word.startswith("hydra.run.dir=")]
        sys.argv += [f"hydra.run.dir={tempfile.mkdtemp(prefix='vae-rank-')}", "hydra.output_subdir=null"]
    elif resume_dir is not None:
        # Continue in the run's own directory and keep its original .hydra/ config.
        sys.argv += [f"hydra.run.dir={resume_dir}", "hydra.output_subdir=null"]
    return resume_dir


def _job(cfg: DictConfig, *, outer_lock: RunLock | None) -> float | None:
    """One run (or one sweep job) under Hydra: its threads, whether it resumes, its lock, then the training."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    launcher = hydra_cfg.launcher
    if cfg.threads == 0 and "joblib" in str(launcher.get("_target_", "")):
        # Jobs running side by side share the cores instead of each taking all of them.
        cfg.threads = threads_per_parallel_job(launcher.get("n_jobs"))
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    resume_from = Path(cfg.resume) if cfg.resume else None
    if resume_from is None and multirun and (run_dir / "checkpoints" / "last.pt").is_file():
        resume_from = run_dir  # a sweep continued in its own directory: this job ran before
    job_lock = None
    if outer_lock is None:  # a sweep's job, or a run in a fresh timestamped directory: its own lock
        job_lock = RunLock(run_dir)
        try:
            job_lock.__enter__()
        except RunLocked as error:
            if multirun:
                raise
            log.error("%s", error)
            sys.exit(2)
    try:
        overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.")]
        return _run_locked(cfg, run_dir, multirun=multirun, resume_from=resume_from, overrides=overrides)
    finally:
        if job_lock is not None:
            job_lock.__exit__(None, None, None)


def _run_locked(
    cfg: DictConfig, run_dir: Path, *, multirun: bool, resume_from: Path | None, overrides: list[str]
) -> float | None:
    """Train (or resume) into `run_dir`, holding its lock: every failure one line, error.txt where it helps."""
    checkpoint = None
    if resume_from is not None:
        try:
            cfg, checkpoint = resume_config(resume_from, cfg, overrides)
        except (ConfigError, CheckpointError) as error:  # refused: the run is left exactly as it was
            if multirun:
                raise
            log.error("%s", error)
            sys.exit(2)
    (run_dir / "error.txt").unlink(missing_ok=True)  # what a failed earlier attempt left
    try:
        if checkpoint is not None:
            metrics = train(cfg, run_dir, resume_from=checkpoint)
        else:
            metrics = train(cfg, run_dir)
    except USER_ERRORS as error:
        (run_dir / "error.txt").write_text(f"{type(error).__name__}: {error}\n")
        if multirun and not isinstance(error, Interrupted):
            raise  # Hydra records the failed job and goes on with the others (vae.report lists it)
        log.error("%s", error)
        if resume_from is None and remove_unstarted_run(run_dir):
            log.error("nothing was trained, so nothing is kept: %s is removed", run_dir)
        sys.exit(130 if isinstance(error, Interrupted) else 2)  # an interrupted sweep stops whole
    except Exception as error:  # anything else: one line here, the traceback in train.log and error.txt
        import traceback

        (run_dir / "error.txt").write_text(traceback.format_exc())
        _to_log_file_only(traceback.format_exc())
        if multirun:
            raise
        # the directory stays for its traceback; without checkpoints/last.pt, run=latest never picks it
        log.error("%s", describe_failure(error, cfg, run_dir))
        sys.exit(1)
    return metrics.get("val", {}).get("neg_elbo_nats")


def main() -> None:
    """`python -m vae.train ...`: the command line, rewritten for a resume or a torchrun rank, then Hydra."""
    import hydra

    if any(word in ("--help", "-h") for word in sys.argv[1:]):
        print(help_text())  # the groups a user chooses from, not the schema's internal ones
        return
    _rewrite_argv()
    register_configs()
    named = _named_run_dir(sys.argv[1:]) if distributed.from_environment().rank == 0 else None
    lock = RunLock(named) if named is not None and not _is_multirun(sys.argv[1:]) else None
    created = named is not None and not named.exists()
    if lock is not None:  # before Hydra writes .hydra/ or train.log into a directory another process is writing
        try:
            lock.__enter__()
        except RunLocked as error:
            sys.exit(f"error: {error}")

    def run(cfg: DictConfig) -> float | None:
        return _job(cfg, outer_lock=lock)

    # Hydra names the job after the task function's module: "train", so the log is train.log and
    # hydra.job.name is train.
    run.__module__ = "vae.train"
    try:
        hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(run)()
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
            if created and named.is_dir() and {p.name for p in named.iterdir()} == {LOCK_NAME}:
                (named / LOCK_NAME).unlink()  # refused before Hydra wrote anything: leave nothing behind
                named.rmdir()


def describe_failure(error: BaseException, cfg, run_dir: Path) -> str:
    """One line for a failure that is not a refusal: its cause and what to do (the traceback is in error.txt)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    where = f"(the traceback is in {run_dir / 'error.txt'})"
    if isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text:
        return (
            f"out of memory ({type(error).__name__}: {text[:200]}) with batch_size={cfg.batch_size} and "
            f"eval_batch_size={cfg.eval_batch_size}: lower them {where}"
        )
    return f"{type(error).__name__}: {text[:300]} {where}"


def _to_log_file_only(text: str) -> None:
    """The traceback into the run's train.log (Hydra's file handler), not onto the terminal."""
    record = logging.LogRecord("vae.train", logging.ERROR, __file__, 0, "%s", (text,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _named_run_dir(argv: list[str]) -> Path | None:
    """The run directory a command line names (hydra.run.dir=, the last one wins), else None (a timestamp)."""
    named = [word.split("=", 1)[1] for word in argv if word.startswith("hydra.run.dir=")]
    return Path(named[-1]) if named else None


def _is_multirun(argv: list[str]) -> bool:
    return any(word in ("-m", "--multirun") for word in argv)


__all__ = ["Interrupted", "epoch_batches", "main", "resume_config", "run_runtime", "set_up", "train", "train_step"]

if __name__ == "__main__":
    main()

"""The README's times, measured on the machine at hand and written to a record (timings.json beside this script).

    python experiments/timings/run.py --data-root <MNIST dir> [--out <record .json>] [--with-tests]
    python experiments/timings/run.py --quick --out /tmp/t.json       # every step at toy sizes (checks the script)

Each step is the README's own command, run as a user types it (a subprocess from the repository root, in a
scratch folder for its outputs), timed by the wall clock: one epoch of the lecture model on MNIST (and its
epoch_seconds), one epoch of data=synthetic, TensorBoard's start, vae.explore, vae.generate n=64,
vae.quality (10,000 samples), vae.evaluate iwae_k=100 on the whole test split, vae.serve's start, the 4-job 1-epoch sweep and its report,
and with --with-tests `make test`. Measure on idle cores: the script records the load average before and
after, and refuses to start (unless --allow-load) when the 1-minute load average is above 0.5 per core.
The record holds each step's command and seconds, the CPU (model, vendor/family/model id, native bf16), the
threads, the commit and the date. The README's times are that file's: `--print-readme` prints the text of
each (`readme_cells`), and tests/test_timings.py holds the README to the committed record.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit, physical_cores  # noqa: E402


def timed(command: list[str], *, cwd: Path, timeout: float, until: str | None = None) -> dict:
    """Run a command; with `until`, time until that text appears in its output, then stop it (a server)."""
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VAE_PROGRESS_INTERVAL_S": "600"}
    if until is None:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
        seconds = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"error: {' '.join(command)} failed:\n{(done.stdout + done.stderr)[-2000:]}")
        return {"seconds": seconds}
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in process.stdout:
            if until in line:
                return {"seconds": time.monotonic() - start}
            if time.monotonic() - start > timeout:
                break
        raise SystemExit(f"error: {' '.join(command)} never printed {until!r}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def duration(seconds: float) -> str:
    """A wall time as the README writes it: "0.7 s", "35 s", "1 min 53 s", "1 h 4 min"."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {round(whole % 3600 / 60)} min"


# The README's workflow table: the row whose command cell starts with this text, and the step that times it.
README_ROWS = {
    "`python -m vae.train latent_dim=2 kl_weight=1e-3": "train_one_epoch",
    "`python -m vae.train data=synthetic epochs=1`": "train_synthetic",
    "`tensorboard --logdir outputs`": "tensorboard_start",
    "`python -m vae.explore run=latest`": "explore",
    "`python -m vae.generate run=latest n=64`": "generate",
    "`python -m vae.evaluate run=latest iwae_k=100`": "evaluate",
    "`python -m vae.quality run=latest`": "quality",
    "`python -m vae.serve run=latest`": "serve_start",
    "`python -m vae.train -m kl_weight=0,1e-3 latent_dim=2,16 epochs=1": "sweep_4_jobs",
    "`python -m vae.report sweep=latest`": "report",
}
DEFAULT_EPOCHS = 10  # conf/config.yaml's epochs: what `make train` runs


def readme_cells(record: dict) -> dict[str, str]:
    """The text the README gives each timed step (keyed by step), made from the record alone."""
    steps = record["steps"]
    seconds = {name: step["seconds"] for name, step in steps.items()}
    epoch = steps["train_one_epoch"]["epoch_seconds"]
    # A run's wall time past its epochs (start-up, data, the last validation and pictures), once per run.
    overhead = seconds["train_one_epoch"] - epoch
    cells = {name: duration(value) for name, value in seconds.items()}
    cells["train_one_epoch"] = (
        f"{duration(epoch)} an epoch ({duration(seconds['train_one_epoch'])} for `epochs=1`; "
        f"the default {DEFAULT_EPOCHS} epochs: about {round((overhead + DEFAULT_EPOCHS * epoch) / 60)} min)"
    )
    cells["tensorboard_start"] = f"{duration(seconds['tensorboard_start'])} to start"
    cells["serve_start"] = f"{duration(seconds['serve_start'])} to start"
    cells["evaluate"] = f"{duration(seconds['evaluate'])} (10,000 images)"
    cells["sweep_4_jobs"] = f"{duration(seconds['sweep_4_jobs'])} (4 jobs of 1 epoch)"
    cells["quality"] = f"{duration(seconds['quality'])} (10,000 samples; `experiments/quality/speed.json` splits it)"
    if "make_test" in seconds:
        cells["make_test"] = f"{duration(seconds['make_test'])} here"
    return cells


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", help="MNIST's folder (not needed with --quick)")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "timings" / "timings.json")
    parser.add_argument("--quick", action="store_true", help="toy sizes on data=synthetic: checks the script only")
    parser.add_argument("--with-tests", action="store_true", help="also time `make test`")
    parser.add_argument("--allow-load", action="store_true", help="measure even on busy cores (the record says so)")
    parser.add_argument("--print-readme", action="store_true", help="print the README's text of each step of --out")
    args = parser.parse_args(argv)
    if args.print_readme:
        record = json.loads(args.out.read_text())
        for name, cell in readme_cells(record).items():
            print(f"{name}: {cell}")
        return
    if not args.quick and not args.data_root:
        parser.error("--data-root is required (or --quick)")
    load_before = os.getloadavg()[0]
    cores = physical_cores()
    if load_before > 0.5 * cores and not args.allow_load and not args.quick:
        parser.error(f"the 1-minute load average is {load_before:.2f} on {cores} cores: measure on idle cores")
    python = sys.executable
    data = ["data=synthetic", "data.num_train=512"] if args.quick else ["data=mnist", f"data.root={args.data_root}"]
    tiny = ["model.channels=[8,16,16,16]", "model.hidden_dim=16"] if args.quick else []
    steps: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vae-timings-") as scratch:
        work = Path(scratch)
        run = work / "outputs" / "runs" / "lecture"

        def step(name: str, command: list[str], **options) -> None:
            result = timed(command, cwd=work, timeout=options.pop("timeout", 7200), **options)
            words = [w if not w.startswith("data.root=") else "data.root=<MNIST dir>" for w in command[1:]]
            steps[name] = {"command": " ".join(words)} | result
            print(f"{name}: {result['seconds']:.1f} s", flush=True)

        train = ["-m", "vae.train", "latent_dim=2", "kl_weight=1e-3", "epochs=1", *data, *tiny, f"hydra.run.dir={run}"]
        step("train_one_epoch", [python, *train])
        steps["train_one_epoch"]["epoch_seconds"] = json.loads((run / "metrics.json").read_text())["history"][0][
            "epoch_seconds"
        ]
        synthetic = work / "outputs" / "runs" / "synthetic"
        quick = ["data.num_train=512"] if args.quick else []
        step(
            "train_synthetic",
            [python, "-m", "vae.train", "data=synthetic", "epochs=1", *quick, *tiny, f"hydra.run.dir={synthetic}"],
        )
        tensorboard = shutil.which("tensorboard") or str(Path(python).parent / "tensorboard")
        step("tensorboard_start", [tensorboard, "--logdir", "outputs", "--port", "0"], until="http://", timeout=120)
        step("explore", [python, "-m", "vae.explore", f"run={run}"])
        step("generate", [python, "-m", "vae.generate", f"run={run}", "n=64"])
        # 10,000 prior samples, the reconstructions and the floor, each against the test split (MNIST features)
        step(
            "quality", [python, "-m", "vae.quality", f"run={run}", *(["features=mnist", "n=300"] if args.quick else [])]
        )
        evaluate = [python, "-m", "vae.evaluate", f"run={run}", "iwae_k=10" if args.quick else "iwae_k=100"]
        step("evaluate", evaluate + (["max_images=64"] if args.quick else []))
        step("serve_start", [python, "-m", "vae.serve", f"run={run}", "port=0"], until="http://127.0.0.1", timeout=300)
        sweep = work / "outputs" / "multirun" / "sweep"
        grid = ["kl_weight=0,1e-3", "latent_dim=2,16", "epochs=1", *data, *tiny, f"hydra.sweep.dir={sweep}"]
        step("sweep_4_jobs", [python, "-m", "vae.train", "-m", *grid])
        step("report", [python, "-m", "vae.report", f"sweep={sweep}"])
        if args.with_tests:
            step("make_test", ["make", "-C", str(REPO), "test"], timeout=3600)
    record = {
        "steps": steps,
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "cores": cores,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "quick": args.quick,
        "commit": git_commit(REPO)["commit"],
        "date": time.strftime("%Y-%m-%d"),
        "python": python,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

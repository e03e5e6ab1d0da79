"""A local sweep on a CPU: one job with every core's thread, or one job per core side by side?

    python experiments/sweep_kl_latent/parallel.py [--seconds 20] [--repeats 2] [--out parallel.json]

Each worker is a fresh process running the trainer's own training step (experiments/bench's
project step: the lecture's conv model, which the sweep's jobs share but for latent_dim, this
machine's default runtime settings, experiment=sweep_kl_latent's batch size) on synthetic images, timed for --seconds after a warm-up.
"one job" is one worker with `cores` threads, as `python -m vae.train -m ...` runs a sweep;
"side by side" is `cores` workers with one thread each, started together, as
`hydra/launcher=joblib hydra.launcher.n_jobs=<cores>` runs it (the trainer then gives each job
cores / n_jobs threads). The two alternate --repeats times in one run and the ratio of their
summed images per second is the answer; training steps only (validation, the data path and
checkpoints are a few per cent of an epoch and scale the same way).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(threads: int, seconds: float, batch_size: int) -> float:
    """Images per second of the trainer's step in this process with `threads` threads."""
    import torch

    sys.path.insert(0, str(HERE.parent / "bench"))
    from bench import project_step_factory, steps_per_second

    from vae.runtime import apply_runtime, resolve_runtime

    runtime = resolve_runtime(
        device="cpu", threads=threads, precision="auto", compile="auto", channels_last="auto", deterministic=False
    )
    apply_runtime(runtime, seed=0)
    images = torch.rand(4096, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    step = project_step_factory(images, batch_size, runtime)
    return batch_size * steps_per_second(step, seconds=seconds, warmup=5)


def launch(workers: int, threads: int, seconds: float, batch_size: int) -> list[float]:
    """Start `workers` processes at once, each with `threads` threads; their images per second."""
    command = [sys.executable, __file__, "--worker", str(threads), "--seconds", str(seconds)]
    command += ["--batch-size", str(batch_size)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    rates = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"error: a worker ({threads} threads) failed with exit code {process.returncode}")
        rates.append(float(out.strip().splitlines()[-1]))
    return rates


def measure(cores: int, seconds: float, repeats: int, batch_size: int) -> dict:
    one, side_by_side = [], []
    for _ in range(repeats):  # alternate, so drift in the machine's speed hits both
        one.append(sum(launch(1, cores, seconds, batch_size)))
        side_by_side.append(sum(launch(cores, 1, seconds, batch_size)))
    from vae.runtime import cpu_model, cpu_supports_bf16

    return {
        "cpu": cpu_model(),
        "native_bf16": cpu_supports_bf16(),
        "cores": cores,
        "batch_size": batch_size,
        "seconds_per_window": seconds,
        "one_job_images_per_second": one,
        "side_by_side_images_per_second": side_by_side,
        "ratio_side_by_side_to_one": statistics.median(side_by_side) / statistics.median(one),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=0, help="0: experiment=sweep_kl_latent's")
    parser.add_argument("--cores", type=int, default=0, help="0: this machine's physical cores")
    parser.add_argument("--out", type=Path, default=HERE / "parallel.json")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(worker(args.worker, args.seconds, args.batch_size))
        return
    from vae.config import compose_dict
    from vae.runtime import physical_cores

    args.batch_size = args.batch_size or compose_dict(["experiment=sweep_kl_latent"])["batch_size"]
    cores = args.cores or physical_cores()
    if cores < 2:
        raise SystemExit(f"error: --cores {cores}: side by side needs at least 2 cores")
    result = measure(cores, args.seconds, args.repeats, args.batch_size)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"{result['cpu']} (native bf16: {result['native_bf16']}), {cores} cores: one job x {cores} threads "
        f"{statistics.median(result['one_job_images_per_second']):.0f} img/s, {cores} jobs x 1 thread "
        f"{statistics.median(result['side_by_side_images_per_second']):.0f} img/s in all: "
        f"ratio {result['ratio_side_by_side_to_one']:.2f}"
    )


if __name__ == "__main__":
    main()

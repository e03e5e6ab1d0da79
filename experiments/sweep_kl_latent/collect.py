"""Copy finished sweep jobs into the repository, without checkpoints, so `vae.report` can rebuild the study.

    python experiments/sweep_kl_latent/collect.py --out experiments/sweep_kl_latent/converged \
        outputs/multirun/sweep_kl_latent_6ep outputs/multirun/sweep_kl_latent_6ep_seeds
    python -m vae.report sweep=experiments/sweep_kl_latent/converged

Jobs are renumbered 0, 1, ... in the order given (several sweeps become one report); each keeps
`.hydra/config.yaml`, `.hydra/overrides.yaml`, `metrics.json`, `run.json`, `images/*.png` and its
evaluations and sample-quality results (`evals/*.json`).
`sources.json` maps every new job to the sweep and job it came from. The data root, a path on the
machine that ran the sweep, is written as `<MNIST dir>`.

A study that runs over several sessions grows by collecting into the directory it already has:

    python experiments/sweep_kl_latent/collect.py --out experiments/sweep_kl_latent/epochs48 \
        experiments/sweep_kl_latent/epochs48 outputs/multirun/<today's sweep>

A collected directory given as a source keeps its jobs' original sources; a job whose settings
equal another's (the same config but for the data root and how it ran: threads, device, ...) is
refused, so collecting a sweep twice, or a cell run again on another machine, cannot count twice.

`--device cpu` (or `cuda`) keeps only the jobs that ran on that kind of device (run.json's
`runtime.device`), so one study's table can come from one device and the other device's jobs
go to a device check:

    python experiments/sweep_kl_latent/collect.py --out <check> --device cuda <check> <study>
    python experiments/sweep_kl_latent/collect.py --out <study> --device cpu <study> <new sweeps>
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from vae.report import job_dirs, read_job

KEPT = (".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.json", "run.json")
DATA_ROOT_PLACEHOLDER = "<MNIST dir>"


# How and where a job ran, not what it trained: two jobs equal but for these are one job twice.
EXECUTION_KEYS = ("device", "threads", "compile", "channels_last", "log_every", "checkpoint_every_steps", "resume")


def _settings(job: Path) -> str:
    """The job's config as text without the data root and the execution keys."""
    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    if OmegaConf.select(config, "data.root", default=None) is not None:
        config.data.root = None
    for key in EXECUTION_KEYS:
        config.pop(key, None)
    return OmegaConf.to_yaml(config)


def _origin(job: Path) -> dict:
    """Where a job came from: its sweep and number, or, for a collected directory, what its sources.json says."""
    sources = job.parent / "sources.json"
    if sources.is_file():
        for entry in json.loads(sources.read_text()):
            if str(entry["job"]) == job.name:
                return {"sweep": entry["sweep"], "source_job": entry["source_job"]}
    return {"sweep": job.parent.name, "source_job": job.name}


def job_device(job: Path) -> str:
    """The kind of device a job ran on, from its run.json (`cuda:1` -> `cuda`)."""
    try:
        return json.loads((job / "run.json").read_text())["runtime"]["device"].split(":")[0]
    except (OSError, KeyError, ValueError) as error:
        raise SystemExit(f"error: {job}/run.json does not say which device the job ran on ({error})") from None


def collect(sources: list[Path], out: Path, *, images: bool = True, device: str | None = None) -> list[dict]:
    """Copy every finished job of `sources` into `out`/<n>; refuses unfinished jobs (continue the sweep first)
    and jobs collected twice. `out` may be one of the sources: the directory then grows. With `device`,
    only the jobs that ran on that kind of device (`cpu`, `cuda`) are kept."""
    jobs = [job for source in sources for job in job_dirs(source)]
    if device is not None:
        jobs = [job for job in jobs if job_device(job) == device]
        if not jobs:
            raise SystemExit(f"error: no job of {', '.join(map(str, sources))} ran on device {device!r}")
    unfinished = [str(job) for job in jobs if read_job(job)["status"] != "ok"]
    if unfinished:
        raise SystemExit(f"error: unfinished jobs (continue their sweep first): {', '.join(unfinished)}")
    seen: dict[str, Path] = {}
    for job in jobs:
        settings = _settings(job)
        if settings in seen:
            raise SystemExit(f"error: {job} has the same settings as {seen[settings]} (collected twice?)")
        seen[settings] = job
    origins = [_origin(job) for job in jobs]
    final, out = out, out.with_name(out.name + ".collecting")
    if out.exists():
        shutil.rmtree(out)
    mapping = []
    for number, job in enumerate(jobs):
        target = out / str(number)
        data_root = OmegaConf.select(OmegaConf.load(job / ".hydra" / "config.yaml"), "data.root", default=None)
        for name in KEPT:
            text = (job / name).read_text()
            if data_root and data_root != DATA_ROOT_PLACEHOLDER:
                text = text.replace(data_root, DATA_ROOT_PLACEHOLDER)
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_text(text)
        if images:
            (target / "images").mkdir()
            for image in sorted((job / "images").glob("*.png")):
                shutil.copy2(image, target / "images" / image.name)
        for result in sorted((job / "evals").glob("*.json")):
            (target / "evals").mkdir(exist_ok=True)
            shutil.copy2(result, target / "evals" / result.name)
        mapping.append({"job": number, **origins[number]})
    (out / "sources.json").write_text(json.dumps(mapping, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    out.rename(final)
    return mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--no-images", action="store_true", help="configs and metrics only (figures then need a report run first)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="keep only the jobs that ran on this kind of device (run.json)"
    )
    parser.add_argument("sweeps", type=Path, nargs="+")
    args = parser.parse_args()
    mapping = collect(args.sweeps, args.out, images=not args.no_images, device=args.device)
    print(f"collected {len(mapping)} jobs into {args.out}")


if __name__ == "__main__":
    main()

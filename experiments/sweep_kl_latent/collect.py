"""Copy finished sweep jobs into the repository, without checkpoints, so `vae.report` can rebuild the study.

    python experiments/sweep_kl_latent/collect.py --out experiments/sweep_kl_latent/converged \
        outputs/multirun/sweep_kl_latent_6ep outputs/multirun/sweep_kl_latent_6ep_seeds
    python -m vae.report sweep=experiments/sweep_kl_latent/converged

Jobs are renumbered 0, 1, ... in the order given (several sweeps become one report); each keeps
`.hydra/config.yaml`, `.hydra/overrides.yaml`, `metrics.json`, `run.json` and `images/*.png`.
`sources.json` maps every new job to the sweep and job it came from. The data root, a path on the
machine that ran the sweep, is written as `<MNIST dir>`.
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


def collect(sources: list[Path], out: Path, *, images: bool = True) -> list[dict]:
    """Copy every finished job of `sources` into `out`/<n>; refuses unfinished jobs (continue the sweep first)."""
    jobs = [job for source in sources for job in job_dirs(source)]
    unfinished = [str(job) for job in jobs if read_job(job)["status"] != "ok"]
    if unfinished:
        raise SystemExit(f"error: unfinished jobs (continue their sweep first): {', '.join(unfinished)}")
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
        mapping.append({"job": number, "sweep": job.parent.name, "source_job": job.name})
    (out / "sources.json").write_text(json.dumps(mapping, indent=1) + "\n")
    return mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--no-images", action="store_true", help="configs and metrics only (figures then need a report run first)"
    )
    parser.add_argument("sweeps", type=Path, nargs="+")
    args = parser.parse_args()
    mapping = collect(args.sweeps, args.out, images=not args.no_images)
    print(f"collected {len(mapping)} jobs into {args.out}")


if __name__ == "__main__":
    main()

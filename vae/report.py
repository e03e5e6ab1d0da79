"""`python -m vae.report sweep=<sweep dir>`: a table, a CSV, a rate-distortion plot and prior samples for a sweep.

Reads each job directory's `.hydra/config.yaml`, `metrics.json` and (if present) `eval.json`;
a job without metrics is listed as failed, with the reason from its `error.txt` when there is one.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vae.checkpoint import CheckpointError
from vae.cli import MISSING, parse_args
from vae.figures import plt, save
from vae.runs import load_run

COLUMNS = [
    "job",
    "status",
    "kl_weight",
    "latent_dim",
    "reduction",
    "beta_effective",
    "epochs_done",
    "val_loss",
    "val_neg_elbo_nats",
    "val_rec_nats",
    "val_kl_nats",
    "val_mean_sigma",
    "test_neg_elbo_nats",
    "test_iwae_nll_nats",
    "active_units",
    "binarize",
    "error",
]


@dataclass
class ReportArgs:
    """python -m vae.report sweep=<sweep dir> [samples=16]"""

    sweep: str = MISSING
    samples: int = 16


def read_job(job_dir: Path) -> dict:
    """One row of the report: the job's settings and final numbers, or why it failed."""
    row: dict = {"job": job_dir.name, "status": "failed", "error": ""}
    config_path = job_dir / ".hydra" / "config.yaml"
    if config_path.is_file():
        config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
        row.update(
            kl_weight=config.get("kl_weight"),
            latent_dim=config.get("latent_dim"),
            reduction=config.get("reduction"),
            binarize=config.get("data", {}).get("binarize"),
            epochs_planned=config.get("epochs"),
        )
    metrics_path = job_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        val = metrics["val"]
        row.update(
            epochs_done=metrics["epoch"],
            val_loss=val["loss"],
            val_neg_elbo_nats=val["neg_elbo_nats"],
            val_rec_nats=val.get("rec_nats"),
            val_kl_nats=val.get("kl_nats"),
            val_mean_sigma=val.get("mean_sigma"),
            beta_effective=val.get("beta_effective"),
        )
        finished = metrics["epoch"] >= (row.get("epochs_planned") or metrics["epoch"])
        row["status"] = "ok" if finished else "incomplete"
    eval_path = job_dir / "eval.json"
    if eval_path.is_file():
        results = json.loads(eval_path.read_text())
        row.update(
            test_neg_elbo_nats=results["neg_elbo_nats"],
            test_iwae_nll_nats=results["iwae_nll_nats"],
            active_units=results["active_units"],
        )
    if (job_dir / "error.txt").is_file():
        row["error"] = (job_dir / "error.txt").read_text().strip().splitlines()[0]
        row["status"] = "failed"
    elif row["status"] == "failed":
        row["error"] = "no metrics.json (killed, or failed before its first epoch ended)"
    return row


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Hydra's job directories (0, 1, ...) in job order."""
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _format(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_table(rows: list[dict], sweep_dir: Path) -> None:
    """report.md and report.csv, one row per job, failed jobs included."""
    with open(sweep_dir / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        "Nats per image. `val_neg_elbo_nats` is the negative ELBO with beta 1 (summed BCE + KL); on gray-level",
        "images it is a bound under BCE on gray levels, not a likelihood. `beta_effective` is the KL weight in",
        "per-image sums. Rate = `val_kl_nats`, distortion = `val_rec_nats`.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_format(row.get(column)) for column in COLUMNS) + " |" for row in rows]
    (sweep_dir / "report.md").write_text("\n".join(lines) + "\n")


def rate_distortion_figure(rows: list[dict]):
    """KL (rate) against reconstruction (distortion) in nats, a curve per latent_dim, points labelled by kl_weight."""
    fig, ax = plt.subplots(figsize=(8, 6))
    done = [row for row in rows if row.get("val_kl_nats") is not None]
    for latent_dim in sorted({row["latent_dim"] for row in done}):
        points = sorted((row for row in done if row["latent_dim"] == latent_dim), key=lambda row: row["kl_weight"])
        rates = [row["val_kl_nats"] for row in points]
        distortions = [row["val_rec_nats"] for row in points]
        ax.plot(rates, distortions, marker="o", label=f"latent_dim {latent_dim}")
        for row, rate, distortion in zip(points, rates, distortions, strict=True):
            ax.annotate(
                f"λ={row['kl_weight']:g}", (rate, distortion), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlabel("rate: KL(q(z|x) || p(z)), nats per image")
    ax.set_ylabel("distortion: reconstruction BCE, nats per image")
    ax.set_title("Rate-distortion over the sweep (validation split)")
    if done and max(row["val_kl_nats"] for row in done) > 100 * max(1e-3, min(row["val_kl_nats"] for row in done)):
        ax.set_xscale("symlog", linthresh=1.0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def samples_figure(rows: list[dict], sweep_dir: Path, *, num_samples: int):
    """Prior samples of every finished job, one panel each, laid out latent_dim x kl_weight."""
    from torchvision.utils import make_grid

    done = [row for row in rows if row["status"] in ("ok", "incomplete")]
    latent_dims = sorted({row["latent_dim"] for row in done})
    kl_weights = sorted({row["kl_weight"] for row in done})
    fig, axes = plt.subplots(
        len(latent_dims) or 1,
        len(kl_weights) or 1,
        figsize=(2.2 * max(1, len(kl_weights)), 2.4 * max(1, len(latent_dims))),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for row in done:
        try:
            model = load_run(sweep_dir / row["job"]).model
        except CheckpointError:
            continue
        images = model.sample(num_samples, generator=torch.Generator().manual_seed(0))
        sheet = make_grid(images, nrow=int(math.ceil(math.sqrt(num_samples))), padding=1, pad_value=0.5)
        ax = axes[latent_dims.index(row["latent_dim"])][kl_weights.index(row["kl_weight"])]
        ax.imshow((sheet.permute(1, 2, 0) if sheet.shape[0] == 3 else sheet[0]).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"L={row['latent_dim']} λ={row['kl_weight']:g}", fontsize=8)
    fig.suptitle("Samples from the prior, per job")
    fig.tight_layout()
    return fig


def report(sweep_dir: Path, *, num_samples: int = 16) -> list[dict]:
    """Write report.md, report.csv, rate_distortion.png and samples.png into the sweep directory."""
    rows = [read_job(job) for job in job_dirs(sweep_dir)]
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no job directories (0, 1, ...): is it a sweep directory?")
    write_table(rows, sweep_dir)
    save(rate_distortion_figure(rows), sweep_dir / "rate_distortion.png")
    save(samples_figure(rows, sweep_dir, num_samples=num_samples), sweep_dir / "samples.png")
    return rows


def main(argv=None) -> list[dict]:
    args = parse_args(ReportArgs, argv, usage=ReportArgs.__doc__)
    sweep_dir = Path(args.sweep)
    if not sweep_dir.is_dir():
        raise SystemExit(f"error: sweep directory {sweep_dir} does not exist")
    try:
        rows = report(sweep_dir, num_samples=args.samples)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    failed = [row["job"] for row in rows if row["status"] == "failed"]
    print(
        f"{len(rows)} jobs ({len(failed)} failed{': ' + ', '.join(failed) if failed else ''}); wrote report.md, report.csv, "
        f"rate_distortion.png, samples.png in {sweep_dir}"
    )
    return rows


if __name__ == "__main__":
    main()

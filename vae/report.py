"""`python -m vae.report sweep=<sweep dir>`: a table, a CSV, a rate-distortion plot, prior samples and (latent_dim 2)
the decoded latent grids for a sweep; report.md shows the figures, and the command prints every file it wrote.

Reads each job directory's `.hydra/config.yaml`, `metrics.json` and (if present) its test evaluation:
the newest in `evals/` (of `iwae_k=` when given), else `eval.json` when that is one; the `eval` column
names the file read. A job without metrics is listed as failed, with the reason from its `error.txt`
when there is one.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vae.checkpoint import CheckpointError
from vae.cli import MISSING, check, parse_args
from vae.config import register_resolvers
from vae.figures import plt, save
from vae.metrics import report_columns, report_format, report_values
from vae.progress import progress
from vae.runs import describe_eval, entropy_floor_nats, find_eval, load_run

# report.csv's and report.md's columns around the metrics' (vae.metrics): the job's settings before, the
# test evaluation's other fields, the job's machine and clock and its error after.
SETTING_COLUMNS = ["job", "status", "kl_weight", "latent_dim", "seed", "reduction", "beta_effective", "epochs_done"]
OTHER_COLUMNS = ["active_units", "eval", "binarize", "device", "threads", "train_minutes", "error"]
# Sample quality, from the job's newest `python -m vae.quality run=<job>` result (evals/quality_*.json): its prior
# samples' and reconstructions' FID, precision and recall, the floor's FID, and the space and file they come from.
QUALITY_COLUMNS = [
    "sample_fid",
    "sample_precision",
    "sample_recall",
    "recon_fid",
    "floor_fid",
    "quality_features",
    "quality_n",
    "quality",
]


def columns(rows: list[dict] = ()) -> list[str]:
    """report.csv's and report.md's columns: the settings, the metrics' `val_*` columns (the convergence hint
    `val_loss_gain_last_quarter` after `val_loss`), the `val_*` columns of the jobs' objectives' own terms
    (metrics.json's `objective_terms`, in the order first met in `rows`) and `test_*` columns, then the others."""
    val = report_columns("val")
    if "val_loss" in val:
        val.insert(val.index("val_loss") + 1, "val_loss_gain_last_quarter")
    objective = list(dict.fromkeys(column for row in rows for column in row.get("objective_columns", ())))
    return [*SETTING_COLUMNS, *val, *objective, *report_columns("test"), *QUALITY_COLUMNS, *OTHER_COLUMNS]


QUALITY_NUMBERS = ["sample_fid", "sample_precision", "sample_recall", "recon_fid"]


def cell_metrics() -> list[str]:
    """The columns averaged over a cell's seeds: the metrics' `val_*` columns and the sample-quality numbers."""
    return [*report_columns("val"), *QUALITY_NUMBERS]


@dataclass
class ReportArgs:
    """python -m vae.report sweep=<sweep dir> [samples=16] [iwae_k=0]"""

    sweep: str = MISSING
    samples: int = 16
    iwae_k: int = 0  # the test evaluations read: of this k (0 = each job's newest test evaluation)


def read_job(job_dir: Path, *, iwae_k: int | None = None) -> dict:
    """One row of the report: the job's settings and final numbers, or why it failed.

    The test columns come from the job's newest test evaluation (of `iwae_k` when given); `eval` names its file.
    """
    row: dict = {"job": job_dir.name, "status": "failed", "error": ""}
    config_path = job_dir / ".hydra" / "config.yaml"
    if config_path.is_file():
        register_resolvers()
        config = OmegaConf.load(config_path)
        config.data.root = None  # may be an environment variable's default; the report never reads data
        config = OmegaConf.to_container(config, resolve=True)
        row.update(
            kl_weight=config.get("kl_weight"),
            latent_dim=config.get("latent_dim"),
            seed=config.get("seed"),
            reduction=config.get("reduction"),
            data=config.get("data", {}).get("name"),
            binarize=config.get("data", {}).get("binarize"),
            epochs_planned=config.get("epochs"),
        )
    metrics_path = job_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        val = metrics["val"]
        row.update(epochs_done=metrics["epoch"], beta_effective=val.get("beta_effective"), **report_values("val", val))
        objective_terms = {f"val_{name}": val.get(name) for name in metrics.get("objective_terms", [])}
        row.update(objective_terms, objective_columns=tuple(objective_terms))
        row["val_loss_gain_last_quarter"] = last_quarter_gain(metrics.get("history", []))
        row["train_minutes"] = train_minutes(metrics.get("history", []))
        finished = metrics["epoch"] >= (row.get("epochs_planned") or metrics["epoch"])
        row["status"] = "ok" if finished else "incomplete"
    run_path = job_dir / "run.json"
    if run_path.is_file():
        runtime = json.loads(run_path.read_text()).get("runtime", {})
        row.update(device=runtime.get("device"), threads=runtime.get("threads"))
    evaluation = find_eval(job_dir, split="test", iwae_k=iwae_k or None)
    if evaluation is not None:
        results = evaluation.results
        row.update(
            **report_values("test", results),
            active_units=results["active_units"],
            eval=evaluation.path.relative_to(job_dir).as_posix(),
            eval_settings=describe_eval(results),
        )
    row.update(read_quality(job_dir))
    if (job_dir / "error.txt").is_file():
        row["error"] = (job_dir / "error.txt").read_text().strip().splitlines()[0]
        row["status"] = "failed"
    elif row["status"] == "failed":
        row["error"] = "no metrics.json (killed, or failed before its first epoch ended)"
    return row


def read_quality(job_dir: Path) -> dict:
    """The QUALITY_COLUMNS of a job's newest sample-quality result (test split first), or {} when it has none."""
    found = sorted((job_dir / "evals").glob("quality_*.json"), key=lambda path: path.stat().st_mtime, reverse=True)
    results = [(path, json.loads(path.read_text())) for path in found]
    results = [(path, result) for path, result in results if not result.get("samples_only")]  # no recon, no floor
    results.sort(key=lambda item: item[1].get("split") != "test")  # stable: the newest test result first
    if not results:
        return {}
    path, result = results[0]
    return {
        "sample_fid": result["samples"]["fid"],
        "sample_precision": result["samples"]["precision"],
        "sample_recall": result["samples"]["recall"],
        "recon_fid": result["reconstructions"]["fid"],
        "floor_fid": result.get("floor", {}).get("fid"),
        "quality_features": result["features"],
        "quality_n": result["n"],
        "quality": path.relative_to(job_dir).as_posix(),
        "quality_split": result["split"],
    }


def last_quarter_gain(history: list[dict]) -> float | None:
    """Relative val_loss drop over the run's last quarter of epochs (epoch E - ceil(E/4) to E): a convergence hint."""
    if len(history) < 2:
        return None
    start = history[len(history) - math.ceil(len(history) / 4) - 1]["val_loss"]
    return (start - history[-1]["val_loss"]) / start


def train_minutes(history: list[dict]) -> float | None:
    """The job's own clock, training and validation, summed over its epochs: resumed jobs count every session's part."""
    seconds = [record["epoch_seconds"] for record in history if "epoch_seconds" in record]
    return sum(seconds) / 60 if seconds else None


def wall_time_line(rows: list[dict]) -> str:
    """How long the finished jobs took, summed: the sweep's cost in job-hours, whatever ran side by side,
    split by device where the jobs ran on several (a GPU's job-hour is not a CPU's)."""
    finished = [row for row in rows if row["status"] == "ok" and row.get("train_minutes") is not None]
    by_device: dict = {}
    for row in finished:
        by_device.setdefault(row.get("device"), []).append(row)

    def cost(jobs: list[dict]) -> tuple[float, str]:
        threads = sorted({row["threads"] for row in jobs if row.get("threads") is not None})
        per_thread = f"at {' or '.join(map(str, threads))} thread(s) per job" if threads else ""
        return sum(row["train_minutes"] for row in jobs) / 60, per_thread

    hours, per_thread = cost(finished)
    if len(by_device) > 1:
        parts = []
        for device, jobs in sorted(by_device.items(), key=lambda item: str(item[0])):
            device_hours, device_threads = cost(jobs)
            parts.append(
                f"{device_hours:.2f} on {device or 'an unrecorded device'} ({len(jobs)} jobs, {device_threads})"
            )
        where = ": " + "; ".join(parts)
    else:
        device = next(iter(by_device), None)
        where = (f" on {device}" if device else "") + (f", {per_thread}" if per_thread else "")
    return (
        f"{len(finished)} of {len(rows)} jobs finished; their epochs took {hours:.2f} job-hours in all{where} "
        "(`train_minutes`: each job's own clock; jobs run side by side overlap in wall time)."
    )


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Hydra's job directories (0, 1, ...) in job order."""
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _format(value, fmt: str | None = None) -> str:
    """A cell of report.md: a float in its column's format (vae.metrics; .4g for other columns)."""
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return format(value, fmt or ".4g")
    return str(value)


def nats_lines(rows: list[dict]) -> list[str]:
    """What the nats columns are, for the data sets the sweep ran on: the binarization's entropy floor
    (45.5 nats) is quoted for gray-level MNIST only, the one data set it was measured on."""
    settings = {(row.get("data"), row.get("binarize")) for row in rows if row.get("binarize") is not None}
    lines = ["Nats per image. `val_neg_elbo_nats` is the negative ELBO with beta 1 (summed BCE + KL)."]
    if any(binarize != "none" for _, binarize in settings):
        lines.append("On binarized images it is an upper bound on their Bernoulli NLL.")
    if any(binarize == "none" for _, binarize in settings):
        floors = sorted({floor for data, _ in settings if (floor := entropy_floor_nats(data, "none")) is not None})
        floor = f", {floors[0]:g} nats per gray-level MNIST test image" if floors else ""
        lines.append(
            "On gray-level images it is an upper bound on the expected NLL of a binarization of the image "
            f"(it includes the binarization's own entropy{floor}), not a likelihood."
        )
    lines.append(
        "`beta_effective` is the KL weight in per-image sums. Rate = `val_kl_nats`, distortion = `val_rec_nats`."
    )
    return lines


FIGURES = {
    "quality.png": "Rate, distortion and sample FID against lambda, per latent_dim, with the floor and each cell's samples",
    "rate_distortion.png": "Rate against distortion, a curve per latent_dim through the cells' means",
    "samples.png": "Prior samples of every cell (its first seed)",
    "latent_grids.png": "latent_dim 2: each cell's decoded grid of z, by kl_weight",
}


def write_table(
    rows: list[dict], sweep_dir: Path, *, iwae_k: int | None = None, figures: list[str] | tuple[str, ...] = ()
) -> None:
    """report.md and report.csv, one row per job, failed jobs included; report.md shows `figures` (file names in the sweep directory)."""
    names = columns(rows)
    with open(sweep_dir / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        *nats_lines(rows),
        "",
        wall_time_line(rows),
        "",
        eval_line(rows, iwae_k=iwae_k),
        "",
        "| " + " | ".join(names) + " |",
        "|" + "---|" * len(names),
    ]
    formats = [report_format(column) for column in names]
    lines += [
        "| " + " | ".join(_format(row.get(column), fmt) for column, fmt in zip(names, formats, strict=True)) + " |"
        for row in rows
    ]
    cells = cell_summaries(rows)
    if any(cell["seeds"] > 1 for cell in cells):
        averaged = cell_metrics()
        names = ["kl_weight", "latent_dim", "seeds", *averaged]
        lines += [
            "",
            "## By cell: mean ± sd over seeds",
            "",
            "| " + " | ".join(names) + " |",
            "|" + "---|" * len(names),
        ]
        for cell in cells:
            values = [_format(cell["kl_weight"]), str(cell["latent_dim"]), str(cell["seeds"])]
            values += [_mean_sd(cell[name], report_format(name)) for name in averaged]
            lines.append("| " + " | ".join(values) + " |")
    if figures:
        lines += ["", "## Figures"]
        for name in figures:
            lines += ["", f"{FIGURES.get(name, name)} (`{name}`):", "", f"![{name}]({name})"]
    (sweep_dir / "report.md").write_text("\n".join(lines) + "\n")


def eval_line(rows: list[dict], *, iwae_k: int | None = None) -> str:
    """Which test evaluation the `test_*` and `active_units` columns hold, and the jobs that have none."""
    which = f"test evaluations of iwae_k={iwae_k}" if iwae_k else "each job's newest test evaluation"
    command = "`python -m vae.evaluate run=<job dir>" + (f" iwae_k={iwae_k}`" if iwae_k else "`")
    missing = [row["job"] for row in rows if not row.get("eval")]
    if len(missing) == len(rows):
        what = f"a test evaluation of iwae_k={iwae_k}" if iwae_k else "a test evaluation"
        return f"`test_*`, `active_units`: empty, no job has {what} ({command} writes one)."
    settings = "; ".join(sorted({row["eval_settings"] for row in rows if row.get("eval_settings")}))
    line = f"`test_*`, `active_units`: {which} (`eval`: the file read; {settings})."
    return line + (f" None in job(s) {', '.join(missing)} ({command} writes one)." if missing else "")


def cell_summaries(rows: list[dict]) -> list[dict]:
    """The finished jobs grouped by (kl_weight, latent_dim): each metric's values over the cell's seeds."""
    cells: dict[tuple, dict] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        cell = cells.setdefault((row["kl_weight"], row["latent_dim"]), {"rows": []})
        cell["rows"].append(row)
    summaries = []
    for (kl_weight, latent_dim), cell in sorted(cells.items()):
        summary = {"kl_weight": kl_weight, "latent_dim": latent_dim, "seeds": len(cell["rows"])}
        for name in cell_metrics():
            summary[name] = [row[name] for row in cell["rows"] if row.get(name) is not None]
        summary["first"] = min(cell["rows"], key=lambda row: row.get("seed") or 0)
        summaries.append(summary)
    return summaries


def _mean_sd(values: list[float], fmt: str | None = None) -> str:
    """A cell's mean over its seeds in the column's format (.4g by default) ± their sd (.2g)."""
    if not values:
        return ""
    fmt = fmt or ".4g"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {statistics.stdev(values):.2g}"


def rate_distortion_figure(rows: list[dict]):
    """KL (rate) against reconstruction (distortion) in nats, a curve per latent_dim through the cells' means
    (bars: sd over seeds), points labelled by kl_weight."""
    fig, ax = plt.subplots(figsize=(8, 6))
    cells = [cell for cell in cell_summaries(rows) if cell["val_kl_nats"]]
    for latent_dim in sorted({cell["latent_dim"] for cell in cells}):
        points = [cell for cell in cells if cell["latent_dim"] == latent_dim]
        rates = [statistics.mean(cell["val_kl_nats"]) for cell in points]
        distortions = [statistics.mean(cell["val_rec_nats"]) for cell in points]
        spread = [
            [statistics.stdev(c[k]) if len(c[k]) > 1 else 0.0 for c in points] for k in ("val_kl_nats", "val_rec_nats")
        ]
        ax.errorbar(
            rates, distortions, xerr=spread[0], yerr=spread[1], marker="o", capsize=3, label=f"latent_dim {latent_dim}"
        )
        for cell, rate, distortion in zip(points, rates, distortions, strict=True):
            ax.annotate(
                f"λ={cell['kl_weight']:g}", (rate, distortion), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlabel("rate: KL(q(z|x) || p(z)), nats per image")
    ax.set_ylabel("distortion: reconstruction BCE, nats per image")
    ax.set_title("Rate-distortion over the sweep (validation split)")
    all_rates = [rate for cell in cells for rate in cell["val_kl_nats"]]
    if all_rates and max(all_rates) > 100 * max(1e-3, min(all_rates)):
        ax.set_xscale("symlog", linthresh=1.0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def quality_figure(rows: list[dict], sweep_dir: Path, *, num_samples: int = 16):
    """The study at a glance, one column per latent_dim: rate (KL), distortion (reconstruction) and sample FID
    against lambda (means over a cell's seeds; the floor's FID dashed), and each cell's prior samples under its
    numbers. None when no job has a sample-quality result."""
    cells = [cell for cell in cell_summaries(rows) if cell.get("sample_fid")]
    if not cells:
        return None
    latent_dims = sorted({cell["latent_dim"] for cell in cells})
    kl_weights = sorted({cell["kl_weight"] for cell in cells})
    space = next(row["quality_features"] for row in rows if row.get("quality_features"))
    floors = [row["floor_fid"] for row in rows if row.get("floor_fid") is not None]
    split = next((row["quality_split"] for row in rows if row.get("quality_split")), "test")
    width = max(4.2, 0.85 * len(kl_weights))  # a slot per lambda wide enough for its samples to be seen
    fig, axes = plt.subplots(
        4, len(latent_dims), figsize=(width * len(latent_dims), 11.5), squeeze=False, height_ratios=[1, 1, 1, 0.8]
    )
    x_of = {kl_weight: i for i, kl_weight in enumerate(kl_weights)}  # lambda spans decades and 0: one slot each
    panels = (("val_kl_nats", "rate: KL (nats)"), ("val_rec_nats", "distortion: reconstruction (nats)"))
    panels += (("sample_fid", f"sample FID ({space} features)"),)
    for column, latent_dim in enumerate(latent_dims):
        mine = sorted((c for c in cells if c["latent_dim"] == latent_dim), key=lambda c: c["kl_weight"])
        xs = [x_of[c["kl_weight"]] for c in mine]
        for row_index, (key, label) in enumerate(panels):
            ax = axes[row_index][column]
            values = [c[key] for c in mine]
            means = [statistics.mean(v) if v else float("nan") for v in values]
            spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.errorbar(xs, means, yerr=spread, marker="o", capsize=3)
            if key == "sample_fid" and floors:
                ax.axhline(statistics.mean(floors), color="k", ls="--", lw=1, label="floor (real against real)")
                ax.legend(fontsize=7)
                ax.set_yscale("log")
            ax.set_xticks(range(len(kl_weights)), [f"{k:g}" for k in kl_weights], fontsize=7)
            ax.set_xlim(-0.5, len(kl_weights) - 0.5)
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
            if row_index == 0:
                ax.set_title(f"latent_dim {latent_dim}")
        ax = axes[3][column]  # each cell's first 16 samples, under its lambda
        ax.set_xlim(axes[2][column].get_xlim())
        ax.axis("off")
        for cell, x in zip(mine, xs, strict=True):
            sheet = _job_image(sweep_dir / cell["first"]["job"], "samples_prior.png")
            if sheet is not None:
                inset = ax.inset_axes([x - 0.45, 0.0, 0.9, 1.0], transform=ax.get_xaxis_transform())
                _show_sheet(inset, _first_samples(sheet))
                inset.set_xticks([]), inset.set_yticks([])
        ax.set_title("16 prior samples of each cell, under its lambda", fontsize=8)
        axes[2][column].set_xlabel("lambda (kl_weight)")
    title = (
        f"Rate and distortion (validation split) and sample FID ({split} split) against lambda; "
        "means over a cell's seeds, bars: sd"
    )
    fig.suptitle(textwrap.fill(title, int(12 * width * len(latent_dims))), fontsize=10)
    fig.tight_layout()
    return fig


def _job_image(job_dir: Path, name: str) -> torch.Tensor | None:
    """A PNG the trainer wrote into the job's images/ as (C, H, W) in [0, 1], or None."""
    path = job_dir / "images" / name
    if not path.is_file():
        return None
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0


def _first_samples(sheet: torch.Tensor, *, tiles: int = 4) -> torch.Tensor:
    """The top-left tiles x tiles images of a trainer's sheet (vae.summaries.image_sheet: 8 a row, 2 px apart)."""
    per_row, pad = 8, 2
    size = (sheet.shape[2] - pad) // per_row - pad
    if size < 1:
        return sheet
    return sheet[:, : pad + tiles * (size + pad), : pad + tiles * (size + pad)]


def _show_sheet(ax, sheet: torch.Tensor) -> None:
    ax.imshow((sheet.permute(1, 2, 0) if sheet.shape[0] == 3 else sheet[0]).numpy(), cmap="gray", vmin=0, vmax=1)


def samples_figure(rows: list[dict], sweep_dir: Path, *, num_samples: int):
    """Prior samples of each cell (its first seed), laid out latent_dim x kl_weight: drawn from the checkpoint,
    or the trainer's last images/samples_prior.png when the job kept no checkpoint."""
    from torchvision.utils import make_grid

    cells = cell_summaries([{**row, "status": "ok"} if row["status"] == "incomplete" else row for row in rows])
    latent_dims = sorted({cell["latent_dim"] for cell in cells})
    kl_weights = sorted({cell["kl_weight"] for cell in cells})
    fig, axes = plt.subplots(
        len(latent_dims) or 1,
        len(kl_weights) or 1,
        figsize=(2.2 * max(1, len(kl_weights)), 2.4 * max(1, len(latent_dims))),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for cell in progress(cells, desc="report: prior samples", unit="cell"):
        job_dir = sweep_dir / cell["first"]["job"]
        try:
            images = load_run(job_dir).model.sample(num_samples, generator=torch.Generator().manual_seed(0))
            sheet = make_grid(images, nrow=int(math.ceil(math.sqrt(num_samples))), padding=1, pad_value=0.5)
        except CheckpointError:
            sheet = _job_image(job_dir, "samples_prior.png")
        if sheet is None:
            continue
        ax = axes[latent_dims.index(cell["latent_dim"])][kl_weights.index(cell["kl_weight"])]
        _show_sheet(ax, sheet)
        ax.set_title(f"L={cell['latent_dim']} λ={cell['kl_weight']:g}", fontsize=8)
    fig.suptitle("Samples from the prior, per cell")
    fig.tight_layout()
    return fig


def latent_grids_figure(rows: list[dict], sweep_dir: Path):
    """The latent_dim 2 cells' decoded 15x15 grids (the trainer's last images/latent_grid.png) side by side, by kl_weight."""
    cells = [cell for cell in cell_summaries(rows) if cell["latent_dim"] == 2]
    grids = [(cell, _job_image(sweep_dir / cell["first"]["job"], "latent_grid.png")) for cell in cells]
    grids = [(cell, grid) for cell, grid in grids if grid is not None]
    if not grids:
        return None
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.6), squeeze=False)
    for ax, (cell, grid) in zip(axes[0], grids, strict=True):
        _show_sheet(ax, grid)
        ax.axis("off")
        ax.set_title(f"λ={cell['kl_weight']:g} (β={cell['first'].get('beta_effective') or 0:.3g})", fontsize=9)
    fig.suptitle("latent_dim 2: the decoded grid of z over the prior's quantiles, by λ")
    fig.tight_layout()
    return fig


def write_report(sweep_dir: Path, *, num_samples: int = 16, iwae_k: int | None = None) -> tuple[list[dict], list[str]]:
    """Write report.md, report.csv, rate_distortion.png, samples.png and (latent_dim 2) latent_grids.png into the
    sweep directory: the rows, and the names of the files written, in that order."""
    rows = [read_job(job, iwae_k=iwae_k) for job in progress(job_dirs(sweep_dir), desc="report: jobs", unit="job")]
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no job directories (0, 1, ...): is it a sweep directory?")
    figures = ["rate_distortion.png", "samples.png"]
    save(rate_distortion_figure(rows), sweep_dir / "rate_distortion.png")
    save(samples_figure(rows, sweep_dir, num_samples=num_samples), sweep_dir / "samples.png")
    quality = quality_figure(rows, sweep_dir)
    if quality is not None:
        save(quality, sweep_dir / "quality.png")
        figures.insert(0, "quality.png")
    grids = latent_grids_figure(rows, sweep_dir)
    if grids is not None:
        save(grids, sweep_dir / "latent_grids.png")
        figures.append("latent_grids.png")
    write_table(rows, sweep_dir, iwae_k=iwae_k, figures=figures)
    return rows, ["report.md", "report.csv", *figures]


def report(sweep_dir: Path, *, num_samples: int = 16, iwae_k: int | None = None) -> list[dict]:
    """Write the report's files into the sweep directory (see `write_report`): one row per job."""
    return write_report(sweep_dir, num_samples=num_samples, iwae_k=iwae_k)[0]


def main(argv=None) -> list[dict]:
    args = parse_args(ReportArgs, argv, usage=ReportArgs.__doc__)
    check(args.iwae_k >= 0, "iwae_k", "an integer >= 0 (0 = each job's newest test evaluation)", args.iwae_k)
    sweep_dir = Path(args.sweep)
    if not sweep_dir.is_dir():
        raise SystemExit(f"error: sweep directory {sweep_dir} does not exist")
    try:
        rows, written = write_report(sweep_dir, num_samples=args.samples, iwae_k=args.iwae_k or None)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    failed = [row["job"] for row in rows if row["status"] == "failed"]
    evaluated = sum(1 for row in rows if row.get("eval"))
    which = f" of iwae_k={args.iwae_k}" if args.iwae_k else ""
    print(
        f"{len(rows)} jobs ({len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; "
        f"{evaluated} with a test evaluation{which}); wrote {', '.join(written)} in {sweep_dir}"
    )
    return rows


if __name__ == "__main__":
    main()

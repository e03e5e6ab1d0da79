"""The sigma-VAE in the lambda study: a swept Gaussian variance (the l2 decoder's lambda) beside a learned one.

    python experiments/sigma_vae/run.py --data-root <MNIST dir>            # trains, evaluates, writes results
    python experiments/sigma_vae/run.py --data-root <MNIST dir> --report   # only the table and figure again

`gen_loss=l2 reduction=sum kl_weight=lambda` minimises SE + lambda * KL, which is 2 sigma^2 times the
negative ELBO of a Gaussian decoder with its sigma fixed at sqrt(lambda / 2) (less a constant): the
lambda sweep is a sweep of a fixed sigma. It runs here as `gen_loss=gaussian decoder_sigma=<sigma>`
(the same minimiser, with Adam's scale invariance the same steps up to its eps, and a -ELBO in nats
of the dequantized images to compare), beside `decoder_sigma=learned` and `decoder_sigma=optimal`
(Rybkin et al. 2021), with the same model, data and budget. Each run is trained with the project's
trainer (outputs/sigma_vae/<name>-seed<N>, resumed when interrupted) on gray-level MNIST with
5,000 training images held out; choices (the best lambda) use those held-out images only, and the test
split is read once per reported number: each run's -ELBO at its own sigma, and for the swept runs
also at the sigma re-fitted on the held-out images (their RMSE: the swept decoder, calibrated).

Writes results.json (every run's numbers, the CPU, the protocol) and sigma_vae.png into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

LAMBDAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # the l2 decoder's kl_weight; sigma = sqrt(lambda / 2)
CALIBRATED = ("learned", "optimal")
BASE = [
    "data=mnist",
    "model=mlp",
    "latent_dim=16",
    "gen_loss=gaussian",
    "reduction=sum",
    "kl_weight=1",
    "batch_size=128",
    "precision=fp32",
    "threads=1",
]


def run_names() -> dict[str, str]:
    """Run name -> decoder_sigma override: the swept sigmas, then the calibrated ones."""
    names = {f"lambda{value:g}": repr(math.sqrt(value / 2)) for value in LAMBDAS}
    return {**names, **{sigma: sigma for sigma in CALIBRATED}}


def train_one(overrides: list[str], run_dir: Path) -> None:
    """Train (or finish) one run with the project's trainer."""
    from vae.config import compose
    from vae.train import train

    last = run_dir / "checkpoints" / "last.pt"
    metrics = run_dir / "metrics.json"
    config = compose(overrides)
    if metrics.is_file() and json.loads(metrics.read_text()).get("epoch") == config.epochs:
        return
    if last.is_file():  # an interrupted run: continue it bit for bit, as `python -m vae.train resume=<run>`
        from vae.train import resume_config

        config, checkpoint = resume_config(run_dir, config, [])
        train(config, run_dir, resume_from=checkpoint)
    else:
        train(config, run_dir)


def evaluate_one(run_dir: Path, *, data_root: str, recalibrate: bool, sigma: float | None = None) -> dict:
    """The run's held-out and test -ELBO at its own sigma (`sigma`: read as a Gaussian of that sigma, for
    a gen_loss=l2 run); re-fitted sigma too when `recalibrate`."""
    from vae.build import build_data
    from vae.evaluate import neg_elbo_objective
    from vae.likelihoods import Gaussian, dequantize_fixed
    from vae.runs import load_run
    from vae.step import dataset_loss_terms

    loaded = load_run(run_dir, checkpoint="last")
    config = loaded.checkpoint["config"]
    config["data"]["root"] = data_root
    splits = build_data(config)
    model = loaded.model.eval()
    if sigma is not None:
        model.likelihood = Gaussian(sigma)

    def neg_elbo(images) -> dict:
        terms = dataset_loss_terms(model, images, objective=neg_elbo_objective(model), batch_size=500)
        return {"neg_elbo_nats": terms["neg_elbo_nats"], "decoder_sigma": terms["decoder_sigma"]}

    result = {"val": neg_elbo(splits.val.images), "test": neg_elbo(splits.test.images)}
    if recalibrate:
        # sigma re-fitted on the held-out images: the RMSE of the decoded means at the posterior means.
        with torch.no_grad():
            x = dequantize_fixed(splits.val.images, 0, seed=0)
            mean = torch.cat([torch.sigmoid(model.decode(model.encode(b).mean)) for b in x.split(500)])
            sigma = float((x - mean).pow(2).mean().sqrt())
        model.likelihood = Gaussian(sigma)
        result["recalibrated"] = {
            "sigma": sigma,
            "val": neg_elbo(splits.val.images),
            "test": neg_elbo(splits.test.images),
        }
    result["epochs"] = int(loaded.checkpoint["epoch"])
    return result


QUALITY_KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage")


def quality_one(run_dir: Path, *, data_root: str, features: str, n: int) -> dict:
    """Sample quality of the run's last.pt (vae.quality's run form: n prior samples and the reconstructions of
    the test split, against the test split, with the floor where the space is the data set's classifier)."""
    from vae.quality import QualityArgs, run_form, write_run_outputs

    args = QualityArgs(run=str(run_dir), features=features, n=n, checkpoint="last", split="test", data_root=data_root)
    result = run_form(args)
    write_run_outputs(run_dir, args, result)
    kept = {
        key: {k: result[key][k] for k in QUALITY_KEYS}
        for key in ("samples", "reconstructions", "floor")
        if key in result
    }
    return {**kept, "features": result["features_label"], "features_sha256": result["features_sha256"], "n": n}


def summarise(results: dict) -> dict:
    """Mean and sd over seeds of each run name's numbers, the best lambda by held-out -ELBO, the learned lambda."""

    def stats(values: list[float]) -> dict:
        tensor = torch.tensor(values, dtype=torch.float64)
        return {"mean": float(tensor.mean()), "sd": float(tensor.std()) if len(values) > 1 else 0.0, "n": len(values)}

    table = {}
    for name, seeds in results["runs"].items():
        row = {
            "val": stats([r["val"]["neg_elbo_nats"] for r in seeds.values()]),
            "test": stats([r["test"]["neg_elbo_nats"] for r in seeds.values()]),
            "sigma": stats([r["test"]["decoder_sigma"] for r in seeds.values()]),
        }
        if all("recalibrated" in r for r in seeds.values()):
            row["recalibrated_val"] = stats([r["recalibrated"]["val"]["neg_elbo_nats"] for r in seeds.values()])
            row["recalibrated_test"] = stats([r["recalibrated"]["test"]["neg_elbo_nats"] for r in seeds.values()])
            row["recalibrated_sigma"] = stats([r["recalibrated"]["sigma"] for r in seeds.values()])
        if all("quality" in r for r in seeds.values()):
            row["quality"] = {
                f"{kind}_{key}": stats([r["quality"][kind][key] for r in seeds.values()])
                for kind in ("samples", "reconstructions")
                for key in QUALITY_KEYS
            }
        row["effective_lambda"] = 2 * row["sigma"]["mean"] ** 2
        table[name] = row
    swept = [name for name in table if name.startswith("lambda")]
    best = min(swept, key=lambda name: table[name]["val"]["mean"]) if swept else None
    best_recalibrated = (
        min(swept, key=lambda name: table[name]["recalibrated_val"]["mean"])
        if swept and "recalibrated_val" in table[swept[0]]
        else None
    )
    # The check that the fixed-sigma Gaussian runs are the l2 sweep: gen_loss=l2 kl_weight=lambda runs of
    # the same seeds, read as Gaussians of sigma = sqrt(lambda / 2), beside the fixed-sigma runs.
    l2_check = {}
    for name, seeds in results["runs"].items():
        if name.startswith("l2_"):
            twin = results["runs"].get(name.removeprefix("l2_"), {})
            l2_check[name] = {
                seed: {"l2_test": r["test"]["neg_elbo_nats"], "gaussian_test": twin[seed]["test"]["neg_elbo_nats"]}
                for seed, r in seeds.items()
                if seed in twin
            }
    floors = [
        r["quality"]["floor"]
        for seeds in results["runs"].values()
        for r in seeds.values()
        if "floor" in r.get("quality", {})
    ]
    floor = floors[0] if floors else None  # the same two image sets for every run: one floor
    return {
        "table": table,
        "best_by_val": best,
        "best_recalibrated_by_val": best_recalibrated,
        "l2_check": l2_check,
        "quality_floor": floor,
    }


def markdown(summary: dict) -> str:
    """The README's table: every run name's held-out and test -ELBO, sigma and effective lambda (mean ± sd over seeds)."""

    def cell(stat: dict, digits: int = 1) -> str:
        return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"

    lines = [
        "| decoder | seeds | sigma | lambda = 2 sigma^2 | held-out -ELBO | test -ELBO | sigma re-fitted | test -ELBO, re-fitted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary["table"].items():
        decoder = decoder_name(name)
        refit = "recalibrated_test" in row
        lines.append(
            f"| {decoder} | {row['test']['n']} | {cell(row['sigma'], 4)} | {row['effective_lambda']:.4g} | "
            f"{cell(row['val'])} | {cell(row['test'])} | "
            f"{cell(row['recalibrated_sigma'], 4) if refit else '-'} | {cell(row['recalibrated_test']) if refit else '-'} |"
        )
    quality = quality_markdown(summary)
    return "\n".join(lines) + (f"\n\n{quality}" if quality else "")


def l2_markdown(summary: dict, results: dict) -> str:
    """The check that the fixed-sigma runs are the l2 sweep: seed by seed, at own and re-fitted sigma."""
    lines = [
        "| lambda | seed | `gen_loss=l2`, own sigma | fixed-sigma Gaussian, own sigma | `gen_loss=l2`, re-fitted "
        "| fixed-sigma Gaussian, re-fitted |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for name, seeds in summary["l2_check"].items():
        twin = name.removeprefix("l2_")
        for seed in seeds:
            l2, gaussian = results["runs"][name][seed], results["runs"][twin][seed]
            lines.append(
                f"| {twin.removeprefix('lambda')} | {seed} | {l2['test']['neg_elbo_nats']:.1f} "
                f"| {gaussian['test']['neg_elbo_nats']:.1f} | {l2['recalibrated']['test']['neg_elbo_nats']:.1f} "
                f"| {gaussian['recalibrated']['test']['neg_elbo_nats']:.1f} |"
            )
    return "\n".join(lines)


def decoder_name(name: str) -> str:
    if name.startswith("l2_"):
        return f"gen_loss=l2 kl_weight={name.removeprefix('l2_lambda')}"
    if name.startswith("lambda"):
        return f"fixed sigma (lambda {name.removeprefix('lambda')})"
    return f"decoder_sigma={name}"


def quality_markdown(summary: dict) -> str:
    """The sample-quality table: prior samples (and reconstructions) against the test split, mean ± sd over seeds."""
    rows = {name: row["quality"] for name, row in summary["table"].items() if "quality" in row}
    if not rows:
        return ""

    def cell(stat: dict, digits: int) -> str:
        return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"

    def kid(stat: dict) -> str:
        return f"{stat['mean']:.3g} ± {stat['sd']:.2g}"

    lines = [
        "| decoder | seeds | sample FID | sample KID | precision | recall | density | coverage | reconstruction FID |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, q in rows.items():
        seeds = q["samples_fid"]["n"]
        lines.append(
            f"| {decoder_name(name)} | {seeds} | {cell(q['samples_fid'], 2)} | {kid(q['samples_kid_mean'])} | "
            f"{cell(q['samples_precision'], 3)} | {cell(q['samples_recall'], 3)} | {cell(q['samples_density'], 3)} | "
            f"{cell(q['samples_coverage'], 3)} | {cell(q['reconstructions_fid'], 2)} |"
        )
    floor = summary.get("quality_floor")
    if floor:
        lines.append(
            f"| floor: 10,000 real training images | - | {floor['fid']:.2f} | {floor['kid_mean']:.2g} | "
            f"{floor['precision']:.3f} | {floor['recall']:.3f} | {floor['density']:.3f} | {floor['coverage']:.3f} | - |"
        )
    return "\n".join(lines)


def figure(summary: dict, out: Path) -> None:
    from vae.figures import plt, save

    table = summary["table"]
    swept = [name for name in table if name.startswith("lambda")]
    if not swept:
        raise SystemExit("error: results.json has no swept run yet: nothing to draw")
    lambdas = [float(name.removeprefix("lambda")) for name in swept]
    with_quality = all("quality" in table[n] for n in swept)
    fig, axes = plt.subplots(1, 2 if with_quality else 1, figsize=(13 if with_quality else 7, 5.5), squeeze=False)
    ax = axes[0][0]
    ax.errorbar(
        lambdas,
        [table[n]["test"]["mean"] for n in swept],
        yerr=[table[n]["test"]["sd"] for n in swept],
        marker="o",
        capsize=3,
        label="swept sigma = sqrt(lambda/2), at its own sigma",
    )
    if "recalibrated_test" in table[swept[0]]:
        ax.errorbar(
            lambdas,
            [table[n]["recalibrated_test"]["mean"] for n in swept],
            yerr=[table[n]["recalibrated_test"]["sd"] for n in swept],
            marker="s",
            capsize=3,
            label="swept, sigma re-fitted on held-out images",
        )
    for name, colour in (("learned", "C2"), ("optimal", "C3")):
        if name in table:
            row = table[name]
            ax.axhline(row["test"]["mean"], color=colour, linestyle="--", label=f"decoder_sigma={name}")
            ax.axhspan(
                row["test"]["mean"] - row["test"]["sd"],
                row["test"]["mean"] + row["test"]["sd"],
                color=colour,
                alpha=0.15,
            )
            ax.axvline(row["effective_lambda"], color=colour, linestyle=":", label=f"{name}: lambda = 2 sigma^2")
    # The smallest sigmas are thousands of nats worse at their own sigma: the axis shows the close part,
    # the others are written at its top edge.
    shown = [row[key]["mean"] for row in table.values() for key in ("test", "recalibrated_test") if key in row]
    low = min(shown) - 20
    high = low + 20 + 350
    ax.set_ylim(low, high)
    for value, name in zip(lambdas, swept, strict=True):
        if table[name]["test"]["mean"] > high:
            ax.annotate(
                f"{table[name]['test']['mean']:.0f}",
                (value, high),
                xytext=(0, -12),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color="C0",
                arrowprops={"arrowstyle": "->", "color": "C0"},
            )
    ax.set_xscale("log")
    ax.set_xlabel("lambda (kl_weight of gen_loss=l2 reduction=sum)")
    ax.set_ylabel("test -ELBO, nats (dequantized MNIST)")
    seeds = table[swept[0]]["test"]["n"]
    ax.set_title(
        f"Swept sigma (the l2 lambda) vs a calibrated one\nmean; bars and bands: sd over {seeds} seeds", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if with_quality:
        quality_panel(axes[0][1], summary, swept, lambdas)
    fig.tight_layout()
    save(fig, out)


def quality_panel(ax, summary: dict, swept: list[str], lambdas: list[float]) -> None:
    """Sample FID (MNIST features, test split) against lambda, the calibrated decoders as bands, the floor."""
    table = summary["table"]
    fid = [table[n]["quality"]["samples_fid"] for n in swept]
    ax.errorbar(
        lambdas, [f["mean"] for f in fid], yerr=[f["sd"] for f in fid], marker="o", capsize=3, label="swept sigma"
    )
    for name, colour in (("learned", "C2"), ("optimal", "C3")):
        if "quality" in table.get(name, {}):
            stat = table[name]["quality"]["samples_fid"]
            ax.axhline(stat["mean"], color=colour, linestyle="--", label=f"decoder_sigma={name}")
            ax.axhspan(stat["mean"] - stat["sd"], stat["mean"] + stat["sd"], color=colour, alpha=0.15)
    if summary.get("quality_floor"):
        ax.axhline(max(summary["quality_floor"]["fid"], 1e-2), color="k", linestyle=":", label="floor (real images)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lambda (kl_weight of gen_loss=l2 reduction=sum)")
    ax.set_ylabel("FID of 10,000 prior samples vs the test split (MNIST features)")
    ax.set_title("Sample quality (lower is better)\nmean; bars and bands: sd over seeds", fontsize=10)
    ax.legend(fontsize=7)


def main(argv=None) -> dict:
    from vae.runtime import cpu_model, git_commit, machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="the folder that holds MNIST/raw")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs-dir", default="outputs/sigma_vae")
    parser.add_argument("--out", default="experiments/sigma_vae")
    parser.add_argument("--only", nargs="*", default=None, help="run names to train (default: all)")
    parser.add_argument("--override", nargs="*", default=[], help="more config overrides (tests: data=synthetic)")
    parser.add_argument("--features", default="mnist", help="the feature space of the sample-quality metrics")
    parser.add_argument("--quality-n", type=int, default=10_000, help="prior samples scored per run")
    parser.add_argument("--report", action="store_true", help="only rewrite the table and figure from results.json")
    parser.add_argument(
        "--l2-seeds",
        type=int,
        nargs="*",
        default=[],
        help="also train gen_loss=l2 kl_weight=lambda runs of these seeds",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": {}}
    jobs = [(name, [f"decoder_sigma={sigma}"], None, args.seeds) for name, sigma in run_names().items()]
    l2 = [o for o in BASE if not o.startswith(("gen_loss=", "kl_weight="))] + ["gen_loss=l2"]
    jobs += [(f"l2_lambda{value:g}", [f"kl_weight={value}"], math.sqrt(value / 2), args.l2_seeds) for value in LAMBDAS]
    if not args.report:
        for name, extra, sigma, seeds in jobs:
            if args.only is not None and name not in args.only:
                continue
            for seed in seeds:
                run_dir = Path(args.runs_dir) / f"{name}-seed{seed}"
                base = l2 if name.startswith("l2_") else BASE
                overrides = [
                    *base,
                    *extra,
                    f"seed={seed}",
                    f"epochs={args.epochs}",
                    f"data.root={args.data_root}",
                    *args.override,
                ]
                evaluation = results["runs"].get(name, {}).get(str(seed))
                if evaluation is not None and ("quality" in evaluation or name.startswith("l2_")):
                    continue  # evaluated already: the test split is read once per reported number
                if evaluation is not None and not (run_dir / "checkpoints" / "last.pt").is_file():
                    print(
                        f"{name} seed {seed}: evaluated in results.json, its run is not in {args.runs_dir}: no quality"
                    )
                    continue  # retraining it would score other weights than the ones its -ELBO is of
                train_one(overrides, run_dir)
                if evaluation is None:
                    evaluation = evaluate_one(
                        run_dir, data_root=args.data_root, recalibrate=name not in CALIBRATED, sigma=sigma
                    )
                if not name.startswith("l2_"):  # the l2 twins are the likelihood check only
                    evaluation["quality"] = quality_one(
                        run_dir, data_root=args.data_root, features=args.features, n=args.quality_n
                    )
                results["runs"].setdefault(name, {})[str(seed)] = evaluation
                results.update(
                    protocol=(
                        "gray-level MNIST, 5,000 training images held out (data.val_split), uniformly dequantized; "
                        f"{' '.join(BASE)}; {args.epochs} epochs; the best lambda chosen on the held-out -ELBO; "
                        "the test split read once per reported number (each run at its own sigma, swept runs also "
                        "at the sigma re-fitted on the held-out images)"
                    ),
                    quality_protocol=(
                        f"vae.quality's run form on last.pt: {args.quality_n} samples from the prior (the decoder's "
                        "mean image, clamped to [0, 1] and rounded to uint8, temperature 1, seed 0) and the "
                        "reconstructions of the test split, each against the test split's 10,000 images, in the "
                        f"features={args.features} space; the floor: the 10,000 training images held out of that "
                        "classifier's training against the same test images"
                    ),
                    cpu=cpu_model(),
                    machine=machine_info("cpu"),
                    git=git_commit(),
                    date=time.strftime("%Y-%m-%d"),
                    command="python experiments/sigma_vae/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    overrides=args.override,
                )
                results_path.write_text(json.dumps(results, indent=2))  # after every run: an interruption loses one
    results["summary"] = summarise(results)
    results_path.write_text(json.dumps(results, indent=2))
    figure(results["summary"], out / "sigma_vae.png")
    print(markdown(results["summary"]))
    if results["summary"]["l2_check"]:
        print()
        print(l2_markdown(results["summary"], results))
    return results


if __name__ == "__main__":
    main()

"""The README's tables of the lambda x latent_dim grid, recomputed from the committed jobs.

    python experiments/sweep_kl_latent/tables.py            # prints every table of the README, in order

- the grid: epochs48/, every job of one kind of device (collect.py --device cpu); a cell with
  several seeds shows mean ± sample sd over them (n - 1, statistics.stdev), n in its column;
- convergence: for every cell, how its -ELBO and KL moved over the job's last quarter (epochs 36
  to 48), and the doubling check of budget.json (the same cell trained for 48 and for 96 epochs on
  the same kind of device) on val_loss, -ELBO and KL, where such a pair exists;
- the device check: every job of device_check/ (the H100) beside the epochs48/ job of the same
  cell and seed (the CPU).

tests/test_report.py checks that every line printed here is in the README.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = HERE / "epochs48"
CHECK = HERE / "device_check"
BUDGET = HERE / "budget.json"
PIXELS = 784
CRITERION = 0.01  # a number has converged when doubling the budget moves it by less than 1 %


def jobs(directory: Path) -> list[dict]:
    from vae.report import job_dirs, read_job

    rows = []
    for job in job_dirs(directory):
        row = read_job(job)
        if row["status"] != "ok":
            raise SystemExit(f"error: {job} is {row['status']}")
        row["history"] = json.loads((job / "metrics.json").read_text())["history"]
        rows.append(row)
    return rows


def kl_from(val_loss: float, neg_elbo: float, kl_weight: float, latent_dim: int) -> float:
    """The KL in nats per image from val_loss (mean reduction) and the -ELBO: 784 val_loss = rec + beta KL,
    -ELBO = rec + KL, beta = 784 kl_weight / latent_dim, so KL = (-ELBO - 784 val_loss) / (1 - beta)."""
    return (neg_elbo - PIXELS * val_loss) / (1 - PIXELS * kl_weight / latent_dim)


def lam(value: float) -> str:
    return f"{value:g}"


def num(value: float, digits: int) -> str:
    """`value` to `digits` decimals, without a minus sign on a number that rounds to 0."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def spread(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return num(values[0], digits)
    return f"{num(statistics.mean(values), digits)} ± {num(statistics.stdev(values), digits)}"


def devices(rows: list[dict]) -> set[str]:
    return {row["device"] for row in rows}


def cells(rows: list[dict]) -> dict[tuple, list[dict]]:
    grouped = defaultdict(list)
    for row in rows:
        grouped[(row["kl_weight"], row["latent_dim"])].append(row)
    return dict(sorted(grouped.items()))


def grid_table(rows: list[dict]) -> list[str]:
    lines = [
        "| λ (kl_weight) | latent_dim | beta_effective | seeds | val_loss | -ELBO | rec | KL | mean sigma "
        "| gain, last quarter | -ELBO converged? |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    (device,) = devices(rows)
    for (kl_weight, latent_dim), group in cells(rows).items():

        def column(key: str, group: list[dict] = group) -> list[float]:
            return [row[key] for row in group]

        gain = [100 * value for value in column("val_loss_gain_last_quarter")]
        lines.append(
            f"| {lam(kl_weight)} | {latent_dim} | {group[0]['beta_effective']:.3g} | {len(group)} "
            f"| {spread(column('val_loss'), 4)} | {spread(column('val_neg_elbo_nats'), 1)} "
            f"| {spread(column('val_rec_nats'), 1)} | {spread(column('val_kl_nats'), 2)} "
            f"| {spread(column('val_mean_sigma'), 3)} | {spread(gain, 2)} % "
            f"| {elbo_status(kl_weight, latent_dim, group, device)} |"
        )
    return lines


def elbo_status(kl_weight: float, latent_dim: int, group: list[dict], device: str) -> str:
    """Whether the cell's -ELBO has converged, and by which evidence: kl_weight 0 (the KL is not in the
    loss, so nothing stops it growing), the job's last quarter (-ELBO rising and over 1 % above its own
    lowest), the doubling check of budget.json, or none of these ("not checked")."""
    if kl_weight == 0:
        return "no: cannot (λ = 0, the KL is not in the loss)"
    rising = []
    for row in group:
        quarter = last_quarter(row)
        (start, end), lowest = quarter["elbo"], quarter["best"][0]
        if end > start and end > (1 + CRITERION) * lowest:
            rising.append(row["seed"])
    if rising:
        return "no: rising in the last quarter"
    pairs = doubling(kl_weight, latent_dim, device)
    if not pairs:
        return "not checked"
    worst = max(abs(pair["change"][1]) for pair in pairs)
    seeds = len(pairs)
    if worst < CRITERION:
        return f"yes: doubling moves it {100 * worst:.1f} % ({seeds} seed{'s' if seeds > 1 else ''})"
    return f"no: doubling moves it up to {100 * worst:.1f} % ({seeds} seed{'s' if seeds > 1 else ''})"


def last_quarter(row: dict) -> dict:
    """-ELBO and KL at the start of the last quarter and at the end, and the lowest -ELBO with its epoch."""
    history = row["history"]
    start = history[len(history) - len(history) // 4 - 1]  # epoch 36 of 48
    end = history[-1]

    def kl(entry):
        return kl_from(entry["val_loss"], entry["val_neg_elbo_nats"], row["kl_weight"], row["latent_dim"])

    best = min(history, key=lambda entry: entry["val_neg_elbo_nats"])
    return {
        "from_epoch": start["epoch"],
        "elbo": (start["val_neg_elbo_nats"], end["val_neg_elbo_nats"]),
        "kl": (kl(start), kl(end)),
        "best": (best["val_neg_elbo_nats"], best["epoch"]),
    }


def doubling(kl_weight: float, latent_dim: int, device: str) -> list[dict]:
    """budget.json's 48 -> 96 epoch pairs of this cell on this kind of device: each number's relative change."""
    final = {}
    for run in json.loads(BUDGET.read_text())["runs"]:
        if (run["kl_weight"], run["latent_dim"], run.get("device", "cpu")) != (kl_weight, latent_dim, device):
            continue
        loss, elbo = run["val_loss"][-1], run["val_neg_elbo_nats"][-1]
        final[(run["seed"], run["budget"])] = (loss, elbo, kl_from(loss, elbo, kl_weight, latent_dim))
    pairs = []
    for (seed, budget), numbers in sorted(final.items()):
        if budget == 48 and (seed, 96) in final:
            doubled = final[(seed, 96)]
            change = [(after - before) / before for before, after in zip(numbers, doubled, strict=True)]
            pairs.append({"seed": seed, "change": change})
    return pairs


def verdict(change: float) -> str:
    return f"{100 * change:+.1f} %" + ("" if abs(change) < CRITERION else " (moving)")


def convergence_table(rows: list[dict]) -> list[str]:
    (device,) = devices(rows)
    lines = [
        "| λ | latent_dim | -ELBO at 36 → 48 | lowest -ELBO (epoch) | KL at 36 → 48 | doubling 48 → 96: val_loss "
        "| -ELBO | KL |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (kl_weight, latent_dim), group in cells(rows).items():
        quarters = [last_quarter(row) for row in group]
        elbo = " / ".join(f"{q['elbo'][0]:.1f} → {q['elbo'][1]:.1f}" for q in quarters)
        kl = " / ".join(f"{num(q['kl'][0], 1)} → {num(q['kl'][1], 1)}" for q in quarters)
        best = " / ".join(f"{q['best'][0]:.1f} ({q['best'][1]})" for q in quarters)
        pairs = doubling(kl_weight, latent_dim, device)
        if pairs:
            checks = [
                " / ".join(f"{verdict(pair['change'][index])} (seed {pair['seed']})" for pair in pairs)
                for index in range(3)
            ]
        else:
            checks = ["not checked"] * 3
        lines.append(f"| {lam(kl_weight)} | {latent_dim} | {elbo} | {best} | {kl} | {' | '.join(checks)} |")
    return lines


def device_table(grid: list[dict], check: list[dict]) -> list[str]:
    lines = [
        "| λ | latent_dim | seed | val_loss CPU | H100 | -ELBO CPU | H100 | KL CPU | H100 | H100 - CPU: val_loss "
        "| -ELBO |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_cell = {(row["kl_weight"], row["latent_dim"], row["seed"]): row for row in grid}
    for gpu in sorted(check, key=lambda row: (row["kl_weight"], row["latent_dim"], row["seed"])):
        cpu = by_cell.get((gpu["kl_weight"], gpu["latent_dim"], gpu["seed"]))
        if cpu is None:
            continue
        loss_change = 100 * (gpu["val_loss"] - cpu["val_loss"]) / cpu["val_loss"]
        lines.append(
            f"| {lam(gpu['kl_weight'])} | {gpu['latent_dim']} | {gpu['seed']} | {cpu['val_loss']:.4f} "
            f"| {gpu['val_loss']:.4f} | {cpu['val_neg_elbo_nats']:.1f} | {gpu['val_neg_elbo_nats']:.1f} "
            f"| {num(cpu['val_kl_nats'], 1)} | {num(gpu['val_kl_nats'], 1)} | {loss_change:+.2f} % "
            f"| {gpu['val_neg_elbo_nats'] - cpu['val_neg_elbo_nats']:+.1f} |"
        )
    return lines


def tables() -> list[str]:
    grid = jobs(GRID)
    if len(devices(grid)) != 1:
        raise SystemExit(f"error: {GRID} mixes devices {sorted(devices(grid))}: collect it with --device")
    check = jobs(CHECK)
    return [*grid_table(grid), "", *convergence_table(grid), "", *device_table(grid, check)]


if __name__ == "__main__":
    print("\n".join(tables()))

"""The tables of experiments/quality/README.md, from its committed records (a test holds the README to them).

    python experiments/quality/tables.py

Reads sanity.json (experiments/quality/sanity.py) and fid_vs_n/n*.json (`python -m vae.quality ... out=`).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("fid", "kid_mean", "precision", "recall", "density", "coverage")


def sanity_tables() -> list[str]:
    record = json.loads((HERE / "sanity.json").read_text())
    lines = []
    for space, entry in record["spaces"].items():
        lines += [
            f"Feature space: {space}, SHA-256 {entry['sha256'][:12]}...; reference: {record['reference']}",
            "",
            "| scored set (10,000 images) | FID | KID | precision | recall | density | coverage |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, r in entry["rows"].items():
            lines.append(
                f"| {label} | {r['fid']:.2f} | {r['kid_mean']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                f"{r['density']:.3f} | {r['coverage']:.3f} |"
            )
        lines.append("")
    return lines


def fid_vs_n_table() -> list[str]:
    results = sorted(
        (json.loads(p.read_text()) for p in (HERE / "fid_vs_n").glob("n*.json")), key=lambda result: result["n"]
    )
    lines = [
        "| samples N | FID (MNIST features) | KID | precision | recall | floor FID (10,000 held-out images) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['n']:,} | {r['fid']:.2f} | {r['kid_mean']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['floor']['fid']:.2f} |"
        )
    return lines


def main() -> None:
    print("\n".join(sanity_tables() + fid_vs_n_table()))


if __name__ == "__main__":
    main()

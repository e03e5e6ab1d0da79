"""`make bench` keeps working: the benchmark runs end to end on a tiny fake MNIST and writes its table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_data import write_fake_mnist

from conftest import REPO


def lecture_forward_flops() -> int:
    """Multiply-adds x 2 of the lecture network's forward pass for one 28 x 28 image, by hand."""
    conv = lambda c_in, c_out, size: 2 * c_in * c_out * 9 * size * size  # noqa: E731 - 3x3, output size
    return (
        conv(1, 32, 28)
        + conv(32, 64, 14)
        + 2 * conv(64, 64, 14)  # encoder convs
        + 2 * 12544 * 32
        + 2 * 2 * 32 * 2  # dense, mu and log_var
        + 2 * 2 * 32
        + 2 * 32 * 12544  # decoder dense layers
        + conv(64, 32, 14)
        + conv(32, 1, 28)  # transposed conv (counted over its input), last conv
    )


@pytest.mark.slow  # runs the CLI in a subprocess
def test_bench_runs_and_reports_ratios_against_the_baseline(tmp_path):
    write_fake_mnist(tmp_path / "MNIST" / "raw", gz=True, num_train=96, num_test=8)
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "experiments/bench/bench.py",
            "--data-root",
            str(tmp_path),
            "--batch-sizes",
            "16",
            "--windows",
            "1",
            "--images-per-window",
            "32",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {row["who"]: row for row in report["rows"]}
    assert set(rows) == {"baseline", "project"} and all(row["batch_size"] == 16 for row in rows.values())
    assert rows["baseline"]["ratio_to_baseline"] == 1.0
    assert (
        rows["project"]["ratio_to_baseline"]
        == rows["project"]["images_per_second"] / rows["baseline"]["images_per_second"]
    )
    assert all(row["images_per_second"] > 0 and row["peak_memory_mib"] > 0 for row in rows.values())
    # Forward + backward is about 3x the forward (the first conv needs no input gradient).
    assert 2.8 * lecture_forward_flops() < report["flops_per_image"] < 3.05 * lecture_forward_flops()
    assert report["limit_images_per_second"] == report["peak_flops_per_second"] / report["flops_per_image"]
    assert "| project | 16 |" in result.stdout
    # The record says where and from what it was measured: the command as typed (the data folder as a
    # placeholder), the CPU and its bf16 support, the commit, the date, how loaded the cores were.
    assert report["command"].startswith("python experiments/bench/bench.py --data-root <MNIST dir> ")
    assert set(report["machine"]) >= {"cpu", "cpu_id", "cpu_bf16"} and len(report["git"]["commit"]) == 40
    assert report["date"].count("-") == 2 and report["load_average_before"] >= 0
    assert report["baseline_precision"] == "fp32" and report["project_runtime"]["precision"] in ("fp32", "bf16")


@pytest.mark.parametrize("record", ["bench.json", "bench_bf16_epyc.json"])
def test_the_readmes_bench_numbers_are_the_committed_records(record):
    """Every throughput the READMEs quote is its record's, rounded as written; the new record names its CPU."""
    report = json.loads((REPO / "experiments" / "bench" / record).read_text())
    readme = (REPO / "README.md").read_text()
    bench_readme = (REPO / "experiments" / "bench" / "README.md").read_text()
    section = bench_readme[bench_readme.index(f"`{record}`") :]
    for row in report["rows"]:
        table_row = (
            f"| {row['who']} | {row['batch_size']} | {row['images_per_second']:,.0f} | "
            f"{'**' if row['who'] == 'project' else ''}{row['ratio_to_baseline']:.2f}"
        )
        assert table_row in section, table_row
    rows = {(row["who"], row["batch_size"]): row for row in report["rows"]}
    project, baseline = rows["project", 128], rows["baseline", 128]
    quoted = f"{project['ratio_to_baseline']:.2f}x"
    assert quoted in readme and f"{project['images_per_second']:,.0f}" in readme
    assert f"{baseline['images_per_second']:,.0f}" in readme
    assert f"limit about {report['limit_images_per_second']:,.0f}" in section or (
        f"limit about {round(report['limit_images_per_second'], -1):,.0f}" in section
    )
    if record == "bench.json":
        machine = report["machine"]
        assert machine["cpu_id"] in readme and machine["cpu_id"] in section
        assert ("no native bf16" in section) == (not machine["cpu_bf16"])
        assert report["git"]["commit"][:7] in section and report["date"] in section

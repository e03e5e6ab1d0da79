"""The README's times are the committed timings record's (experiments/timings/timings.json)."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from conftest import REPO

RECORD = REPO / "experiments" / "timings" / "timings.json"


def _script():
    spec = importlib.util.spec_from_file_location("timings_run", REPO / "experiments" / "timings" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.66, "0.7 s"), (9.96, "10 s"), (35.4, "35 s"), (59.6, "1 min 0 s"), (113.2, "1 min 53 s"), (3840, "1 h 4 min")],
)
def test_durations_are_written_as_the_readme_writes_them(seconds, text):
    assert _script().duration(seconds) == text


def test_the_record_was_measured_on_idle_cores_at_a_commit_with_its_cpu():
    record = json.loads(RECORD.read_text())
    assert not record["quick"]
    assert record["load_average_before"] <= 0.5 * record["cores"]
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"])
    assert record["cpu_id"] and isinstance(record["cpu_bf16"], bool)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["date"])


def _table_rows(readme: str) -> dict[str, str]:
    """The workflow table: command cell -> time cell."""
    rows = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4:
            rows[cells[1]] = cells[3]
    return rows


def test_every_time_in_the_readme_workflow_is_the_records():
    script = _script()
    record = json.loads(RECORD.read_text())
    cells = script.readme_cells(record)
    readme = (REPO / "README.md").read_text()
    rows = _table_rows(readme)
    for start, step in script.README_ROWS.items():
        matching = [time for command, time in rows.items() if command.startswith(start)]
        assert len(matching) == 1, f"no single workflow row starts with {start}"
        assert matching[0] == cells[step], f"{start}: README says {matching[0]!r}, the record {cells[step]!r}"
    quick_start = readme.split("## Quick start", 1)[1].split("\n| step |", 1)[0]
    epoch_line = next(line for line in quick_start.splitlines() if line.startswith("make train"))
    assert cells["train_one_epoch"].split("the default ")[1].rstrip(")") in epoch_line
    test_line = next(line for line in quick_start.splitlines() if line.startswith("make test"))
    assert cells["make_test"] in test_line
    # The sentence above the table names the record's CPU, its bf16 support, and the record.
    assert record["cpu_id"] in quick_start
    assert ("native bf16" if record["cpu_bf16"] else "no native bf16") in quick_start
    assert "experiments/timings/timings.json" in quick_start

"""The tools' key=value arguments: `run=latest` and `sweep=latest` find the newest run or sweep."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from vae.cli import MISSING, parse_args


@dataclass
class ToolArgs:
    run: str = MISSING
    sweep: str = "none"


def test_run_latest_is_the_newest_run_that_holds_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, has_checkpoints in [("2026-01-01_10-00-00.000001", True), ("2026-01-02_09-00-00.000001", True)]:
        (tmp_path / "outputs" / "runs" / name / ("checkpoints" if has_checkpoints else "")).mkdir(parents=True)
    (tmp_path / "outputs" / "runs" / "2026-01-03_08-00-00.000001").mkdir()  # failed before its first step
    args = parse_args(ToolArgs, ["run=latest"])
    assert args.run == "outputs/runs/2026-01-02_09-00-00.000001"
    assert "run=latest: outputs/runs/2026-01-02_09-00-00.000001" in capsys.readouterr().err
    assert parse_args(ToolArgs, ["run=outputs/runs/other"]).run == "outputs/runs/other"  # a path is kept as it is


def test_latest_with_nothing_there_exits_naming_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"sweep=latest: no directory under .*outputs/multirun holds multirun.yaml"):
        parse_args(ToolArgs, ["run=x", "sweep=latest"])

"""The tools' key=value arguments: `run=latest` and `sweep=latest` find the newest run or sweep."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from vae.cli import MISSING, parse_args


@dataclass
class ToolArgs:
    run: str = MISSING
    sweep: str = "none"


def test_run_latest_is_the_newest_run_that_holds_a_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("2026-01-01_10-00-00.000001", "2026-01-02_09-00-00.000001"):
        (tmp_path / "outputs" / "runs" / name / "checkpoints").mkdir(parents=True)
        (tmp_path / "outputs" / "runs" / name / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "outputs" / "runs" / "2026-01-03_08-00-00.000001").mkdir()  # failed before its first step
    # a failed start that kept its empty checkpoints/ (a crash, a full disk) is not a run either
    (tmp_path / "outputs" / "runs" / "2026-01-04_08-00-00.000001" / "checkpoints").mkdir(parents=True)
    args = parse_args(ToolArgs, ["run=latest"])
    assert args.run == "outputs/runs/2026-01-02_09-00-00.000001"
    assert "run=latest: outputs/runs/2026-01-02_09-00-00.000001" in capsys.readouterr().err
    assert parse_args(ToolArgs, ["run=outputs/runs/other"]).run == "outputs/runs/other"  # a path is kept as it is


def test_latest_with_nothing_there_exits_naming_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"run=latest: no directory under .*outputs/runs holds checkpoints/last.pt"):
        parse_args(ToolArgs, ["run=latest"])
    with pytest.raises(SystemExit, match=r"sweep=latest: no directory under .*outputs/multirun holds multirun.yaml"):
        parse_args(ToolArgs, ["run=x", "sweep=latest"])

"""Weights kept in git history, out of the working tree: the manifest, `python -m vae.weights` and the tree's size."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from vae import weights
from vae.checkpoint import CheckpointError, load_checkpoint
from vae.kept import MANIFEST, KeptError, git_blob, read_manifest, restore, sha256_of

from conftest import REPO

IN_A_CLONE = (REPO / ".git").exists()
needs_git = pytest.mark.skipif(not IN_A_CLONE, reason="a copy without .git (a GPU node's): no history to read")
TREE_LIMIT_BYTES = 15_000_000  # the tracked tree, so that it, MNIST, the wheels and two runs fit a 64 MiB copy


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@needs_git
def test_the_tracked_tree_is_under_15_mb():
    tracked = _git(REPO, "ls-files", "-z").split("\0")
    sizes = {name: (REPO / name).stat().st_size for name in tracked if name and (REPO / name).is_file()}
    total = sum(sizes.values())
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:5]
    assert total < TREE_LIMIT_BYTES, f"git ls-files sums to {total / 1e6:.1f} MB; largest: {largest}"


@needs_git
def test_every_kept_file_is_untracked_ignored_and_in_main_s_history():
    kept = read_manifest(REPO)
    assert len(kept) >= 12 and all(k.path.endswith(".pt") for k in kept)
    tracked = set(_git(REPO, "ls-files").splitlines())
    assert not {k.path for k in kept} & tracked
    ignored = _git(REPO, "check-ignore", "--no-index", *(k.path for k in kept)).split()
    assert sorted(ignored) == sorted(k.path for k in kept)
    # the commit that holds each is an ancestor of HEAD, and its tree has the blob at the path
    smallest = min(kept, key=lambda k: k.bytes)
    for commit in {k.commit for k in kept}:
        assert subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=REPO).returncode == 0
    assert _git(REPO, "rev-parse", f"{smallest.commit}:{smallest.path}").strip() == smallest.blob
    import hashlib

    assert hashlib.sha256(git_blob(REPO, smallest.blob)).hexdigest() == smallest.sha256


def _repo_with_a_run(tmp_path: Path, monkeypatch) -> Path:
    for key, value in {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "repo"
    run = root / "experiments" / "study" / "runs" / "a-seed0"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"model": {"w": torch.arange(6.0)}, "config": {"seed": 0}, "epoch": 3}, run / "checkpoints" / "last.pt")
    (run / "metrics.json").write_text("{}")
    (root / ".gitignore").write_text("experiments/*/runs/*/checkpoints/\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "a run")
    monkeypatch.chdir(root)
    return root


def test_keep_commits_the_weights_then_untracks_them_and_restore_brings_back_the_same_bytes(
    tmp_path, monkeypatch, capsys
):
    root = _repo_with_a_run(tmp_path, monkeypatch)
    path = root / "experiments/study/runs/a-seed0/checkpoints/last.pt"
    original = path.read_bytes()
    before = _git(root, "rev-parse", "HEAD").strip()
    assert weights.main(["keep", "experiments/study/runs/a-seed0"]) == 0
    [kept] = read_manifest(root)
    assert kept.path == "experiments/study/runs/a-seed0/checkpoints/last.pt" and kept.sha256 == sha256_of(path)
    # two commits: the first holds the weights, the second untracks them and adds the manifest
    assert _git(root, "rev-list", "--count", f"{before}..HEAD").strip() == "2"
    assert _git(root, "rev-parse", f"{kept.commit}:{kept.path}").strip() == kept.blob
    assert kept.path not in _git(root, "ls-files").splitlines() and str(MANIFEST) in _git(root, "ls-files")
    assert _git(root, "status", "--porcelain") == ""  # nothing left untracked or changed

    path.unlink()
    with pytest.raises(CheckpointError, match="kept in git history.*python -m vae.weights restore"):
        load_checkpoint(path)
    assert weights.main(["check"]) == 0 and "1 absent" in capsys.readouterr().out
    assert weights.main(["restore"]) == 0 and "1 restored" in capsys.readouterr().out
    assert path.read_bytes() == original and load_checkpoint(path)["epoch"] == 3
    assert weights.main(["restore", "experiments/study"]) == 0 and "1 present" in capsys.readouterr().out

    # a file at the path with other bytes is never overwritten; check says so and exits 1
    path.write_bytes(b"work in progress")
    with pytest.raises(SystemExit, match="differs from the kept file"):
        weights.main(["restore"])
    assert path.read_bytes() == b"work in progress" and weights.main(["check"]) == 1


def test_keep_refuses_staged_changes_and_files_git_would_show(tmp_path, monkeypatch):
    root = _repo_with_a_run(tmp_path, monkeypatch)
    (root / "notes.txt").write_text("x")
    _git(root, "add", "notes.txt")
    with pytest.raises(SystemExit, match="staged changes"):
        weights.main(["keep", "experiments/study/runs/a-seed0"])
    _git(root, "commit", "-q", "-m", "notes")
    (root / "elsewhere.pt").write_bytes(b"w")
    with pytest.raises(SystemExit, match="elsewhere.pt is not git-ignored"):
        weights.main(["keep", "elsewhere.pt"])
    with pytest.raises(SystemExit, match="no such file or run directory"):
        weights.main(["keep", "experiments/nope"])
    assert not (root / MANIFEST).exists()


def test_restore_says_what_is_missing_without_history(tmp_path, monkeypatch):
    root = _repo_with_a_run(tmp_path, monkeypatch)
    weights.main(["keep", "experiments/study/runs/a-seed0"])
    [kept] = read_manifest(root)
    (root / kept.path).unlink()
    copy = tmp_path / "copy"  # the working tree without .git, as a GPU node receives it
    subprocess.run(["cp", "-r", str(root), str(copy)], check=True)
    subprocess.run(["rm", "-rf", str(copy / ".git")], check=True)
    with pytest.raises(KeptError, match="not a git checkout"):
        restore(copy, kept)
    with pytest.raises(SystemExit, match="no kept file there"):
        weights.main(["restore", "experiments/other"])


def test_a_restored_run_evaluated_to_the_numbers_it_gave_before():
    """experiments/likelihood/restore_check.json: the same runs evaluated (500 test images, k = 100) from the
    tracked weights before they left the tree, and from `python -m vae.weights restore` after."""
    record = json.loads((REPO / "experiments/likelihood/restore_check.json").read_text())["labels"]
    before, restored = record["before"]["runs"], record["restored"]["runs"]
    kept = {Path(k.path).parts[-3]: k for k in read_manifest(REPO)}
    assert set(before) == set(restored) and len(before) >= 2
    for name, numbers in restored.items():
        assert numbers == before[name], name
        assert numbers["weights_sha256"] == kept[name].sha256 and numbers["num_images"] == 500


# Each refactor issue 42 made, with the restore_check.py labels measured before and after it on one CPU model.
REFACTOR_LABELS = [("issue42_before", "issue42_after"), ("likelihood_axis_before", "likelihood_axis_after")]


@pytest.mark.parametrize(("before_label", "after_label"), REFACTOR_LABELS)
def test_the_committed_runs_evaluate_the_same_before_and_after_each_refactor(before_label, after_label):
    """Issue 42's "nothing moves": the same runs, 500 test images, k = 100, fp32, on one CPU model, from the
    commit before a refactor and from one after it (restore_check.py's labels): the one-place-per-option
    refactor, and the likelihood axis with the option packages."""
    import json

    labels = json.loads((REPO / "experiments" / "likelihood" / "restore_check.json").read_text())["labels"]
    before, after = labels[before_label], labels[after_label]
    assert before["cpu_id"] == after["cpu_id"] and before["commit"] != after["commit"]
    assert {name: run["iwae_nll_nats"] for name, run in after["runs"].items()} == {
        name: run["iwae_nll_nats"] for name, run in before["runs"].items()
    }
    assert after["runs"] == before["runs"] and len(after["runs"]) == 3


REFACTOR_CHECKS = sorted((REPO / "experiments" / "lecture").glob("*refactor_check.json"))


@pytest.mark.parametrize("path", REFACTOR_CHECKS, ids=lambda path: path.stem)
def test_the_lecture_run_trains_the_same_before_and_after_each_refactor(path):
    """Issue 42's "nothing moves": experiment=lecture, 2 epochs, deterministic, fp32, from the commit before a
    refactor and from one after it, on one CPU model: every number of metrics.json equal (*refactor_check.json)."""
    import json

    assert len(REFACTOR_CHECKS) >= 2
    record = json.loads(path.read_text())["runs"]
    before, after = record["before"], record["after"]
    assert before["machine"]["cpu_id"] == after["machine"]["cpu_id"] and before["commit"] != after["commit"]
    assert before["runtime"]["precision"] == "fp32" and before["runtime"]["deterministic"] is True
    assert after["val"] == before["val"] and after["train"] == before["train"]
    assert after["history"] == before["history"] and len(after["history"]) == 2


@pytest.mark.parametrize("path", REFACTOR_CHECKS, ids=lambda path: path.stem)
def test_a_checkpoint_saved_before_a_refactor_resumes_after_it_as_one_saved_after(path):
    import json

    check = json.loads(path.read_text())["resume_check"]["runs"]
    old, new = check["before_saved_resumed_after"], check["after_saved_resumed_after"]
    assert old["resumed_with"] == new["resumed_with"] and old["epoch"] == new["epoch"] == 3
    assert old["val"] == new["val"] and old["train"] == new["train"]


def test_save_keeps_a_training_run_whole_and_a_finished_one_by_its_snapshots(tmp_path, monkeypatch, capsys):
    root = _repo_with_a_run(tmp_path, monkeypatch)
    run = root / "experiments/study/runs/a-seed0"
    checkpoints = run / "checkpoints"

    def write(name: str, epoch: int) -> None:
        torch.save(
            {"model": {"w": torch.full((4,), float(epoch))}, "config": {"epochs": 4}, "epoch": epoch},
            checkpoints / name,
        )

    # Mid-run, at a session's end: last.pt (the training state) and the snapshot so far; best.pt never.
    write("last.pt", 2), write("best.pt", 2), write("epoch_0002.pt", 2)
    (run / "metrics.json").write_text('{"epoch": 2}')
    assert weights.main(["save", "experiments/study/runs/a-seed0"]) == 0
    assert sorted(Path(k.path).name for k in read_manifest(root)) == ["epoch_0002.pt", "last.pt"]
    assert json.loads(_git(root, "show", f"HEAD:{(run / 'metrics.json').relative_to(root).as_posix()}")) == {"epoch": 2}
    assert _git(root, "status", "--porcelain") == ""
    head = _git(root, "rev-parse", "HEAD").strip()
    assert weights.main(["save", "experiments/study/runs/a-seed0"]) == 0  # nothing changed: no commit
    assert _git(root, "rev-parse", "HEAD").strip() == head

    # Finished in a later session: its snapshots; the stale last.pt leaves the manifest (a restore of the
    # run would otherwise bring back epoch 2's training state beside epoch 4's metrics).
    write("last.pt", 4), write("epoch_0004.pt", 4)
    (run / "metrics.json").write_text('{"epoch": 4}')
    assert weights.main(["save", "experiments/study/runs/a-seed0"]) == 0
    kept = {Path(k.path).name: k for k in read_manifest(root)}
    assert sorted(kept) == ["epoch_0002.pt", "epoch_0004.pt"] and "forgot" in capsys.readouterr().out
    assert kept["epoch_0002.pt"].commit != kept["epoch_0004.pt"].commit  # kept once, in the first session
    assert json.loads(_git(root, "show", f"HEAD:{(run / 'metrics.json').relative_to(root).as_posix()}")) == {"epoch": 4}
    (checkpoints / "epoch_0004.pt").unlink()
    assert weights.main(["restore"]) == 0 and load_checkpoint(checkpoints / "epoch_0004.pt")["epoch"] == 4

    with pytest.raises(SystemExit, match="no checkpoints/last.pt"):
        weights.main(["save", "experiments/study"])  # not a run directory: refused before any commit

"""`python -m vae.weights`: the committed runs' weights, kept in git history and out of the working tree.

    python -m vae.weights restore [PATH ...]   # every kept file (or those under PATHs) back, byte for byte
    python -m vae.weights check [PATH ...]     # which kept files are here, byte-identical, absent or changed
    python -m vae.weights keep RUN_DIR ...      # keep a new run's checkpoints/ the same way (two commits)
    python -m vae.weights save RUN_DIR ...      # a run that spans sessions: its files committed, its weights kept
    python -m vae.weights forget PATH ...       # drop superseded files from the manifest (they stay in history)

`make weights` runs the first. The manifest is experiments/weights.json (path, size, SHA-256, git blob
id and the commit that holds each file); restoring reads the blob from the clone's history, checks its
size and SHA-256, and writes it to its git-ignored path (`vae/kept.py`). `keep` commits the files (one
commit whose tree holds them, so they stay reachable from main), then untracks them and records them in
the manifest (a second commit); it refuses when the index holds other staged changes, or when a file
is not git-ignored (it would show up as untracked). A file kept byte for byte already is not kept again.

`save` is the end of a session for runs that train over several (stop them first, SIGTERM: they write
last.pt): it commits each run directory's tracked files (metrics, run.json, images, TensorBoard events), then
keeps what continuing or reading the run needs: while it trains, last.pt (the whole training state) and its
snapshots (checkpoints/epoch_NNNN.pt); once it has finished, its snapshots alone (or last.pt when it takes
none), and the last.pt kept on an earlier day is forgotten, so that a restore never brings back a stale one.
best.pt is never kept (nothing reads it back).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from vae.kept import (
    MANIFEST,
    RESTORE_COMMAND,
    KeptError,
    KeptFile,
    describe,
    find_root,
    read_manifest,
    restore,
    select,
    status,
    write_manifest,
)


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise KeptError(f"git {' '.join(args[:2])} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _files_of(paths: list[str]) -> list[Path]:
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in (path / "checkpoints").glob("*.pt") if p.is_file())
            if not found:
                raise KeptError(f"{path}: no checkpoints/*.pt to keep")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise KeptError(f"{path}: no such file or run directory")
    return files


def keep(root: Path, paths: list[str]) -> list[KeptFile]:
    files = [p.resolve() for p in _files_of(paths)]
    relative = [p.relative_to(root).as_posix() for p in files]
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        raise KeptError("the index holds staged changes: commit or unstage them first (keep makes its own commits)")
    checked = subprocess.run(["git", "check-ignore", "--no-index", *relative], cwd=root, capture_output=True, text=True)
    ignored = set(checked.stdout.split())  # exit 1: none of them ignored
    not_ignored = [r for r in relative if r not in ignored]
    if not_ignored:
        raise KeptError(f"{not_ignored[0]} is not git-ignored: add its folder to .gitignore first")
    entries = [describe(root, p) for p in files]
    _git(root, "add", "-f", "--", *relative)
    _git(
        root,
        "commit",
        "-q",
        "-m",
        f"weights of {', '.join(sorted({str(Path(r).parent.parent) for r in relative}))}, kept in history ({RESTORE_COMMAND})",
    )
    commit = _git(root, "rev-parse", "HEAD").strip()
    entries = [KeptFile(**{**vars(e), "commit": commit}) for e in entries]
    old = [k for k in (read_manifest(root) if (root / MANIFEST).is_file() else []) if k.path not in set(relative)]
    write_manifest(root, old + entries)
    _git(root, "rm", "-q", "--cached", "--", *relative)
    _git(root, "add", str(MANIFEST))
    _git(root, "commit", "-q", "-m", f"weights out of the working tree, listed in {MANIFEST} (kept in {commit[:7]})")
    return entries


def forget(root: Path, paths: list[str]) -> list[KeptFile]:
    """Drop the manifest's entries at or under `paths` (one commit); their blobs stay in history."""
    kept = read_manifest(root)
    prefixes = [Path(p).resolve().relative_to(root).as_posix() for p in paths]
    dropped = [k for k in kept if any(k.path == p or k.path.startswith(p.rstrip("/") + "/") for p in prefixes)]
    if not dropped:
        return []
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        raise KeptError("the index holds staged changes: commit or unstage them first (forget makes its own commit)")
    write_manifest(root, [k for k in kept if k not in dropped])
    _git(root, "add", str(MANIFEST))
    names = ", ".join(k.path for k in dropped)
    _git(root, "commit", "-q", "-m", f"{MANIFEST}: forget {names} (superseded; still in history)")
    return dropped


def _changed(root: Path, files: list[Path]) -> list[Path]:
    """The files the manifest does not hold byte for byte."""
    kept = {k.path: k for k in read_manifest(root)} if (root / MANIFEST).is_file() else {}
    fresh = []
    for path in files:
        entry = kept.get(path.resolve().relative_to(root).as_posix())
        if entry is None or status(root, entry) != "present":
            fresh.append(path)
    return fresh


def run_weights(run: Path) -> tuple[list[Path], list[Path]]:
    """(what to keep, what to forget) of a run directory: see `save`."""
    from vae.checkpoint import load_checkpoint

    last = run / "checkpoints" / "last.pt"
    snapshots = sorted((run / "checkpoints").glob("epoch_*.pt"))
    if not last.is_file():
        raise KeptError(f"{run}: no checkpoints/last.pt (not a run directory, or one that never saved)")
    state = load_checkpoint(last)
    if state["epoch"] < state["config"]["epochs"]:
        return [last, *snapshots], []
    return (snapshots, [last]) if snapshots else ([last], [])


def save(root: Path, runs: list[str], *, message: str | None = None) -> tuple[list[KeptFile], list[KeptFile]]:
    """Commit the runs' tracked files, keep their weights, forget what that supersedes (see the module's doc):
    the files kept and the entries forgotten."""
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        raise KeptError("the index holds staged changes: commit or unstage them first (save makes its own commits)")
    plans = [run_weights(Path(run)) for run in runs]  # every run checked before anything is committed
    relative = [Path(run).resolve().relative_to(root).as_posix() for run in runs]
    _git(root, "add", "--", *relative)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root).returncode != 0:
        _git(root, "commit", "-q", "-m", message or f"progress of {', '.join(relative)}")
    to_keep = _changed(root, [path for files, _ in plans for path in files])
    entries = keep(root, [str(path) for path in to_keep]) if to_keep else []
    return entries, forget(root, [str(path) for _, stale in plans for path in stale])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vae.weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["restore", "check", "keep", "save", "forget"])
    parser.add_argument(
        "paths", nargs="*", help="restore/check/forget: kept files or folders holding them; keep/save: run dirs"
    )
    args = parser.parse_args(argv)
    root = find_root()
    if root is None and args.action in (
        "keep",
        "save",
    ):  # the first kept files: the manifest is made at the top of the clone
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        root = Path(top.stdout.strip()) if top.returncode == 0 else None
    if root is None:
        sys.exit(f"error: no {MANIFEST} here or above {Path.cwd()}: run this inside a clone of the repository")
    try:
        if args.action == "keep":
            if not args.paths:
                sys.exit("error: keep needs the run directories (or files) to keep")
            for kept in keep(root, args.paths):
                print(f"kept {kept.path} ({kept.bytes / 1e6:.1f} MB) in {kept.commit[:7]}")
            return 0
        if args.action in ("save", "forget"):
            if not args.paths:
                sys.exit(f"error: {args.action} needs the run directories (or files)")
            kept, gone = save(root, args.paths) if args.action == "save" else ([], forget(root, args.paths))
            for entry in kept:
                print(f"kept {entry.path} ({entry.bytes / 1e6:.1f} MB) in {entry.commit[:7]}")
            for entry in gone:
                print(f"forgot {entry.path} (still in {entry.commit[:7]})")
            return 0
        files = select(read_manifest(root), args.paths, root)
        counts: dict[str, int] = {}
        for kept in files:
            done = restore(root, kept) if args.action == "restore" else status(root, kept)
            counts[done] = counts.get(done, 0) + 1
            if done != "present":
                print(f"{done:8s} {kept.path} ({kept.bytes / 1e6:.1f} MB)")
    except KeptError as error:
        sys.exit(f"error: {error}")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    print(f"{len(files)} kept files ({sum(k.bytes for k in files) / 1e6:.1f} MB): {summary or 'none'}")
    if args.action == "check" and counts.get("differs"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

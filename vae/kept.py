"""Weights kept in git history but out of the working tree: the manifest, restoring and checking.

The committed runs' weights (experiments/<study>/runs/<run>/checkpoints/) are not tracked files: a
clone's working tree stays small enough to copy to a GPU node. Each file is kept in a commit of
main's history (added there, untracked by the next commit) and listed in the tracked manifest
`experiments/weights.json` with its path, size, SHA-256, git blob id and the commit that holds it.
`python -m vae.weights restore` writes them back, byte for byte, to the same (git-ignored) paths, so
every command, script and README line keeps reading `experiments/<study>/runs/<run>/checkpoints/last.pt`.

Only the standard library here: `vae.checkpoint` asks `restore_hint` what to say of a missing file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = Path("experiments") / "weights.json"
RESTORE_COMMAND = "python -m vae.weights restore"


class KeptError(RuntimeError):
    """A kept file that cannot be restored or checked; the message says why and what to do."""


@dataclass(frozen=True)
class KeptFile:
    path: str  # relative to the repository root, POSIX separators
    bytes: int
    sha256: str
    blob: str  # git's object id of the file's content
    commit: str  # the commit of main's history whose tree holds it


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: the working directory) that holds the manifest."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / MANIFEST).is_file():
            return folder
    return None


def read_manifest(root: Path) -> list[KeptFile]:
    path = Path(root) / MANIFEST
    try:
        entries = json.loads(path.read_text())["files"]
        return [KeptFile(**entry) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KeptError(f"{path} is not a readable weights manifest ({error})") from None


def write_manifest(root: Path, files: list[KeptFile]) -> None:
    files = sorted(files, key=lambda kept: kept.path)
    text = json.dumps(
        {
            "what": "weights kept in git history, out of the working tree; restored by " + RESTORE_COMMAND,
            "files": [vars(kept) for kept in files],
        },
        indent=2,
    )
    (Path(root) / MANIFEST).write_text(text + "\n")


def restore_hint(path: Path) -> str:
    """'; it is kept in git history: <command>' when a missing file is one the manifest lists, else ''."""
    path = Path(path).resolve()
    root = find_root(path.parent)
    if root is None:
        return ""
    try:
        listed = {kept.path for kept in read_manifest(root)}
    except KeptError:
        return ""
    relative = path.relative_to(root).as_posix()
    if relative not in listed:
        return ""
    return f"; it is kept in git history, out of the working tree: `{RESTORE_COMMAND}` (in {root}) brings it back"


def select(files: list[KeptFile], prefixes: list[str], root: Path) -> list[KeptFile]:
    """The manifest's files under any of `prefixes` (paths, relative to the working directory or absolute)."""
    if not prefixes:
        return files
    wanted = []
    for prefix in prefixes:
        absolute = Path(prefix).resolve()
        try:
            wanted.append(absolute.relative_to(root).as_posix())
        except ValueError:
            raise KeptError(f"{prefix} is not inside the repository {root}") from None
    chosen = [
        kept for kept in files if any(kept.path == w or kept.path.startswith(w.rstrip("/") + "/") for w in wanted)
    ]
    unmatched = [p for p, w in zip(prefixes, wanted) if not any(k.path.startswith(w.rstrip("/")) for k in files)]
    if unmatched:
        raise KeptError(f"{unmatched[0]}: no kept file there ({MANIFEST} lists {len(files)} files)")
    return chosen


def status(root: Path, kept: KeptFile) -> str:
    """`present` (byte-identical), `absent`, or `differs` (same path, other bytes)."""
    path = root / kept.path
    if not path.is_file():
        return "absent"
    if path.stat().st_size == kept.bytes and sha256_of(path) == kept.sha256:
        return "present"
    return "differs"


def git_blob(root: Path, blob: str) -> bytes:
    """A blob's bytes from the repository's object store; KeptError naming why not (no .git, shallow clone)."""
    if not (root / ".git").exists():
        raise KeptError(
            f"{root} is not a git checkout (a copy without .git): the weights live in git history; "
            f"run `{RESTORE_COMMAND}` in a clone and copy the restored files"
        )
    try:
        result = subprocess.run(["git", "cat-file", "blob", blob], cwd=root, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        raise KeptError(f"git cat-file failed ({error})") from None
    if result.returncode != 0:
        raise KeptError(
            f"git object {blob} is not in this clone (a shallow clone? `git fetch --unshallow` brings the history)"
        )
    return result.stdout


def restore(root: Path, kept: KeptFile) -> str:
    """Write one kept file back from git history, checked against its size and SHA-256 before it is renamed
    into place; returns what was done: `present` (already there, identical) or `restored`. A file at the
    path with other bytes is left alone (KeptError): restoring never overwrites work."""
    state = status(root, kept)
    if state == "present":
        return state
    path = root / kept.path
    if state == "differs":
        raise KeptError(f"{kept.path} exists and differs from the kept file (sha256 {kept.sha256[:12]}...): left alone")
    data = git_blob(root, kept.blob)
    if len(data) != kept.bytes or hashlib.sha256(data).hexdigest() != kept.sha256:
        raise KeptError(f"git object {kept.blob} does not match {kept.path}'s recorded size and SHA-256")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return "restored"


def describe(root: Path, path: Path) -> KeptFile:
    """A manifest entry for a file of the working tree (its blob id from `git hash-object`, not yet written)."""
    path = Path(path).resolve()
    result = subprocess.run(["git", "hash-object", str(path)], cwd=root, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise KeptError(f"git hash-object {path} failed: {result.stderr.strip()}")
    return KeptFile(
        path=path.relative_to(root).as_posix(),
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
        blob=result.stdout.strip(),
        commit="",
    )

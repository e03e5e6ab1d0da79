"""The GPU run, prepared to one command: tests, timings and evaluations on one CUDA GPU, within a budget.

    experiments/gpu/run.sh --commit <sha> [--budget-s 300] [--out DIR] [--carry gpu_carry]
    experiments/gpu/run.sh --dry-run --out /tmp/gpu-dry      # every step at toy sizes on the CPU, data=synthetic
    python experiments/gpu/run.py --table DIR/results.json    # the README table of a results file

In priority order, each step given what is left of the budget (a step that would not fit is recorded as
left out; a cut-off step keeps what it measured):

1. `gpu_tests`: `pytest -m gpu tests/test_gpu.py` (bf16 autocast + channels_last + compile against fp32,
   checkpoints across devices, the IWAE bound on the device against the CPU, DDP/nccl at world size 1);
2. `speed`: seconds per MNIST epoch of the lecture model alone on the GPU at batch 128 and at the batch
   sizes of --batches (the fastest named), training images/s of burda_resnet and burda_hvae; the same
   figures on the node's own CPU cores (fewer steps, scaled to the epoch);
3. `lecture_fast`: `python -m vae.train experiment=lecture_fast`: the first epoch at or below the
   lecture's 0.1858 and the seconds to it;
4. `likelihood`: `python -m vae.evaluate run=<run> checkpoint=last iwae_k=5000 precision=fp32` on the
   whole test set, for as many committed runs as the budget allows (ResNet and hierarchical seed 0 first),
   each run's weights restored into experiments/likelihood/runs/<run>/checkpoints/ or carried.

Results go to --out as they arrive (at most 8 files): results.json (GPU name, driver, torch and CUDA
versions, the commit, every figure with its command), results.md (the table), log.txt and
gpu_tests.txt. The node has no package index: what is not importable is installed from
<carry>/wheelhouse with `pip install --no-index --no-deps` (the dry run skips that, saying so). MNIST's
four .gz files are read from <carry>/mnist. `make gpu-carry` fills the carry folder (experiments/gpu/README.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the package from this tree, installed or not (the node's copy is not installed)

LECTURE_GOAL = 0.1858  # the lecture's val_loss after 50 epochs (docs/design.md, "Reference results")
# The committed runs to evaluate at k = 5000, in priority order (the headline rows' seed 0 first).
RUNS = [
    "burda_resnet-seed0",
    "burda_hvae-seed0",
    "burda_resnet-seed1",
    "burda_hvae-seed1",
    "burda_resnet-seed2",
    "burda_hvae-seed2",
]
# What vae needs beyond the node's python3 (torch, numpy, ...): module -> the distribution in the wheelhouse.
NEEDED = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime", "yaml": "pyyaml"}
MAX_FILES = 8
TRAVEL_LIMIT = 64 * 2**20  # what a GPU node's copy of the tree may hold
log = logging.getLogger("gpu")


class Budget:
    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)


class Recorder:
    """results.json and results.md rewritten after every step, so a cut-off run keeps what it measured."""

    def __init__(self, out: Path, results: dict):
        self.out, self.results = out, results

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")
        (self.out / "results.md").write_text(table(self.results))


def run(command: list[str], *, timeout: float, env: dict | None = None) -> tuple[int | None, str, float]:
    """(exit code or None when cut off, combined output, seconds)."""
    start = time.monotonic()
    log.info("$ %s (at most %.0f s)", " ".join(command), timeout)
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=max(timeout, 1),
            env={**os.environ, **(env or {})},
        )
        return done.returncode, done.stdout + done.stderr, time.monotonic() - start
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"") + (expired.stderr or b"")
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        return None, text, time.monotonic() - start


# ---------------------------------------------------------------- the node


def environment(args) -> dict:
    import torch

    gpu = driver = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            driver = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            driver = None
    from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, physical_cores

    return {
        "commit": args.commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dry_run": args.dry_run,
        "budget_s": args.budget_s,
        "gpu": gpu,
        "driver": driver,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "cpu_cores": physical_cores(),
    }


def install(carry: Path, *, dry_run: bool) -> dict:
    """Install what python3 lacks from <carry>/wheelhouse (pip picks the wheel of this Python); the dry run
    installs nothing and says so. The project's own wheel stays out: the tree's vae/ is the code measured."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    wheelhouse = carry / "wheelhouse"
    if dry_run:
        if missing:
            raise SystemExit(
                f"error: {', '.join(NEEDED[m] for m in missing)} not importable; the dry run installs nothing "
                f"(make install, or pip install --no-index --no-deps --find-links {wheelhouse} ...)"
            )
        return {"skipped": "dry run: nothing installed", "missing": missing}
    if not missing:
        return {"installed": [], "missing": []}
    if not wheelhouse.is_dir():
        raise SystemExit(
            f"error: {', '.join(missing)} not importable and no {wheelhouse} (make gpu-carry puts it there)"
        )
    wanted = [NEEDED[name] for name in missing]
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(wheelhouse)]
    code, output, _ = run([*command, *wanted], timeout=300)
    importlib.invalidate_caches()
    still = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if code != 0 or still:
        raise SystemExit(f"error: pip install from {wheelhouse} failed; still missing {still}:\n{output[-2000:]}")
    return {"installed": wanted, "missing": []}


def travel(carry: Path) -> dict:
    """Bytes of what a node's copy holds: the tracked tree (git ls-files, where there is a .git) and the carry folder."""
    tracked = None
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
    if listing.returncode == 0:
        names = [n for n in listing.stdout.split("\0") if n]
        tracked = sum((REPO / n).stat().st_size for n in names if (REPO / n).is_file())
    else:  # a node's copy has no .git: all of it but the carry folder and the outputs
        skip = (carry, REPO / "outputs")
        tracked = sum(
            p.stat().st_size
            for p in REPO.rglob("*")
            if p.is_file() and not p.is_symlink() and not any(s == p or s in p.parents for s in skip)
        )
    carried = {}
    if carry.is_dir():
        for part in sorted(carry.iterdir()):
            files = [part] if part.is_file() else [p for p in part.rglob("*") if p.is_file()]
            carried[part.name] = sum(p.stat().st_size for p in files)
    total = (tracked or 0) + sum(carried.values())
    fits = total <= TRAVEL_LIMIT
    if not fits:
        log.warning(
            "what travels is %.1f MB, over the %.1f MB a node's copy may hold: carry fewer runs (make gpu-carry GPU_RUNS=...)",
            total / 1e6,
            TRAVEL_LIMIT / 1e6,
        )
    return {
        "tracked_bytes": tracked,
        "carry_bytes": carried,
        "total_bytes": total,
        "limit_bytes": TRAVEL_LIMIT,
        "fits": fits,
    }


# ---------------------------------------------------------------- steps


def gpu_tests(out: Path, budget: Budget) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    code, output, seconds = run(command, timeout=min(budget.left() - 5, 240))
    (out / "gpu_tests.txt").write_text(output)
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", output)}
    reasons = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", output)))
    return {"command": "python -m pytest -m gpu tests/test_gpu.py", "exit_code": code, "seconds": seconds} | {
        "counts": counts,
        "skip_reasons": reasons,
        "cut_off": code is None,
    }


def measure_speed(spec: dict) -> dict:
    """In a child process: the trainer's own set-up and step (vae.train.set_up, train_step), `steps` steps timed
    after `warmup` (torch.compile's first calls), scaled to the epoch."""
    import torch

    from vae.config import compose
    from vae.train import epoch_batches, set_up, train_step

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(spec["overrides"])
        session, state = set_up(cfg, Path(tmp) / "run", None)
        session.model.train()
        n = len(session.train_images)
        batches = list(epoch_batches(n, session.batch_size, seed=0, epoch=1))
        needed = spec["warmup"] + spec["steps"]
        batches = (batches * math.ceil(needed / len(batches)))[:needed]
        sync = torch.cuda.synchronize if session.runtime.device.startswith("cuda") else (lambda: None)
        for index in batches[: spec["warmup"]]:
            train_step(session, state, index, kl_scale=1.0, epoch=1)
        sync()
        start = time.perf_counter()
        for index in batches[spec["warmup"] :]:
            train_step(session, state, index, kl_scale=1.0, epoch=1)
        sync()
        seconds = time.perf_counter() - start
        session.writer.close()
        per_step = seconds / spec["steps"]
        steps_per_epoch = math.ceil(n / session.batch_size)
        return {
            "overrides": spec["overrides"],
            "runtime": session.runtime.as_dict(),
            "batch_size": session.batch_size,
            "train_images": n,
            "timed_steps": spec["steps"],
            "seconds_per_epoch": per_step * steps_per_epoch,
            "images_per_s": session.batch_size / per_step,
        }


def speed(args, data: list[str], budget: Budget) -> dict:
    """Each configuration in a child process of its own (a crash or an out-of-memory loses only that one)."""
    specs = []
    for device in ["cpu"] if args.dry_run else ["cuda", "cpu"]:
        steps, warmup = (args.steps, 10) if device == "cuda" else (args.cpu_steps, 2)
        on = [f"device={device}", *data]
        for batch in args.batches if device == "cuda" else args.batches[:1]:
            specs.append(("lecture", device, ["latent_dim=2", "kl_weight=1e-3", f"batch_size={batch}", *on]))
        for name, model in (("burda_resnet", "resnet"), ("burda_hvae", "hvae")):
            # the dry run's synthetic data take no Burda protocol (its val_split): the model alone, at toy size
            chosen = [f"model={model}", "batch_size=32"] if args.dry_run else [f"experiment={name}"]
            specs.append((name, device, [*chosen, *on]))
        specs = [
            (n, d, {"overrides": o, "steps": steps, "warmup": warmup}) if d == device else (n, d, o)
            for n, d, o in specs
        ]
    figures = []
    for name, device, spec in specs:
        if budget.left() < 20:
            figures.append({"model": name, "device": device, "left_out": "budget"})
            continue
        command = [sys.executable, str(Path(__file__).resolve()), "--measure", json.dumps(spec)]
        code, output, seconds = run(command, timeout=min(budget.left() - 10, 180))
        found = re.findall(r"^MEASURED (.*)$", output, flags=re.M)
        entry = {"model": name, "device": device, "command_seconds": seconds}
        if code == 0 and found:
            entry |= json.loads(found[-1])
        else:
            entry |= {"error": "cut off" if code is None else " ".join(output.strip().splitlines()[-1:])}
        figures.append(entry)
        log.info(
            "speed %s", json.dumps({k: entry.get(k) for k in ("model", "device", "batch_size", "seconds_per_epoch")})
        )
    lecture_gpu = [
        f for f in figures if f["model"] == "lecture" and f.get("seconds_per_epoch") and f["device"] != "cpu"
    ]
    fastest = min(lecture_gpu, key=lambda f: f["seconds_per_epoch"], default=None)
    return {
        "how": "the trainer's set_up and train_step; warm-up steps untimed, then timed steps scaled to the epoch "
        "(validation not included); GPU alone, nothing else running",
        "figures": figures,
        "fastest_lecture_batch": fastest["batch_size"] if fastest else None,
    }


def lecture_fast(args, data: list[str], budget: Budget, work: Path) -> dict:
    run_dir = work / "lecture_fast"
    overrides = ["experiment=lecture_fast", *data, f"hydra.run.dir={run_dir}"]
    if args.dry_run:
        overrides += ["epochs=1", "batch_size=32"]
    command = [sys.executable, "-m", "vae.train", *overrides]
    code, output, seconds = run(command, timeout=min(budget.left() - 5, 420))
    result = {"command": "python -m vae.train " + " ".join(o for o in overrides if "hydra.run.dir" not in o)}
    result |= {"exit_code": code, "wall_seconds": seconds, "cut_off": code is None, "goal": LECTURE_GOAL}
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        history = json.loads(metrics_path.read_text())["history"]
        result["val_loss"] = [h["val_loss"] for h in history]
        reached = next((h for h in history if h["val_loss"] <= LECTURE_GOAL), None)
        result["epoch_reached"] = reached["epoch"] if reached else None
        result["train_seconds_to_goal"] = (
            sum(h["epoch_seconds"] for h in history if h["epoch"] <= reached["epoch"]) if reached else None
        )
        result["run_dir"] = str(run_dir)
    elif code != 0:
        result["error"] = " ".join(output.strip().splitlines()[-1:])
    return result


def place_weights(name: str, carry: Path) -> str | None:
    """The run's weights at experiments/likelihood/runs/<name>/checkpoints/last.pt: already there (restored), or
    copied from <carry>/runs/<name>/last.pt, checked against experiments/weights.json's SHA-256. None when absent."""
    from vae.kept import read_manifest, sha256_of

    target = REPO / "experiments" / "likelihood" / "runs" / name / "checkpoints" / "last.pt"
    kept = {k.path: k for k in read_manifest(REPO)}.get(target.relative_to(REPO).as_posix())
    source = carry / "runs" / name / "last.pt"
    if not target.is_file() and source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    if not target.is_file():
        return None
    if kept is not None and sha256_of(target) != kept.sha256:
        raise SystemExit(f"error: {target} differs from experiments/weights.json (sha256 {kept.sha256[:12]}...)")
    return str(target.parent.parent)


def likelihood(args, data_root: str | None, budget: Budget, lecture_run: str | None, carry: Path) -> dict:
    entries = []
    if args.dry_run:  # the tiny run the lecture_fast step trained, at toy k and images
        targets = [("lecture_fast (dry run)", lecture_run)] if lecture_run else []
        settings = ["checkpoint=last", "iwae_k=10", "max_images=32", "precision=fp32"]
    else:
        targets = [(name, place_weights(name, carry)) for name in RUNS]
        settings = ["checkpoint=last", "iwae_k=5000", "precision=fp32"]
    for name, run_dir in targets:
        if run_dir is None:
            entries.append({"run": name, "left_out": f"no weights (make weights, or {carry}/runs/{name}/last.pt)"})
            continue
        if budget.left() < 30:
            entries.append({"run": name, "left_out": "budget"})
            continue
        command = [sys.executable, "-m", "vae.evaluate", f"run={run_dir}", *settings]
        command += [f"data_root={data_root}"] if data_root else []
        code, output, seconds = run(command, timeout=budget.left() - 10)
        entry = {"run": name, "command": "python -m vae.evaluate run=<run> " + " ".join(settings), "seconds": seconds}
        if code == 0:
            entry["results"] = json.loads((Path(run_dir) / "eval.json").read_text())
        else:
            entry["error"] = "cut off by the budget" if code is None else " ".join(output.strip().splitlines()[-1:])
        entries.append(entry)
    return {"runs": entries}


# The dry run's toy sizes: synthetic data, a handful of steps.
TOY = ["data.num_train=256", "data.num_val=64", "data.num_test=64", "eval_batch_size=64", "num_image_samples=16"]


# ---------------------------------------------------------------- the table


def table(results: dict) -> str:
    env = results.get("environment", {})
    where = env.get("gpu") or f"CPU only (dry run: {env.get('cpu')})"
    lines = [
        f"GPU run of commit {str(env.get('commit'))[:12]} on {where}, driver {env.get('driver')}, torch "
        f"{env.get('torch')}, CUDA {env.get('cuda')}; node CPU {env.get('cpu')} ({env.get('cpu_cores')} cores, "
        f"native bf16: {env.get('cpu_bf16')}); {env.get('date')}{' (DRY RUN: toy sizes)' if env.get('dry_run') else ''}",
        "",
    ]
    tests = results.get("gpu_tests")
    if tests:
        counts = ", ".join(f"{n} {w}" for w, n in tests["counts"].items()) or "no result"
        lines += [
            f"gpu-marked tests: {counts}" + (f" ({'; '.join(tests['skip_reasons'])})" if tests["skip_reasons"] else ""),
            "",
        ]
    figures = results.get("speed", {}).get("figures", [])
    if figures:
        lines += [
            "| model | device | batch | s per epoch | images/s | precision, compile, channels_last |",
            "|---|---|---:|---:|---:|---|",
        ]
        for f in figures:
            if "seconds_per_epoch" not in f:
                lines.append(f"| {f['model']} | {f['device']} | | {f.get('left_out') or f.get('error')} | | |")
                continue
            rt = f["runtime"]
            lines.append(
                f"| {f['model']} | {f['device']} | {f['batch_size']} | {f['seconds_per_epoch']:.2f} | "
                f"{f['images_per_s']:.0f} | {rt['precision']}, {rt['compile']}, {rt['channels_last']} |"
            )
        lines.append("")
    fast = results.get("lecture_fast")
    if fast:
        lines += [
            f"lecture_fast ({fast['command']}): val_loss per epoch {[round(v, 4) for v in fast.get('val_loss', [])]}; "
            f"first at or below {fast['goal']}: epoch {fast.get('epoch_reached')}, "
            f"{fast.get('train_seconds_to_goal') and round(fast['train_seconds_to_goal'], 1)} s of training "
            f"({fast['wall_seconds']:.0f} s for the whole command)",
            "",
        ]
    runs = results.get("likelihood", {}).get("runs", [])
    if runs:
        lines += [
            "| run | test NLL bound (nats) | k | images | precision | -ELBO | seconds |",
            "|---|---:|---:|---:|---|---:|---:|",
        ]
        for r in runs:
            if "results" in r:
                e = r["results"]
                lines.append(
                    f"| {r['run']} | {e['iwae_nll_nats']:.2f} | {e['iwae_k']} | {e['num_images']} | {e['precision']} | "
                    f"{e['neg_elbo_nats']:.2f} | {r['seconds']:.0f} |"
                )
            else:
                lines.append(f"| {r['run']} | {r.get('left_out') or r.get('error')} | | | | | |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def git_head() -> str | None:
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu" / time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--commit", help="the commit this tree is (a node's copy has no .git)")
    parser.add_argument("--carry", type=Path, default=REPO / "gpu_carry", help="wheelhouse/, mnist/, runs/")
    parser.add_argument("--dry-run", action="store_true", help="every step at toy sizes on the CPU, data=synthetic")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--steps", type=int, default=200, help="timed GPU steps per figure")
    parser.add_argument("--cpu-steps", type=int, default=20, help="timed CPU steps per figure")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, help="print the table of a results.json and exit")
    args = parser.parse_args()
    if args.measure:
        print("MEASURED " + json.dumps(measure_speed(json.loads(args.measure))), flush=True)
        return 0
    if args.table:
        print(table(json.loads(args.table.read_text())), end="")
        return 0
    args.commit = args.commit or git_head()
    if not args.commit:
        parser.error("--commit is required where the tree has no .git (the commit the copy was made from)")
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be > 0 (got {args.budget_s})")
    out = args.out.resolve()
    if args.dry_run and (out == REPO / "experiments" or REPO / "experiments" in out.parents):
        parser.error(f"--out {args.out}: a dry run never writes into experiments/")
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {args.out} exists and is not empty: name a new folder")
    import torch  # the node's own; everything else may come from the wheels

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on a GPU node, or --dry-run to check it on the CPU")
    carry = args.carry.resolve()
    installed = install(carry, dry_run=args.dry_run)  # before --out is made: a refusal writes nothing
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(out / "log.txt")],
    )
    budget = Budget(args.budget_s)
    results = {"environment": environment(args), "install": installed, "travel": travel(carry)}
    recorder = Recorder(out, results)
    recorder.save()
    log.info("environment %s", json.dumps(results["environment"]))
    log.info("travel %s", json.dumps(results["travel"]))
    mnist = carry / "mnist"
    data_root = None if args.dry_run else str(mnist if mnist.is_dir() else os.environ.get("VAE_DATA_DIR", ""))
    if not args.dry_run and not data_root:
        parser.error(f"no MNIST: put its four .gz files in {mnist} (make gpu-carry) or set VAE_DATA_DIR")
    data = ["data=synthetic", *TOY] if args.dry_run else ["data=mnist", f"data.root={data_root}"]
    if args.dry_run:
        args.batches, args.steps, args.cpu_steps = [32, 64], 4, 4
    with tempfile.TemporaryDirectory(prefix="gpu-run-") as work:
        for name, step in (
            ("gpu_tests", lambda: gpu_tests(out, budget)),
            ("speed", lambda: speed(args, data, budget)),
            ("lecture_fast", lambda: lecture_fast(args, data, budget, Path(work))),
            (
                "likelihood",
                lambda: likelihood(args, data_root, budget, results.get("lecture_fast", {}).get("run_dir"), carry),
            ),
        ):
            if budget.left() < 15:
                results[name] = {"left_out": f"budget ({args.budget_s:.0f} s) spent"}
            else:
                log.info("step %s (%.0f s of the budget left)", name, budget.left())
                results[name] = step()
            recorder.save()
    results["seconds"] = args.budget_s - budget.left()
    recorder.save()
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= MAX_FILES, files
    log.info("done in %.0f s: %s in %s", results["seconds"], ", ".join(files), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

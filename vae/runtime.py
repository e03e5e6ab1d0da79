"""Resolve `auto` settings for the machine at hand, and record what a reader needs to reproduce a run."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@dataclass
class Runtime:
    """Settings resolved from `auto` for the machine at hand; recorded in run.json and in each checkpoint.

    A resume resolves them afresh for the machine it runs on (only `deterministic` is the run's own)."""

    device: str
    threads: int
    precision: str
    compile: bool
    channels_last: bool
    allocator: str
    deterministic: bool

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None


def autocast_context(device: str, dtype: torch.dtype | None):
    """bf16 autocast on the device when `dtype` is set, else nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def exact_fp32():
    """TF32 off inside (cuBLAS and cuDNN), restored after: training may run its fp32 kernels in
    TF32 on a GPU (`apply_runtime`), but a reported likelihood is computed in full fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 dot products (AVX512-BF16 or AMX), so bf16 is faster, not slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else platform.processor()), to state beside every number measured on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_id() -> str | None:
    """The CPU's vendor, family and model numbers (/proc/cpuinfo on x86), e.g. "AuthenticAMD family 26
    model 2": "AMD EPYC" alone names several generations, and bf16 kernels may differ between them."""
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break
    except OSError:
        return None
    if "cpu family" not in fields or "model" not in fields:
        return None
    return f"{fields.get('vendor_id', 'unknown')} family {fields['cpu family']} model {fields['model']}"


def machine_info(device: str) -> dict:
    """The machine a run runs on: the CPU's model name, its family and model numbers, whether it has
    native bf16, and the GPU's name on CUDA."""
    info = {"cpu": cpu_model(), "cpu_id": cpu_id(), "cpu_bf16": cpu_supports_bf16(), "gpu": None}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _count_cpu_list(text: str) -> int:
    """Count the CPUs in a Linux cpu list such as "0-3,8"."""
    count = 0
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        count += int(high) - int(low) + 1 if high else 1
    return count


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads do not help conv kernels)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        per_core = _count_cpu_list(Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read_text())
    except (OSError, ValueError):
        per_core = 1
    return max(1, available // max(1, per_core))


def threads_per_parallel_job(n_jobs: int | None, *, cores: int | None = None) -> int:
    """CPU threads for each of `n_jobs` jobs run at once on `cores` (default: this machine's physical cores).

    joblib's -1 or None mean one job per core.
    """
    cores = physical_cores() if cores is None else cores
    jobs = cores if n_jobs is None or n_jobs < 1 else n_jobs
    return max(1, cores // jobs)


def tune_glibc_malloc() -> str:
    """Keep freed activation buffers in the heap instead of returning them to the OS each step.

    With glibc's defaults every step unmaps its large buffers and page-faults them back;
    these thresholds (the largest mmap threshold glibc accepts) stop that. Returns what was done.
    """
    if "tcmalloc" in os.environ.get("LD_PRELOAD", "") or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return Path(os.environ["LD_PRELOAD"].split(":")[0]).name
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = all(
            libc.mallopt(param, value)
            for param, value in ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 256 << 20))
        )
    except (OSError, AttributeError):
        return "glibc"
    return "glibc-tuned" if ok else "glibc"


def resolve_runtime(
    *, device: str, threads: int, precision: str, compile: str | bool, channels_last: str | bool, deterministic: bool
) -> Runtime:
    """Turn `auto` into concrete choices for this machine; refuse what it cannot do."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device} was asked for, but torch sees no CUDA device (use device=cpu or auto)")
    is_cuda = device.startswith("cuda")
    if precision == "auto":
        bf16_ok = torch.cuda.is_bf16_supported() if is_cuda else cpu_supports_bf16()
        precision = "bf16" if bf16_ok else "fp32"
    if compile == "auto":
        # On CPU, inductor's compile time (about a minute) outweighs its gain for this small
        # conv net; on GPU it fuses the many small kernels of a step.
        compile = is_cuda and not deterministic
    if channels_last == "auto":
        channels_last = True
    if threads == 0:
        threads = physical_cores()
    allocator = "cuda-caching" if is_cuda else tune_glibc_malloc()
    return Runtime(
        device=device,
        threads=int(threads),
        precision=precision,
        compile=bool(compile),
        channels_last=bool(channels_last),
        allocator=allocator,
        deterministic=bool(deterministic),
    )


def apply_runtime(runtime: Runtime, *, seed: int) -> None:
    """Seed every RNG and set threads and determinism for the process."""
    torch.set_num_threads(runtime.threads)
    random.seed(seed)
    torch.manual_seed(seed)
    if runtime.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
    if runtime.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def git_commit(path: Path | None = None) -> dict:
    """The commit of the checkout holding this package (or `path`), and whether it has local changes."""
    where = str(path or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def provenance(argv: list[str], *, data_root: str | None = None) -> dict:
    """What a committed measurement record states about itself: the command as typed (`data_root` written as
    <MNIST dir>), the machine (CPU id and native bf16 beside the model name), the commit, the date, and the load
    average when it started (near 0 on idle cores; a measurement beside another job says so)."""
    typed = ["<MNIST dir>" if data_root is not None and arg == data_root else arg for arg in argv]
    return {
        "command": "python " + " ".join(typed),
        "machine": machine_info("cpu"),
        "git": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_before": round(os.getloadavg()[0], 2),
    }


def package_versions() -> dict:
    """Versions of Python and the packages a run depends on."""
    versions = {"python": sys.version.split()[0]}
    for name in ("torch", "torchvision", "hydra-core", "omegaconf", "tensorboard", "numpy", "vae"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda
    return versions

"""Runs that move between machines: a resume resolves device, precision, compile and channels_last afresh."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from vae import distributed
from vae.checkpoint import load_checkpoint
from vae.config import ConfigError
from vae.runs import write_run_json
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, resolve_runtime
from vae.train import resume_config, run_runtime, train

from conftest import TINY, compose_config

# What a checkpoint written on a GPU machine says it was saved with.
GPU_RUNTIME = {
    "device": "cuda",
    "threads": 64,
    "precision": "bf16",
    "compile": True,
    "channels_last": True,
    "allocator": "cuda-caching",
    "deterministic": False,
}


def _as_if_saved_on_a_gpu(run_dir):
    path = run_dir / "checkpoints" / "last.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["runtime"] = dict(GPU_RUNTIME)
    torch.save(checkpoint, path)


def test_a_run_saved_on_a_gpu_resumes_on_this_machine_and_says_so_in_run_json(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config([*TINY, "epochs=1"]), run_dir)
    _as_if_saved_on_a_gpu(run_dir)

    overrides = ["epochs=2", "device=auto"]
    config, checkpoint = resume_config(run_dir, compose_config([*TINY, *overrides]), overrides)
    metrics = train(config, run_dir, resume_from=checkpoint)
    assert metrics["epoch"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]

    here = resolve_runtime(
        device="auto", threads=0, precision="auto", compile="auto", channels_last="auto", deterministic=False
    ).as_dict()
    info = json.loads((run_dir / "run.json").read_text())
    assert len(info["resumes"]) == 1
    resumed = info["resumes"][0]
    assert {"step", "started", "git", "command"} <= resumed.keys()  # the entry's earlier keys stay
    assert resumed["step"] == 8  # 256 images, batches of 32: one epoch
    assert resumed["saved_runtime"] == GPU_RUNTIME  # what the checkpoint said
    assert resumed["runtime"] == here  # resolved afresh for this machine, not the saved settings
    if not torch.cuda.is_available():
        assert resumed["runtime"]["device"] == "cpu" and resumed["runtime"]["compile"] is False
        assert resumed["machine"]["gpu"] is None
    assert resumed["machine"]["cpu"] == cpu_model() and resumed["machine"]["cpu_bf16"] == cpu_supports_bf16()
    assert info["machine"]["cpu"] == cpu_model()  # the first attempt's machine too
    # The checkpoint records the settings it was saved with: now this machine's.
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["runtime"] == here


def test_a_resume_may_change_how_fast_it_runs_but_not_deterministic(tiny_run):
    overrides = ["epochs=2", "precision=fp32", "compile=false", "channels_last=false", "threads=1"]
    config, checkpoint = resume_config(tiny_run, compose_config([*TINY, "latent_dim=2", *overrides]), overrides)
    runtime = run_runtime(
        OmegaConf.to_container(config, resolve=True), distributed.from_environment(), saved=checkpoint["runtime"]
    )
    assert (runtime.precision, runtime.compile, runtime.channels_last, runtime.threads) == ("fp32", False, False, 1)
    assert runtime.deterministic == checkpoint["runtime"]["deterministic"]

    with pytest.raises(ConfigError, match="deterministic"):
        resume_config(tiny_run, compose_config([*TINY, "latent_dim=2", "deterministic=true"]), ["deterministic=true"])


def test_run_json_written_before_appends_a_resume_with_its_old_entries_untouched(tmp_path):
    old = {
        "git": {"commit": None, "dirty": None},
        "versions": {"python": "3.11"},
        "runtime": {"device": "cpu"},
        "command": ["vae.train"],
        "started": "2024-01-01T00:00:00+0000",
        "resumes": [{"step": 3, "started": "2024-01-02T00:00:00+0000", "git": {}, "command": ["resume=x"]}],
    }
    (tmp_path / "run.json").write_text(json.dumps(old))
    runtime = {**GPU_RUNTIME, "device": "cpu", "compile": False}
    info = write_run_json(tmp_path, runtime=runtime, resumed_from_step=7, saved_runtime=GPU_RUNTIME)
    assert info == json.loads((tmp_path / "run.json").read_text())
    assert {key: info[key] for key in old if key != "resumes"} == {key: old[key] for key in old if key != "resumes"}
    assert info["resumes"][0] == old["resumes"][0]
    new = info["resumes"][1]
    assert (new["step"], new["runtime"], new["saved_runtime"]) == (7, runtime, GPU_RUNTIME)
    assert new["machine"] == {"cpu": cpu_model(), "cpu_id": cpu_id(), "cpu_bf16": cpu_supports_bf16(), "gpu": None}


def test_cpu_model_falls_back_to_platform_processor(monkeypatch):
    import vae.runtime

    class Unreadable:
        def __init__(self, *_):
            pass

        def read_text(self):
            raise OSError("no /proc here")

    monkeypatch.setattr(vae.runtime, "Path", Unreadable)
    monkeypatch.setattr(vae.runtime.platform, "processor", lambda: "arm")
    assert cpu_model() == "arm"
    assert cpu_id() is None


def test_cpu_id_reads_vendor_family_and_model(monkeypatch):
    import vae.runtime

    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel\t\t: 9\n"

    class Fake:
        def __init__(self, *_):
            pass

        def read_text(self):
            return text

    monkeypatch.setattr(vae.runtime, "Path", Fake)
    assert cpu_id() == "AuthenticAMD family 26 model 2"
    text = "processor\t: 0\nCPU implementer\t: 0x41\n"  # an ARM /proc/cpuinfo has neither field
    assert cpu_id() is None

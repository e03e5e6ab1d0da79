# `make help` lists the targets. Every target that runs Python installs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
RUN ?= latest
SWEEP ?= latest

.DEFAULT_GOAL := help
.PHONY: help install weights wheelhouse gpu-carry gpu-dry-run train sweep report explore generate evaluate quality serve bench test test-fast lint format tensorboard clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'
	@echo '  pass trainer overrides with ARGS, e.g. make train ARGS="latent_dim=16 epochs=5"'

install: $(VENV)/.installed ## create .venv and install the project with its dev extras

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

weights: install ## the committed runs' weights, kept in git history, back into experiments/*/runs/*/checkpoints/ (byte for byte)
	$(PY) -m vae.weights restore

train: install ## train the lecture model on MNIST (python -m vae.train $(ARGS))
	$(PY) -m vae.train $(ARGS)

sweep: install ## the kl_weight x latent_dim sweep of the README (Hydra multirun)
	$(PY) -m vae.train -m kl_weight=0,1e-4,1e-3 latent_dim=2,16 $(ARGS)

report: install ## the sweep report: make report [SWEEP=outputs/multirun/<timestamp>] (default: the newest sweep)
	$(PY) -m vae.report sweep=$(SWEEP) $(ARGS)

explore: install ## the lecture's latent views of a run: make explore [RUN=outputs/runs/<timestamp>] (default: the newest run)
	$(PY) -m vae.explore run=$(RUN) $(ARGS)

generate: install ## samples from the prior: make generate [RUN=...] [ARGS="n=100 temperature=0.7"]
	$(PY) -m vae.generate run=$(RUN) $(ARGS)

evaluate: install ## -ELBO, IWAE bound and active units on the test split: make evaluate [RUN=...] [ARGS="iwae_k=100"]
	$(PY) -m vae.evaluate run=$(RUN) $(ARGS)

quality: install ## FID, KID, precision/recall of prior samples vs the test split: make quality [RUN=...] [ARGS="n=10000"]
	$(PY) -m vae.quality run=$(RUN) $(ARGS)

serve: install ## the latent explorer in the browser: make serve [RUN=...] [ARGS="port=8000"]
	$(PY) -m vae.serve run=$(RUN) $(ARGS)

bench: install ## training throughput, project vs naive baseline, in one run (experiments/bench)
	$(PY) experiments/bench/bench.py --data-root $${VAE_DATA_DIR:-./data} $(ARGS)

# pytest-xdist: one worker per core, each pinned to its core (tests/conftest.py); the tests that
# share the CLI-built sweep run on one worker (--dist loadgroup). PYTEST_WORKERS=0 runs them in-process.
PYTEST_WORKERS ?= auto
PYTEST_N := -n $(PYTEST_WORKERS) --dist loadgroup

test: install ## run the whole test suite (what CI runs)
	$(PY) -m pytest -q $(PYTEST_N) $(ARGS)

test-fast: install ## everything but the `slow` tests (CLI subprocesses, browsers, longer trainings)
	$(PY) -m pytest -q $(PYTEST_N) -m "not slow" $(ARGS)

lint: install ## check formatting and lint with the pinned ruff
	$(VENV)/bin/ruff format --check vae tests experiments
	$(VENV)/bin/ruff check vae tests experiments

format: install ## reformat the package, tests and experiments with the pinned ruff
	$(VENV)/bin/ruff format vae tests experiments

tensorboard: install ## open TensorBoard over every run and sweep in outputs/
	$(VENV)/bin/tensorboard --logdir outputs

wheelhouse: install ## wheels for a machine with torch but no package index: wheelhouse/ (README, "Data": the pip command to run there)
	rm -rf wheelhouse && mkdir -p wheelhouse
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --dest wheelhouse \
		"hydra-core==$$($(PY) -c 'import hydra; print(hydra.__version__)')" \
		"omegaconf==$$($(PY) -c 'import omegaconf; print(omegaconf.__version__)')" \
		hydra-joblib-launcher joblib
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir wheelhouse "antlr4-python3-runtime==4.9.3"
	for v in 3.10 3.11 3.12 3.13; do $(PY) -m pip download --quiet --no-deps --only-binary=:all: --dest wheelhouse \
		--python-version $$v --platform manylinux2014_x86_64 "pyyaml==$$($(PY) -c 'import yaml; print(yaml.__version__)')"; done
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir wheelhouse .
	@ls wheelhouse

# What a GPU node needs beside the tree (experiments/gpu/README.md): the wheels, MNIST's four .gz files
# (from MNIST=<dir>, else $$VAE_DATA_DIR) and the weights of the runs it evaluates at k = 5000.
GPU_RUNS ?= burda_resnet-seed0 burda_hvae-seed0
MNIST ?= $(VAE_DATA_DIR)
gpu-carry: wheelhouse weights ## gpu_carry/ for a GPU node: wheels, MNIST (MNIST=<dir>), the seed-0 weights (GPU_RUNS=...)
	@test -n "$(MNIST)" || { echo "error: name MNIST's folder: make gpu-carry MNIST=<dir with the four .gz files>"; exit 2; }
	rm -rf gpu_carry && mkdir -p gpu_carry/wheelhouse gpu_carry/mnist
	cp wheelhouse/hydra_core-*.whl wheelhouse/omegaconf-*.whl wheelhouse/antlr4_python3_runtime-*.whl wheelhouse/pyyaml-*.whl gpu_carry/wheelhouse/
	for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
		cp "$$(ls $(MNIST)/$$f.gz $(MNIST)/MNIST/raw/$$f.gz 2>/dev/null | head -1)" gpu_carry/mnist/ || exit 2; done
	for run in $(GPU_RUNS); do mkdir -p gpu_carry/runs/$$run && \
		cp experiments/likelihood/runs/$$run/checkpoints/last.pt gpu_carry/runs/$$run/ || exit 2; done
	du -sh gpu_carry

gpu-dry-run: install ## the GPU run's every step at toy sizes on this CPU (under 2 minutes): make gpu-dry-run [OUT=/tmp/gpu-dry]
	experiments/gpu/run.sh --dry-run --out $${OUT:-outputs/gpu/dry-run-$$(date +%Y%m%d-%H%M%S)}

clean: ## remove the virtual environment and caches (keeps outputs/ and data/)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

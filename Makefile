# regbench: `make demo` sets up and runs the default comparison; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch goes in first: a bare `torch` requirement in a fresh environment would pull the newest
# CUDA build and several GB of CUDA packages. Elsewhere use e.g.
#   make install TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.regbench-installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow test-all lint format smoke bench fingerprint reproduce soak gpu-wheels clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv with the CPU build of torch and regbench (editable, with dev tools)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: install ## Set up and run the default comparison (MNIST-1D, MLP, baseline vs [l2, dropout], 3 seeds)
	$(BIN)/regbench run

test: install ## Set up and run the test suite (slow tests excluded)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install ## Run only the slow end-to-end tests (launchers, SIGKILL, label noise); CI runs these too
	$(BIN)/python -m pytest -q -m slow

test-all: install ## Run every test, the slow ones too
	$(BIN)/python -m pytest -q

lint: install ## ruff lint and format check
	$(BIN)/ruff check regbench tests hydra_plugins bench
	$(BIN)/ruff format --check regbench tests hydra_plugins bench

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix regbench tests hydra_plugins bench
	$(BIN)/ruff format regbench tests hydra_plugins bench

smoke: install ## A tiny end-to-end run, as CI would: two epochs, one seed
	CI=true $(BIN)/regbench run trainer.epochs=2 trainer.seeds=1 dataset.num_samples=600

bench: install ## Time regbench against a textbook training loop on one sweep (prints speedup: <ratio>)
	$(BIN)/python bench/bench.py

fingerprint: install ## A hash of a broad sweep's numbers: the same before and after a change that must keep them
	$(BIN)/python bench/fingerprint.py

reproduce: install ## Train and print published numbers: MNIST-1D's MLP (~68% test), random labels (train >> chance, test at chance)
	$(BIN)/python bench/reproduce.py

soak: install ## Memory across a 200-job sweep in one process (RSS per 25 jobs; a few minutes)
	$(BIN)/python bench/soak.py --jobs 200

gpu-wheels: install ## Fetch the wheels a lent GPU machine (Python 3.12) lacks into .whl/, for bench/gpu_check.sh
	mkdir -p .whl
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_17_x86_64 -d .whl \
		$$($(BIN)/python -m pip list --format=freeze | grep -iE '^(hydra-core|omegaconf|mnist1d)==')
	$(BIN)/python -m pip wheel -q --no-deps -w .whl \
		$$($(BIN)/python -m pip list --format=freeze | grep -iE '^antlr4-python3-runtime==')

clean: ## Remove the virtualenv and caches (results/ is kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info

# Two commands do everything on a fresh machine:
#   make demo   build .venv, run the pipeline on procedural objects, then on procedural panorama rooms
#               (configs/panorama.cfg), print where both reports are
#   make test   build .venv, run the test suite
#   make gpu-benchmark   both tasks at 64x64 with the GPU presets on one GPU (configs/gpu-*.cfg), side by side
PYTHON ?= python3
# A failing `nvsc run` must fail the target even though its output goes through `tee`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# Two Luigi workers of one thread each keep both cores busy: a NeRF fit or a training of one thread scales better
# than one of two, and the controls' fits run while the generators train (pipeline/__init__.py sets the threads).
WORKERS ?= 2
# The test suite runs in as many pytest-xdist workers, one test file at a time each (a file's tests share its
# module-scoped fixtures); tests/conftest.py gives each worker its share of the cores.
TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned, so pip takes the build already on this machine's disk instead of downloading a newer one.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test venv clean-runs gpu-benchmark

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]' $(TORCH)
	touch $@

demo: venv
	@mkdir -p runs
	$(BIN)/nvsc run --workers $(WORKERS) | tee runs/demo-objects.txt
	$(BIN)/nvsc run --workers $(WORKERS) --config configs/panorama.cfg | tee runs/demo-panorama.txt
	@echo; echo "nvsc demo: the reports of both tasks (objects, then panoramas):"
	@grep -h "^Report page:" runs/demo-objects.txt runs/demo-panorama.txt

# Both tasks with the GPU presets 3dim-64 and mvd-64 at 64x64 (configs/gpu-objects.cfg, configs/gpu-panorama.cfg),
# side by side on one GPU; prints the time per stage and where both reports are (runs-gpu/BuildReport/).
gpu-benchmark: venv
	PYTHON=$(BIN)/python benchmarks/pipeline_gpu.sh

test: venv
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

clean-runs:
	rm -rf runs

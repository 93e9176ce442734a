# The verbs that README and CI use verbatim.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.local/dagster

.PHONY: setup run dev check test test-deps bench clean

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dagster,local,dev,torch,hf,deploy]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

## run: set up, start the local S3 server and materialize every asset; print the manifest summary
run: setup
	$(BIN)/dataset-assets run

## dev: the Dagster UI (webserver + daemon) on http://127.0.0.1:3000 against the local S3 server
# `dg dev` (dagster-dg-cli) replaces `dagster dev`, superseded in Dagster 1.13; it loads the
# project from pyproject.toml's [tool.dg]. VIRTUAL_ENV names the project's venv as the active one
# (else dg warns that the active and the project venv differ).
dev: setup
	$(BIN)/dataset-assets local-s3 start
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg dev -h 127.0.0.1 -p 3000

## test-deps: system packages the tests need (Ceph RADOS Gateway), idempotent
test-deps:
	bash scripts/install-test-deps.sh

## check: lint, types, layer contracts, Dagster definitions load
check: setup
	$(BIN)/ruff check dataset_assets dataset_assets_tests bench
	$(BIN)/mypy
	$(BIN)/mypy --strict dataset_assets/core dataset_assets/storage dataset_assets/loader dataset_assets/pipeline
	$(BIN)/lint-imports
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

## test: everything CI runs (servers are started by the tests themselves)
test: setup test-deps check
	$(BIN)/pytest
	bash scripts/check-loader-without-dagster.sh

## bench: every benchmark, peers side by side (takes ~30 min; see README "Benchmarks")
bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/bench_publish.py
	$(BIN)/python bench/bench_loader.py
	$(BIN)/python bench/bench_dedup.py
	$(BIN)/python bench/bench_signatures.py
	$(BIN)/python bench/bench_compile.py --sizes-mb 150 4000

clean:
	-$(BIN)/dataset-assets local-s3 stop
	rm -rf .local

# Two commands do all set-up on a fresh machine:
#   make run   - install (first time) and run the main job on the shipped sample
#   make test  - install (first time) and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.clio-installed
OUTPUT_DIR ?= outputs
CONFIG ?= configs/sample.yaml
LIMIT ?= 500
# Two test processes, a file each at a time (module fixtures load once); the slowest listed.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=25
# Portable llama.cpp build: a wheel built with -march=native can crash on another CPU.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
# `make install LLAMA_AVX512=1` on a CPU with AVX-512 VNNI (the wheel then runs only on such
# CPUs): the local model's prompt evaluation, most of the LLM facet step's CPU time, measured
# 1.3-1.5x faster there (bench/llm_cost.py; docs/SCALE.md). Its numbers differ slightly from
# the AVX2 build's, so some greedy answers differ too.
LLAMA_AVX512 ?= 0
ifeq ($(LLAMA_AVX512),1)
LLAMA_CMAKE_ARGS += -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON
endif

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM := /usr/bin/chromium
# Debian's Chromium for the browser tests; Playwright drives it (never `playwright install`).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

run: install
	$(VENV)/bin/clio run --config $(CONFIG) --limit $(LIMIT) --output-dir $(OUTPUT_DIR)

test: install $(CHROMIUM)
	$(VENV)/bin/ruff check clio flows tests bench
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check clio flows tests bench
	$(VENV)/bin/ruff format --check clio flows tests bench

bench: install
	$(PY) bench/scrub_throughput.py

clean:
	rm -rf $(OUTPUT_DIR) .pytest_cache .ruff_cache

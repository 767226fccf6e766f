# Two commands:  make jokes  (the walkthrough, end to end)   make test  (lint and tests)
# Also: make test-fast (the tests not marked slow), make bench, make bench-large,
# make doctor (a self-check of this machine to paste into bug reports; DOCTOR_FLAGS=--size tiny),
# make serve (the OpenAI-compatible server; MODEL=run1 MODELS_DIR=checkpoint SERVE_FLAGS=...)
# On Linux with an NVIDIA driver the venv gets TensorFlow with its CUDA libraries (the
# and-cuda extra, at requirements.txt's version); GPU=1 or GPU=0 forces the choice.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= 117M
MODELS_DIR ?= models
JOKES ?= reddit_jokes.json
JOKES_URL ?= https://raw.githubusercontent.com/taivop/joke-dataset/master/reddit_jokes.json
STEPS ?= 300
RUN ?= run1
PROMPT ?= Why did the chicken cross the road?|
TRAIN_FLAGS ?=
DOCTOR_FLAGS ?=
NVIDIA_DRIVER_FILE ?= /proc/driver/nvidia/version
GPU ?= $(if $(and $(filter Linux,$(shell uname -s)),$(or $(wildcard $(NVIDIA_DRIVER_FILE)),$(shell command -v nvidia-smi))),1,0)
TENSORFLOW_PIN = $(shell grep -E '^tensorflow==' requirements.txt)
TENSORFLOW_CUDA = $(if $(filter 1,$(GPU)),'$(subst tensorflow==,tensorflow[and-cuda]==,$(TENSORFLOW_PIN))')
SERVE_FLAGS ?=

.PHONY: jokes test test-fast bench bench-large doctor venv serve

# The package itself installs editable, without its dependencies (requirements.txt pins
# them): the gpt2tune-* commands, and `import gpt2tune` without PYTHONPATH.
$(VENV)/.runtime: requirements.txt pyproject.toml $(VENV)/.gpu-$(GPU)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt $(TENSORFLOW_CUDA)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Which TensorFlow the venv has (.gpu-1: with CUDA): a new choice installs again.
$(VENV)/.gpu-%:
	mkdir -p $(VENV)
	rm -f $(VENV)/.gpu-*
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n auto

test-fast: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n auto -m 'not slow'

jokes: $(VENV)/.runtime
	PYTHON=$(PY) MODEL='$(MODEL)' MODELS_DIR='$(MODELS_DIR)' JOKES='$(JOKES)' \
	JOKES_URL='$(JOKES_URL)' STEPS='$(STEPS)' RUN='$(RUN)' PROMPT='$(PROMPT)' \
	TRAIN_FLAGS='$(TRAIN_FLAGS)' sh scripts/jokes.sh

bench: $(VENV)/.dev
	PYTHONPATH=src $(PY) bench/run_all.py

bench-large: $(VENV)/.runtime
	PYTHONPATH=src $(PY) bench/bench_large.py
	PYTHONPATH=src $(PY) bench/bench_sample_large.py

doctor: $(VENV)/.runtime
	$(VENV)/bin/gpt2tune-doctor $(DOCTOR_FLAGS)

serve: $(VENV)/.runtime
	$(VENV)/bin/gpt2tune-serve --models_dir '$(MODELS_DIR)' --model_name '$(MODEL)' $(SERVE_FLAGS)

# One entry point for people and CI. Everything installs into .venv from constraints.txt,
# which pins torch/torchvision for this project's machines (never for users).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PKGS   := -e ".[all]" -e "integrations/langchain[chroma]" -e "integrations/llama-index[chroma]"

.PHONY: install demo test test-fast fuzz lint format bench demo-model clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements-dev.txt integrations/langchain/pyproject.toml integrations/llama-index/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch torchvision
	$(PIP) install -q -c constraints.txt $(PKGS) -r requirements-dev.txt
	# animal-mnist declares tensorflow but its data needs none: take the data only.
	$(PIP) install -q --no-deps animal-mnist
	touch $@

demo: $(STAMP)
	$(VENV)/bin/clip-multimodal demo --data-dir .data

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not browser"

# Fuzzes load_image (tests/fuzz/) for a fixed budget: inputs it finds go to .fuzz/corpus,
# crashes to .fuzz/crash-*. Any exception other than ImageLoadError is a crash.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	mkdir -p .fuzz/corpus
	$(PY) tests/fuzz/fuzz_load_image.py .fuzz/corpus tests/fuzz/corpus \
		-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -artifact_prefix=.fuzz/

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy clip_multimodal integrations/langchain/langchain_clip_multimodal integrations/llama-index/llama_index

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m benchmarks --suite cpu

# Retrains the bundled demo model from a fixed seed (a few CPU minutes).
demo-model: $(STAMP)
	$(PY) -m clip_multimodal.training.demo_model --out clip_multimodal/assets/demo-model

clean:
	rm -rf $(VENV) .data .bench .pytest_cache .mypy_cache .ruff_cache

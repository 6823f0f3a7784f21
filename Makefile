# The two commands of the README: `make up` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM_STAMP := $(VENV)/.chromium
TINY_SD := models/stable_diffusion/tiny/model_index.json
TINY_LM := models/text_generation/tiny/model.safetensors

BENCH_TOOLS := $(VENV)/.bench-tools

.PHONY: install up test lint clean bench bench-smoke

install: $(STAMP) models/digits/1/weights.npz $(TINY_SD) $(TINY_LM) node_modules/.bin/anvil $(CHROMIUM_STAMP)
	$(BIN)/python -m tritonfleet.payments.chain.contracts

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

# A tiny GPT-2 with random weights (it writes nonsense) and its tokenizer, for the generate extension.
$(TINY_LM): models/text_generation/build_tiny.py $(STAMP)
	TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/python models/text_generation/build_tiny.py

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

# The container files are linted here; the Kubernetes manifests and the compose file are
# rendered and validated by the suite (tests/deploy/), all with tools from the dev dependencies.
lint: install
	$(BIN)/ruff check src tests models bench
	$(BIN)/mypy
	$(BIN)/hadolint --config deploy/hadolint.yaml deploy/Containerfile deploy/Containerfile.node

# The suite, then every benchmark scenario for a few seconds: CI proves the harness works.
test: lint $(BENCH_TOOLS)
	$(BIN)/pytest -q
	$(BIN)/python -m bench.smoke

# The benchmarks' load generator and reference proxy, and the `ip` and `tc` of the
# network-namespace tests (iproute2), come from Debian's packages.
$(BENCH_TOOLS): | $(STAMP)
	command -v wrk >/dev/null && command -v tc >/dev/null && (command -v nginx >/dev/null || test -x /usr/sbin/nginx) \
		|| (apt-get update && apt-get install -y wrk nginx iproute2)
	touch $@

# Every scenario with its full settings, then docs/benchmarks.md; about 21 minutes on 2 cores.
bench: install $(BENCH_TOOLS)
	$(BIN)/python -m bench.overhead --duration-s 3 --rounds 3
	$(BIN)/python -m bench.scaleout --duration-s 4 --rounds 3
	$(BIN)/python -m bench.skew --duration-s 4 --rounds 3
	$(BIN)/python -m bench.failover
	$(BIN)/python -m bench.paid --duration-s 3 --rounds 3
	$(BIN)/python -m bench.grpc_overhead --duration-s 3 --rounds 3
	$(BIN)/python -m bench.generate --duration-s 3 --rounds 3
	$(BIN)/python -m bench.faults
	$(BIN)/python -m bench.report

# Each scenario for a few seconds and the report, into a temp dir: proves the harness works.
bench-smoke: install $(BENCH_TOOLS)
	$(BIN)/python -m bench.smoke

clean:
	rm -rf $(VENV) .tritonfleet node_modules

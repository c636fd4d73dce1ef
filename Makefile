# Two commands matter: `make run` starts the app, `make test` runs every test.
# Both create or refresh .venv first, so either works on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A stamp per requirements file: pip runs again only when a pin changed.
RUN_STAMP := $(VENV)/.stamp-run
DEV_STAMP := $(VENV)/.stamp-dev

.PHONY: run test lint format sim-image perf perf-benchmark perf-swarm reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

# DXG_HOST/DXG_PORT are passed on because Streamlit binds its socket before app.py is read.
run: $(RUN_STAMP)
	$(BIN)/python -m streamlit run app.py \
		--server.address "$${DXG_HOST:-127.0.0.1}" --server.port "$${DXG_PORT:-8080}"

# Lint and the layering contract first: a slip fails in seconds instead of after the whole suite.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The fault and hostile-use scenarios alone, in file order, with their table of figures (make test
# runs them too). Set DXG_REQUIRE_DOCKER=1 to fail rather than skip without Docker.
reliability: $(DEV_STAMP)
	$(BIN)/python -m pytest tests/reliability -p no:randomly -q

sim-image: $(RUN_STAMP)
	$(BIN)/python -m simulator.image

perf: $(DEV_STAMP)
	$(BIN)/python -m perf.event_store
	$(BIN)/python -m perf.control_plane
	$(BIN)/python -m perf.simulator_timing

# The benchmark's own benchmark: which HTTP client, how many chunks/s one runner sustains, and
# agreement with AIPerf and llama-benchy, each installed on first use into its own venv under
# .cache/perf-venvs (about 1.5 GB, never into .venv). Run it on a quiet machine.
perf-benchmark: $(DEV_STAMP)
	$(BIN)/python -m perf.http_clients
	$(BIN)/python -m perf.benchmark_capacity
	$(BIN)/python -m perf.benchmark_agreement
	$(BIN)/python -m perf.gateway_overhead

# Models on another node: a real two-node swarm made on this machine (root, Docker).
perf-swarm: $(DEV_STAMP)
	$(BIN)/python -m perf.swarm_scaleout

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

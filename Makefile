# `make run` serves the app on http://127.0.0.1:$(PORT); `make test` runs the whole suite.
# Both set up what they need first: a virtualenv in .venv, packages, the database.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run cluster bench-layers faults bench bench-search test test-fast lint setup system-packages clean

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (python3 is " + sys.version.split()[0] + ").")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

setup: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py collectstatic --noinput --verbosity 0

run: setup
	@echo "Serving on http://127.0.0.1:$(PORT)/ (demo logins: alice, bob, carol, admin; password chatdemo). Ctrl+C stops."
	export CHAT_ECHO_ENABLED=$${CHAT_ECHO_ENABLED:-1} CHAT_DEMO_LOGINS=$${CHAT_DEMO_LOGINS:-1} CHAT_SITE_URL=$${CHAT_SITE_URL:-http://127.0.0.1:$(PORT)}; exec bin/daphne-worker -b 127.0.0.1 -p $(PORT)

# The production topology without Docker: nginx on $(PORT) -> $(WORKERS) Daphne workers -> Redis and
# PostgreSQL (SQLite when PostgreSQL is absent). See bin/cluster and README "Scaling".
WORKERS ?= 3
cluster: $(VENV)/.installed
	@bin/ensure-system-packages redis-server nginx
	exec $(PY) bin/cluster --workers $(WORKERS) --port $(PORT)

system-packages:
	@bin/ensure-system-packages

# The two channels-redis layers measured side by side (docs/scaling.md); figures, not tests.
bench-layers: $(VENV)/.dev-installed
	@bin/ensure-system-packages redis-server nginx postgresql
	$(PY) -m bench.layers

# Fault injection against the local cluster (docs/reliability.md): a worker SIGKILLed, Redis and
# PostgreSQL restarted, a slow reader, a reconnect storm, a graceful SIGTERM. Prints a table per
# scenario, writes bench/results/faults.json, fails if a message was lost or duplicated.
# FAULTS_ARGS="--quick" or "--scenario redis" narrow it.
faults: $(VENV)/.dev-installed
	@bin/ensure-system-packages redis-server nginx postgresql
	$(PY) -m bench.faults $(FAULTS_ARGS)

# The benchmark (bench/bench.py): W1 fan-out, W2 idle capacity, W3 send-to-ack, W4 big room, each against the
# product and two baselines measured in the same session (bench/naive, the Channels tutorial's
# consumer; bench/bare_server.py, a bare `websockets` broadcast server). Prints tables with ratios
# and PASS/MISS against the issue's targets; writes bench/results/bench.json, w1-latency.png and
# w2-memory.png. About 12 minutes; BENCH_ARGS="--quick", "--only w1,w4", "--targets product,naive".
bench: $(VENV)/.dev-installed
	@bin/ensure-system-packages redis-server nginx postgresql
	$(PY) -m bench.bench $(BENCH_ARGS)

# Search latency (bench/search.py): chat.search over 1,000,000 generated messages (mixed English and
# Chinese) on PostgreSQL and on SQLite, with and without a room filter, p50/p95/p99/max per query
# and PASS/MISS against p95 < 200 ms on PostgreSQL; writes bench/results/search.json. The databases
# are generated once (a few minutes) and kept in var/bench-search/. BENCH_SEARCH_ARGS="--quick"
# (100,000 messages), "--messages 100000", "--databases postgresql".
bench-search: $(VENV)/.dev-installed
	@bin/ensure-system-packages postgresql
	$(PY) -m bench.search $(BENCH_SEARCH_ARGS)

# axe-core (accessibility checks the browser tests inject into pages), from the npm registry.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: $(VENV)/.dev-installed system-packages node_modules/.installed
	$(PY) -m pytest

# The quick loop while working: tests/unit and tests/app (in-process Django, no servers to start
# but a throwaway redis-server for a few). About 40 s on two cores.
test-fast: $(VENV)/.dev-installed
	@bin/ensure-system-packages redis-server
	$(PY) -m pytest tests/unit tests/app

# ruff (style and common bugs) and mypy (types; pyproject.toml [tool.mypy]), bin/cluster included in both.
# mypy's Django plugin loads the settings, which read the local secret key: config.checkout makes it.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m config.checkout
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .pytest_cache node_modules

# The two commands of the README: `make run` and `make test`. Everything they need is
# installed from here: the virtualenv and its packages, and (for the tests) the system
# packages (redis-server, chromium, nginx, prometheus, nghttp2-client, curl), through
# scripts/system-deps.sh.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
ADDR ?= 127.0.0.1:8000
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: bench-h2 bench-scale test-deploy run test test-django6 test-py313 test-py310 venv system-deps autobahn lint typecheck importlint pytest bench bench-quick bench-channels docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo,uvloop,bench]'
	touch $@

venv: $(BIN)/.installed

run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runchannelserver $(ADDR) $(RUN_ARGS)

system-deps:
	bash scripts/system-deps.sh

# The Autobahn|Testsuite fuzzing client runs on Python 2.7 only: its own virtualenv.
autobahn:
	bash tests/autobahn/install.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check channelserver tests bench

typecheck: venv
	$(BIN)/mypy

importlint: venv
	$(BIN)/lint-imports

docs: venv
	$(PY) -m channelserver.docgen

pytest: venv
	$(BIN)/pytest $(PYTEST_ARGS)

test: venv system-deps autobahn lint typecheck importlint
	$(PY) -m channelserver.docgen --check
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) test-django6 test-py313 test-py310

# The suite again on every other Python users run, each in a virtualenv of its own
# (scripts/extra-venv.sh finds the Python as a pyenv build or on PATH): Python 3.12 and
# 3.13 with the newest Django 6 (Django 6 needs Python 3.12+), and Python 3.10, the oldest
# Python supported, with Django 5.2 LTS. The main run above is Python 3.11 with Django 5.2.
VERSIONS := -c "import django, sys; print(f'Python {sys.version.split()[0]}, Django {django.__version__}')"

test-django6: system-deps autobahn
	bash scripts/extra-venv.sh .venv-django6 3.12 'django>=6'
	.venv-django6/bin/python $(VERSIONS)
	.venv-django6/bin/pytest $(PYTEST_ARGS)

test-py313: system-deps autobahn
	bash scripts/extra-venv.sh .venv-py313 3.13 'django>=6'
	.venv-py313/bin/python $(VERSIONS)
	.venv-py313/bin/pytest $(PYTEST_ARGS)

test-py310: system-deps autobahn
	bash scripts/extra-venv.sh .venv-py310 3.10
	.venv-py310/bin/python $(VERSIONS)
	.venv-py310/bin/pytest $(PYTEST_ARGS)

# Only the rolling deploy behind nginx (tests/deploy, also part of `make test`).
test-deploy: venv system-deps
	$(BIN)/pytest tests/deploy $(PYTEST_ARGS)

# Many WebSockets per worker (bench/scale.py): memory and idle CPU per socket, fan-out
# through Redis over 2 workers, a connect storm; every peer in the same run. See docs/scaling.md.
bench-scale: venv
	$(PY) bench/scale.py

bench: venv system-deps
	$(PY) bench/run.py
	$(PY) bench/h2.py

# HTTP/2 alone: h2load against channelserver, Hypercorn and Granian, h2c and TLS.
bench-h2: venv system-deps
	$(PY) bench/h2.py

# Only the Channels workloads (bench/djproject), each server pinned to one CPU.
bench-channels: venv
	$(PY) bench/run.py --workloads channels --pin

bench-quick: venv
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) .venv-django6 .venv-py313 .venv-py310 .venv-autobahn build *.egg-info .pytest_cache .mypy_cache .ruff_cache test-output

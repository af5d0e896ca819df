# The two commands of the README: `make run` and `make test`. Everything they need is
# installed from here: the virtualenv and its packages, and (for the tests) the system
# packages redis-server and chromium, through scripts/system-deps.sh.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
ADDR ?= 127.0.0.1:8000
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test venv system-deps autobahn lint typecheck importlint pytest bench bench-quick docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo,uvloop]'
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

bench: venv
	$(PY) bench/run.py

bench-quick: venv
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) .venv-autobahn build *.egg-info .pytest_cache .mypy_cache .ruff_cache test-output

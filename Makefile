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

.PHONY: run test test-django6 venv system-deps autobahn lint typecheck importlint pytest bench bench-quick docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo,uvloop]'
	touch $@

venv: $(BIN)/.installed

# Django 6 needs Python 3.12 or newer: a second virtualenv runs the whole suite again on
# Python 3.12 with the newest Django 6. Python 3.12 is $(PYTHON312), `python3.12` on PATH,
# or a pyenv 3.12 build.
PYTHON312 ?= $(shell for p in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 "$$(command -v python3.12)"; do \
	[ -x "$$p" ] && "$$p" -c "" 2>/dev/null && { echo "$$p"; break; }; done)
VENV6 ?= .venv-django6

$(VENV6)/bin/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: set PYTHON312=/path/to/python3.12"; exit 1; }
	$(PYTHON312) -m venv $(VENV6)
	$(VENV6)/bin/pip install --quiet --upgrade pip
	$(VENV6)/bin/pip install --quiet -e '.[test,demo,uvloop]' 'django>=6'
	touch $@

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
	$(MAKE) test-django6

test-django6: $(VENV6)/bin/.installed system-deps autobahn
	$(VENV6)/bin/python -c "import django, sys; print(f'Python {sys.version.split()[0]}, Django {django.__version__}')"
	$(VENV6)/bin/pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/run.py

bench-quick: venv
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) $(VENV6) .venv-autobahn build *.egg-info .pytest_cache .mypy_cache .ruff_cache test-output

# The project's commands: the README, .ci/run and developers all call these.
#   make run    install, migrate, serve on http://127.0.0.1:8000/
#   make test   install, make sure the services the tests use are there, run pytest
#   make test-peers  channels_redis's own test suite against taskchan's Redis layer
#   make lint   ruff
#   make bench  the benchmark

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test test-peers lint format bench services clean

$(PY):
	@if command -v python3.12 >/dev/null 2>&1; then \
		python3.12 -m venv $(VENV); \
	else \
		echo "warning: python3.12 not found; creating $(VENV) with python3 ($$(python3 --version 2>&1))" >&2; \
		python3 -m venv $(VENV); \
	fi

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runserver 127.0.0.1:8000

services:
	bash .ci/services

# Four pytest workers on this two-core machine: most tests wait on real
# processes (workers, Redis, a browser), not on the CPU.
test: $(STAMP) services
	$(PY) -m ruff check .
	$(PY) -m pytest -n 4 $(PYTEST_ARGS)

# channels_redis's tests from its sdist (at the installed version), with every
# layer they build being taskchan's, on a Redis and a Sentinel started here.
test-peers: $(STAMP) services
	$(PY) .ci/channels_redis_suite.py

lint: $(STAMP)
	$(PY) -m ruff check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf test-artifacts .pytest_cache .ruff_cache *.egg-info

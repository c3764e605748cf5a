# The project's commands: the README, .ci/run and developers all call these.
#   make run      install, migrate, serve on http://127.0.0.1:8000/
#   make test     install, make sure the services the tests use are there, run pytest
#   make test-peers  channels_redis's own test suite against taskchan's Redis layer
#   make lint     ruff
#   make bench    the benchmark
#   make matrix   the compatibility tests on every supported Django x Python (nox)
#   make package  build the sdist and wheel, check them, smoke-test the wheel
#   make screenshots  the browser tests, then their pictures copied to docs/images
#
# .venv holds the library (editable, with its extras) and the reference
# project's, the tests' and CI's own packages: the dependency groups in
# pyproject.toml.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
NOX_ARGS ?=

.PHONY: run test test-peers lint format bench matrix package screenshots services clean

$(PY):
	@if command -v python3.12 >/dev/null 2>&1; then \
		python3.12 -m venv $(VENV); \
	else \
		echo "warning: python3.12 not found; creating $(VENV) with python3 ($$(python3 --version 2>&1))" >&2; \
		python3 -m venv $(VENV); \
	fi

# uv installs in seconds what pip takes a minute or two for (CI's time budget);
# `pip install -e '.[celery,prometheus]' --group project --group test --group dev`
# (pip 25.1 or newer) installs the same.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check 'uv>=0.8,<1'
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[celery,prometheus]' \
		--group project --group test --group dev
	@touch $@

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py runserver 127.0.0.1:8000

services:
	bash .ci/services

# Four pytest workers on this two-core machine: most tests wait on real
# processes (workers, Redis, a browser), not on the CPU.  --dist loadgroup runs
# the tests marked xdist_group("soaks") one after another on one of them.
test: $(STAMP) services
	$(PY) -m ruff check .
	$(PY) -m pytest -n 4 --dist loadgroup $(PYTEST_ARGS)

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

# Every session of noxfile.py, or some: make matrix NOX_ARGS='-s compat-3.11(django="5.2")'
matrix: $(STAMP)
	TASKCHAN_MATRIX=1 bash .ci/services
	$(PY) -m nox $(NOX_ARGS)

# The smoke test installs the wheel where Django 5.2 is already installed, on Python 3.11.
package: $(STAMP) services
	$(PY) -m nox -s package "smoke(django='5.2', python='3.11')"

# The pictures in README.md and docs/, taken by the browser tests (SOURCE:NAME; the
# detail page's from the layout test, whose traceback names no path of this machine).
SCREENSHOTS := admin-failed-messages:admin-failed-messages admin-overview:admin-overview \
	admin-failed-message-detail-1280:admin-failed-message-detail demo-failed-job:demo-failed-job
screenshots: $(STAMP) services
	$(PY) -m pytest -n 4 tests/admin/test_browser.py tests/browser/test_page.py
	for pair in $(SCREENSHOTS); do \
		cp "test-artifacts/screenshots/$${pair%%:*}.png" "docs/images/$${pair##*:}.png"; \
	done

clean:
	rm -rf test-artifacts .pytest_cache .ruff_cache *.egg-info build dist .nox

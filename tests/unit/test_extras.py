"""What works without the optional extras, and the errors that name the extra.

A plain ``pip install django-taskchan`` has neither Celery (``[celery]``) nor
prometheus_client (``[prometheus]``).  Each test runs a real process in which
those packages cannot be imported: ``sys.modules[name] = None`` is how Python
marks a module as absent, so ``import celery`` raises ModuleNotFoundError there
exactly as in a virtualenv without it.  (The wheel's smoke test,
``tests/package/smoke.py``, runs where they are really not installed.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import taskchan
from taskchan import extras
from taskchan.exceptions import MissingExtra
from tests.conftest import ROOT, done_records, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

CELERY = ("celery", "kombu")
PROMETHEUS = ("prometheus_client",)
MANAGE = "import runpy; sys.argv = ['manage.py', *sys.argv[1:]]; runpy.run_path('manage.py', run_name='__main__')"


def without(blocked: tuple[str, ...], code: str, *args: str, redis_url=None) -> subprocess.CompletedProcess:
    """Run ``code`` (then ``args`` as its argv) in a process where ``blocked`` cannot be imported."""
    script = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n{code}\n"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT, env=subprocess_env(redis_url), capture_output=True, text=True, timeout=90,
    )


def test_the_error_names_the_extra_and_the_pip_command():
    message = extras.missing_message("celery")
    assert "'celery' package, which is not installed" in message
    assert "pip install 'django-taskchan[celery]'" in message
    assert issubclass(MissingExtra, taskchan.TaskchanError)


def test_jobs_are_sent_and_run_without_either_extra(use_redis_layer, redis_url, redis_client):
    message_id = taskchan.send("taskchan.t.record", {"n": 1})

    result = without(
        CELERY + PROMETHEUS, MANAGE, "runworker", "taskchan.t.record", "--burst", redis_url=redis_url
    )

    assert result.returncode == 0, result.stderr
    assert [r[0] for r in done_records(redis_client)] == [message_id]


def test_metrics_view_without_prometheus_names_the_extra():
    result = without(PROMETHEUS, """
import django
django.setup()
from django.test import RequestFactory
from taskchan import metrics
metrics.processed("taskchan.t.record")  # counting is a no-op, not an error
try:
    metrics.metrics_view(RequestFactory().get("/metrics"))
except Exception as exc:
    print(type(exc).__name__, exc)
""")

    assert result.returncode == 0, result.stderr
    assert "MissingExtra Prometheus metrics (metrics_view, runworker --metrics-port) needs the " in result.stdout
    assert "pip install 'django-taskchan[prometheus]'" in result.stdout


def test_runworker_metrics_port_without_prometheus_names_the_extra(redis_url):
    result = without(PROMETHEUS, MANAGE, "runworker", "taskchan.t.record", "--burst", "--metrics-port", "0",
                     redis_url=redis_url)

    assert result.returncode != 0
    assert "CommandError: --metrics-port: Prometheus metrics" in result.stderr
    assert "pip install 'django-taskchan[prometheus]'" in result.stderr


def test_check_reports_metrics_view_in_the_urls_without_prometheus():
    result = without(PROMETHEUS, MANAGE, "check")

    assert result.returncode != 0
    assert "taskchan.metrics.metrics_view: (taskchan.E021) The URLs serve taskchan.metrics.metrics_view." in result.stderr
    assert "pip install 'django-taskchan[prometheus]'" in result.stderr
    assert "taskchan.E022" not in result.stderr


def test_check_reports_each_celery_channel_without_celery():
    result = without(CELERY, MANAGE, "check")

    assert result.returncode != 0
    assert "tests.jobs.cel_record: (taskchan.E022) 'taskchan.cel.record' hands off to Celery" in result.stderr
    assert "pip install 'django-taskchan[celery]'" in result.stderr
    assert "taskchan.E021" not in result.stderr


def test_sending_to_a_celery_channel_without_celery_names_the_extra_and_stores_nothing(redis_url, redis_client):
    result = without(CELERY, """
import django
django.setup()
import taskchan
try:
    taskchan.send("taskchan.cel.record", {"n": 1}, idempotency_key="once")
except taskchan.MissingExtra as exc:
    print("refused:", exc)
""", redis_url=redis_url)

    assert result.returncode == 0, result.stderr
    assert "refused: Handing channels off to Celery (handoff='celery') needs the 'celery' package" in result.stdout
    assert redis_client.keys("*") == []  # no message, no idempotency key

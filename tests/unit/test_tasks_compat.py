"""The django.tasks backend on every supported Django: a clear error and a system check on 5.2.

This runs in the 5.2 compatibility session too (``noxfile.py`` COMPAT_TESTS),
where ``django.tasks`` does not exist.
"""

from __future__ import annotations

import importlib
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from taskchan.checks import check_tasks_backend_django_version
from taskchan.compat import HAS_DJANGO_TASKS

BACKEND = {"BACKEND": "taskchan.backend.TaskchanBackend", "QUEUES": ["default"]}


def test_importing_the_backend(monkeypatch):
    monkeypatch.delitem(sys.modules, "taskchan.backend", raising=False)
    if HAS_DJANGO_TASKS:
        assert importlib.import_module("taskchan.backend").TaskchanBackend.supports_get_result
    else:
        with pytest.raises(ImproperlyConfigured, match=r"needs Django 6\.0 or later"):
            importlib.import_module("taskchan.backend")


def test_the_system_check(settings):
    settings.TASKS = {"default": BACKEND}
    errors = check_tasks_backend_django_version(None)
    if HAS_DJANGO_TASKS:
        assert errors == []
    else:
        assert [e.id for e in errors] == ["taskchan.E023"] and "Django 6.0" in errors[0].msg

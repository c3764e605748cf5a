"""taskchan's system checks (``taskchan/checks.py``): the configurations that
would make taskchan silently misbehave are reported by ``manage.py check``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings

from tests.conftest import ROOT


def taskchan_messages() -> list:
    # databases=[]: static checks only (no test database needed).
    return [m for m in run_checks(databases=[]) if str(m.id).startswith("taskchan.")]


def ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


def reordered(*order: str) -> list[str]:
    """INSTALLED_APPS with taskchan, daphne and channels in ``order`` (other apps unchanged)."""
    moved = {"taskchan", "daphne", "channels"}
    others = [app for app in settings.INSTALLED_APPS if app not in moved]
    return [*order, *others]


def test_no_taskchan_messages_for_the_project_as_configured():
    assert taskchan_messages() == []


def test_manage_py_check_passes_on_the_reference_project():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    for name in ("REDIS_URL", "DATABASE_URL", "DEBUG", "SECRET_KEY", "TASKCHAN_TEST_DB"):
        env.pop(name, None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "taskchan." not in result.stdout + result.stderr


def test_taskchan_after_channels_is_an_error():
    with override_settings(INSTALLED_APPS=reordered("daphne", "channels", "taskchan")):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E001", "taskchan.W002"]
    error = next(m for m in messages if m.id == "taskchan.E001")
    assert isinstance(error, Error)
    assert "after 'channels'" in error.msg
    assert "Move 'taskchan' above 'channels'" in error.hint


def test_taskchan_after_channels_is_found_in_app_config_form_too():
    with override_settings(
        INSTALLED_APPS=reordered("channels", "taskchan.apps.TaskchanConfig", "daphne")
    ):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E001"]


def test_taskchan_after_daphne_is_a_warning():
    with override_settings(INSTALLED_APPS=reordered("daphne", "taskchan", "channels")):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.W002"]
    warning = messages[0]
    assert isinstance(warning, Warning)
    assert "after 'daphne'" in warning.msg
    assert "runserver" in warning.msg


def test_a_layer_that_is_not_taskchan_is_an_error():
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E003"]
    error = messages[0]
    assert isinstance(error, Error)
    assert "channels.layers.InMemoryChannelLayer" in error.msg
    assert "not a taskchan layer" in error.msg
    assert "taskchan.layers.RedisChannelLayer" in error.hint


def test_no_layer_at_all_is_an_error():
    with override_settings(CHANNEL_LAYERS={}):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E003"]
    assert "not configured" in messages[0].msg


@pytest.mark.parametrize(
    ("layer_alias", "expected"),
    [("jobs", []), ("default", ["taskchan.E003"])],
)
def test_the_layer_checked_is_the_one_taskchan_layer_names(layer_alias, expected):
    layers = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        "jobs": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"},
    }
    with override_settings(CHANNEL_LAYERS=layers, TASKCHAN_LAYER=layer_alias):
        messages = taskchan_messages()

    assert ids(messages) == expected

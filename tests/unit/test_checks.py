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


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"hosts": ["redis://a:6379/0"], "taskchan_hosts": ["redis://b:6379/0", "redis://b:6379/0"]}, "twice"),
        ({"hosts": ["redis://a:6379/0"], "taskchan_host": "redis://b/0", "taskchan_hosts": ["redis://c/0"]}, "both"),
        ({"hosts": ["redis://a:6379/0"], "taskchan_hosts": "redis://b/0"}, "must be a non-empty list"),
        ({"hosts": ["redis://a:6379/0"], "taskchan_drain_hosts": ["redis://a:6379/0"]}, "twice"),
        ({"hosts": ["redis://a:6379/0"], "taskchan_drain_hosts": "redis://b/0"}, "must be a list"),
    ],
    ids=["same-taskchan-host-twice", "host-and-hosts", "hosts-not-a-list", "draining-a-host-in-use", "drain-not-a-list"],
)
def test_a_bad_list_of_store_hosts_is_an_error(config, words):
    layers = {"default": {"BACKEND": "taskchan.layers.RedisChannelLayer", "CONFIG": config}}
    with override_settings(CHANNEL_LAYERS=layers):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E008"]
    assert isinstance(messages[0], Error)
    assert words in messages[0].msg


def test_several_distinct_hosts_are_fine():
    layers = {"default": {"BACKEND": "taskchan.layers.RedisChannelLayer",
                          "CONFIG": {"hosts": ["redis://a:6379/0", "redis://b:6379/0"]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        assert taskchan_messages() == []


# -- settings: wrong types, unknown names --------------------------------------


def deploy_messages() -> list:
    """taskchan's messages from ``manage.py check --deploy`` (deployment checks included)."""
    return [
        m
        for m in run_checks(databases=[], include_deployment_checks=True)
        if str(m.id).startswith("taskchan.")
    ]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("TASKCHAN_MAX_ATTEMPTS", "5"),
        ("TASKCHAN_MAX_ATTEMPTS", True),
        ("TASKCHAN_VISIBILITY_TIMEOUT", "30"),
        ("TASKCHAN_CONSUMER_MODULES", "tests.jobs"),
        ("TASKCHAN_KEY_PREFIX", 7),
    ],
)
def test_a_setting_of_the_wrong_type_is_an_error(setting, value):
    with override_settings(**{setting: value}):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E004"]
    error = messages[0]
    assert isinstance(error, Error)
    assert error.msg.startswith(f"{setting} must be")
    assert repr(value) in error.msg
    assert setting in error.hint


def test_every_wrong_setting_is_reported_not_only_the_first():
    with override_settings(TASKCHAN_MAX_ATTEMPTS="5", TASKCHAN_PREFETCH=1.5):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E004", "taskchan.E004"]
    assert {m.obj for m in messages} == {"settings.TASKCHAN_MAX_ATTEMPTS", "settings.TASKCHAN_PREFETCH"}


def test_a_misspelt_setting_is_a_warning_naming_the_closest_one():
    with override_settings(TASKCHAN_MAX_ATTEMPT=3):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.W005"]
    warning = messages[0]
    assert isinstance(warning, Warning)
    assert "TASKCHAN_MAX_ATTEMPT is not a taskchan setting" in warning.msg
    assert "Did you mean TASKCHAN_MAX_ATTEMPTS?" in warning.hint


def test_an_unknown_setting_like_nothing_known_gets_no_suggestion():
    with override_settings(TASKCHAN_FROBNICATE=1):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.W005"]
    assert "Did you mean" not in messages[0].hint
    assert "docs/configuration.md" in messages[0].hint


def test_the_celery_app_setting_read_by_handoff_is_known():
    with override_settings(TASKCHAN_CELERY_APP="project.celery.app"):
        assert taskchan_messages() == []


# -- deployment checks (manage.py check --deploy) --------------------------------


def test_deployment_checks_are_quiet_for_a_redis_layer_with_default_timeouts(redis_url):
    from taskchan import registry

    layers = {"default": {"BACKEND": "taskchan.layers.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}}
    short = {c for c, e in registry.all_consumers().items() if e.visibility_timeout_option}
    with override_settings(DEBUG=False, CHANNEL_LAYERS=layers):
        messages = [m for m in deploy_messages() if m.obj not in {registry.get_consumer(c).name for c in short}]

    assert messages == []


def test_memory_layer_with_debug_off_is_a_deployment_warning():
    layers = {"default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}}
    with override_settings(DEBUG=False, CHANNEL_LAYERS=layers):
        messages = [m for m in deploy_messages() if m.id == "taskchan.W006"]
        plain = taskchan_messages()

    assert len(messages) == 1
    warning = messages[0]
    assert isinstance(warning, Warning)
    assert "workers in other processes will never see these messages" in warning.msg
    assert "taskchan.layers.RedisChannelLayer" in warning.hint
    # Only with --deploy: the test suite itself runs with DEBUG off on this layer.
    assert "taskchan.W006" not in ids(plain)


def test_memory_layer_with_debug_on_is_fine():
    layers = {"default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}}
    with override_settings(DEBUG=True, CHANNEL_LAYERS=layers):
        assert "taskchan.W006" not in ids(deploy_messages())


def test_short_default_visibility_timeout_is_a_deployment_warning():
    with override_settings(TASKCHAN_VISIBILITY_TIMEOUT=2):
        messages = [m for m in deploy_messages() if m.obj == "settings.TASKCHAN_VISIBILITY_TIMEOUT"]

    assert ids(messages) == ["taskchan.W007"]
    assert "TASKCHAN_VISIBILITY_TIMEOUT is 2 s" in messages[0].msg
    assert "at least 3 seconds" in messages[0].hint


def test_visibility_timeout_of_three_seconds_passes():
    with override_settings(TASKCHAN_VISIBILITY_TIMEOUT=3):
        messages = [m for m in deploy_messages() if m.obj == "settings.TASKCHAN_VISIBILITY_TIMEOUT"]

    assert messages == []


def test_a_consumer_with_a_short_visibility_timeout_is_a_deployment_warning():
    import taskchan
    from taskchan import registry

    @taskchan.consumer("taskchan.checks.short_lease", visibility_timeout=1.5)
    def short_lease(message):
        pass

    try:
        messages = [m for m in deploy_messages() if m.id == "taskchan.W007" and m.obj == short_lease.name]
        plain = taskchan_messages()
    finally:
        registry.unregister("taskchan.checks.short_lease")

    assert len(messages) == 1
    assert "'taskchan.checks.short_lease' has visibility_timeout=1.5 s" in messages[0].msg
    assert "visibility_timeout of at least 3 seconds" in messages[0].hint
    assert "taskchan.W007" not in ids(plain)


# -- encryption at rest --------------------------------------------------------------


def encrypted_layer(keys) -> dict:
    return {"default": {"BACKEND": "taskchan.layers.RedisChannelLayer",
                        "CONFIG": {"hosts": ["redis://a:6379/0"], "symmetric_encryption_keys": keys}}}


def test_encryption_keys_that_are_not_a_list_are_an_error():
    with override_settings(CHANNEL_LAYERS=encrypted_layer("one-key")):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E009"]
    assert "must be a list of keys" in messages[0].msg


def test_with_keys_the_channels_handed_to_celery_are_named_as_not_sealed():
    with override_settings(CHANNEL_LAYERS=encrypted_layer(["a key"])):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.W010"]
    assert "taskchan.cel.record" in messages[0].msg


# -- installation (E020-E022; E021/E022 without the extra: tests/unit/test_extras.py) --


def test_a_missing_asgi_application_is_an_error_where_runserver_is_daphnes():
    with override_settings(ASGI_APPLICATION=None):
        messages = taskchan_messages()

    assert ids(messages) == ["taskchan.E020"]
    error = messages[0]
    assert isinstance(error, Error)
    assert "ASGI_APPLICATION is not set" in error.msg
    assert "ASGI_APPLICATION = 'mysite.asgi.application'" in error.hint
    assert "asgi.py" in error.hint


def test_without_daphne_runserver_is_djangos_and_needs_no_asgi_application(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "daphne" else real_find_spec(name, *args)
    )
    with override_settings(ASGI_APPLICATION=None):
        assert taskchan_messages() == []

"""``project/settings.py`` reads its configuration from the environment.

Each case imports the settings in a fresh interpreter with a controlled
environment, as a deployment would start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

#: variables the settings (or the entry points) read; cleared unless a test sets them
CONTROLLED = (
    "DJANGO_SETTINGS_MODULE",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "HTTPS",
    "DATABASE_URL",
    "REDIS_URL",
    "TASKCHAN_REDIS_CLUSTER_URL",
    "TASKCHAN_SEND_REPLICAS",
    "LOG_LEVEL",
    "TASKCHAN_TEST_DB",
    "TASKCHAN_VISIBILITY_TIMEOUT",
    "CELERY_VISIBILITY_TIMEOUT",
)


def python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``python -c code`` (or ``python args`` when code is empty) at the repo root with ``env`` set."""
    environ = {
        k: v for k, v in os.environ.items() if k not in CONTROLLED and not k.startswith("PYTEST_")
    }
    environ.update(env)
    command = [sys.executable, "-c", code] if code else [sys.executable, *args]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def project_settings(*names: str, **env: str) -> dict:
    """The values of ``names`` in ``project.settings`` imported under ``env``."""
    code = (
        "import json, project.settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {list(names)!r}}}, default=str))"
    )
    result = python(code, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- channel layer ------------------------------------------------------------


def test_celery_visibility_timeout_reaches_the_sending_side_too():
    # send() refuses hand-off delays over half the broker's visibility timeout;
    # it must read the same value the Celery workers use.
    code = (
        "import django; django.setup(); from taskchan import handoff; "
        "print(handoff.visibility_timeout())"
    )
    result = python(code, DJANGO_SETTINGS_MODULE="project.settings", REDIS_URL="redis://127.0.0.1:6379/0",
                    CELERY_VISIBILITY_TIMEOUT="10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "10.0"
    options = project_settings("CELERY_BROKER_TRANSPORT_OPTIONS", CELERY_VISIBILITY_TIMEOUT="10")
    assert options["CELERY_BROKER_TRANSPORT_OPTIONS"]["visibility_timeout"] == 10.0


def test_no_redis_url_means_the_in_memory_layer():
    values = project_settings("CHANNEL_LAYERS", "CELERY_BROKER_URL")

    assert values["CHANNEL_LAYERS"] == {
        "default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}
    }
    assert values["CELERY_BROKER_URL"] == "memory://"


def test_redis_url_means_the_taskchan_redis_layer_on_that_host():
    url = "redis://redis.internal.example:6390/3"

    values = project_settings("CHANNEL_LAYERS", "CELERY_BROKER_URL", REDIS_URL=url)

    assert values["CHANNEL_LAYERS"] == {
        "default": {"BACKEND": "taskchan.layers.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
    }
    assert values["CELERY_BROKER_URL"] == url


def test_a_cluster_url_puts_taskchan_channels_on_the_cluster_and_websockets_on_redis_url():
    url, cluster = "redis://redis.internal.example:6390/3", "redis://cluster.internal.example:7000"

    values = project_settings("CHANNEL_LAYERS", TASKCHAN_REDIS_CLUSTER_URL=cluster, REDIS_URL=url)

    assert values["CHANNEL_LAYERS"]["default"]["CONFIG"] == {"hosts": [url], "taskchan_cluster": cluster}


def test_a_cluster_url_without_redis_url_is_refused_with_the_reason():
    result = python("import project.settings", TASKCHAN_REDIS_CLUSTER_URL="redis://cluster.internal.example:7000")

    assert result.returncode != 0
    assert "TASKCHAN_REDIS_CLUSTER_URL needs REDIS_URL too" in result.stderr


def test_the_configured_layer_stores_taskchan_channels_on_the_cluster_without_connecting():
    code = (
        "import django; django.setup(); "
        "from channels.layers import get_channel_layer; layer = get_channel_layer(); "
        "print(type(layer.taskchan_store).__name__, layer.taskchan_store.url)"
    )

    # Building the layer opens no connection, so the cluster need not exist.
    result = python(code, DJANGO_SETTINGS_MODULE="project.settings", REDIS_URL="redis://127.0.0.1:1/0",
                    TASKCHAN_REDIS_CLUSTER_URL="redis://cluster.internal.example:7000")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ClusterStore", "redis://cluster.internal.example:7000"]


def test_the_configured_layer_stores_taskchan_channels_on_the_redis_url():
    url = "redis://redis.internal.example:6390/3"
    code = (
        "import django; django.setup(); "
        "from channels.layers import get_channel_layer; layer = get_channel_layer(); "
        "print(type(layer).__module__ + '.' + type(layer).__name__, layer.taskchan_store.url)"
    )

    # Building the layer opens no connection, so the host need not exist.
    result = python(code, DJANGO_SETTINGS_MODULE="project.settings", REDIS_URL=url)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["taskchan.layers.RedisChannelLayer", url]


# -- database -----------------------------------------------------------------


def test_database_url_selects_postgresql():
    values = project_settings(
        "DATABASES", DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    )

    db = values["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["HOST"], int(db["PORT"])) == (
        "postgres",
        "postgres",
        "127.0.0.1",
        5432,
    )
    # SQLite's pragmas are not applied to PostgreSQL.
    assert "init_command" not in db.get("OPTIONS", {})


def test_no_database_url_means_sqlite_at_the_repo_root():
    values = project_settings("DATABASES")

    db = values["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(ROOT / "db.sqlite3")
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]


# -- security -----------------------------------------------------------------


def test_debug_off_without_secret_key_fails_with_a_clear_message():
    result = python("import project.settings", DEBUG="0")

    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set in the environment when DEBUG is off" in result.stderr


def test_debug_off_with_a_secret_key_uses_it():
    key = "s3cret-from-env"
    values = project_settings("DEBUG", "SECRET_KEY", DEBUG="0", SECRET_KEY=key)

    assert values == {"DEBUG": False, "SECRET_KEY": key}


def test_debug_defaults_on_with_a_development_key():
    values = project_settings("DEBUG", "SECRET_KEY")

    assert values["DEBUG"] is True
    assert values["SECRET_KEY"].startswith("django-insecure-")


def test_debug_that_is_not_a_boolean_is_refused():
    result = python("import project.settings", DEBUG="maybe")

    assert result.returncode != 0
    assert "ImproperlyConfigured: DEBUG must be 1 or 0" in result.stderr


def test_allowed_hosts_come_from_the_environment():
    values = project_settings("ALLOWED_HOSTS", ALLOWED_HOSTS="example.com, api.example.com,,")

    assert values["ALLOWED_HOSTS"] == ["example.com", "api.example.com"]


def test_allowed_hosts_default_to_localhost():
    values = project_settings("ALLOWED_HOSTS")

    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1"]


# -- DJANGO_SETTINGS_MODULE is a default, not an override ------------------------

SETTINGS_MODULE_AFTER = {
    "asgi": "import project.asgi; from django.conf import settings; print(settings.SETTINGS_MODULE)",
    "wsgi": "import project.wsgi; from django.conf import settings; print(settings.SETTINGS_MODULE)",
    "celery": "import project.celery; from django.conf import settings; print(settings.SETTINGS_MODULE)",
}


@pytest.mark.parametrize("entry_point", sorted(SETTINGS_MODULE_AFTER))
def test_entry_point_defaults_to_the_project_settings(entry_point):
    result = python(SETTINGS_MODULE_AFTER[entry_point])

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "project.settings"


@pytest.mark.parametrize("entry_point", sorted(SETTINGS_MODULE_AFTER))
def test_entry_point_keeps_an_explicit_settings_module(entry_point):
    result = python(SETTINGS_MODULE_AFTER[entry_point], DJANGO_SETTINGS_MODULE="tests.settings")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "tests.settings"


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "project.settings"), ({"DJANGO_SETTINGS_MODULE": "tests.settings"}, "tests.settings")],
)
def test_manage_py_uses_the_settings_module_from_the_environment_or_the_project(env, expected):
    result = python(
        "",
        "manage.py",
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.SETTINGS_MODULE)",
        **env,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == expected


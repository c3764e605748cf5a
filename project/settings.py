"""Settings of the reference project, read from the environment.

With nothing set, everything runs with no services: SQLite in ``db.sqlite3``
at the repo root, the in-memory channel layer (runserver then runs the taskchan
workers in-process) and Celery's in-memory broker.

Environment variables:

``DEBUG``            "1" (default) or "0"
``SECRET_KEY``       required when DEBUG is off
``ALLOWED_HOSTS``    comma-separated, default ``localhost,127.0.0.1``
``CSRF_TRUSTED_ORIGINS``  comma-separated origins, default none
``HTTPS``            "1" when served over HTTPS behind a proxy: secure cookies, redirect, HSTS
``DATABASE_URL``     e.g. ``postgres://user@127.0.0.1:5432/taskchan``; default SQLite
``REDIS_URL``        e.g. ``redis://127.0.0.1:6379/0``; default the in-memory layer
``TASKCHAN_REDIS_CLUSTER_URL``  any node of a Redis Cluster, e.g. ``redis://10.0.0.5:7000``:
                     taskchan channels go there (REDIS_URL still serves websockets)
``TASKCHAN_SEND_REPLICAS``  replicas a send waits for (Redis WAIT), default 0
``LOG_LEVEL``        level of the ``taskchan`` and ``project`` loggers, default INFO
``CELERY_VISIBILITY_TIMEOUT``  seconds, the Redis broker's visibility_timeout (default 3600)
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from taskchan.compat import HAS_DJANGO_TASKS

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0 (or true/false), got {value!r}.")


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- security --------------------------------------------------------------

DEBUG = _env_bool("DEBUG", "1")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set in the environment when DEBUG is off "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    SECRET_KEY = "django-insecure-taskchan-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", "")

if _env_bool("HTTPS", "0"):
    # The proxy in front (nginx) terminates TLS and sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 3600

# --- applications ----------------------------------------------------------

# Order matters: taskchan's runserver/runworker override daphne's and channels',
# and daphne's runserver overrides Django's.
INSTALLED_APPS = [
    "taskchan",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "project.asgi.application"
WSGI_APPLICATION = "project.wsgi.application"

# --- database --------------------------------------------------------------

# SQLite is shared by the web process and (in development) in-process workers
# writing from other threads: wait for locks instead of failing at once, and
# take the write lock when a transaction starts so it never has to upgrade.
_SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

if os.environ.get("DATABASE_URL"):
    # conn_max_age stays 0: persistent connections do not mix with ASGI's
    # per-request threads.
    _default_db = dj_database_url.parse(os.environ["DATABASE_URL"], conn_health_checks=True)
else:
    _default_db = {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}

if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    _default_db["OPTIONS"] = {**_SQLITE_OPTIONS, **_default_db.get("OPTIONS", {})}

DATABASES = {"default": _default_db}

# --- channel layers --------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
# taskchan channels on a Redis Cluster; websockets and groups stay on REDIS_URL
# (channels_redis cannot use a cluster): docs/deploying.md, "Redis Cluster".
REDIS_CLUSTER_URL = os.environ.get("TASKCHAN_REDIS_CLUSTER_URL", "")

if REDIS_CLUSTER_URL and not REDIS_URL:
    raise ImproperlyConfigured(
        "TASKCHAN_REDIS_CLUSTER_URL needs REDIS_URL too: a plain Redis for websockets and groups "
        "(channels_redis cannot use a cluster)."
    )
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "taskchan.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    if REDIS_CLUSTER_URL:
        CHANNEL_LAYERS["default"]["CONFIG"]["taskchan_cluster"] = REDIS_CLUSTER_URL
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "taskchan.layers.InMemoryChannelLayer"}}

try:
    TASKCHAN_SEND_REPLICAS = int(os.environ.get("TASKCHAN_SEND_REPLICAS", "0"))
except ValueError:
    raise ImproperlyConfigured("TASKCHAN_SEND_REPLICAS must be a whole number of replicas.") from None

# consumers.py of every installed app is autodiscovered; list extra modules here.
TASKCHAN_CONSUMER_MODULES: list[str] = []

# --- django.tasks (Django 6.0+): @task functions run by taskchan's workers --

if HAS_DJANGO_TASKS:
    # A task on queue Q travels on the channel taskchan.tasks.Q (docs/tasks.md).
    TASKS = {"default": {"BACKEND": "taskchan.backend.TaskchanBackend", "QUEUES": ["default"]}}

# --- celery (where a channel hands off to Celery) ---------------------------

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# The Redis broker's visibility_timeout: how long a task taken by a worker that
# died unacknowledged waits before another worker gets it.  Set here, in the
# settings every process reads, so send() (which refuses delays over half of
# it, taskchan/handoff/app.py) and the Celery workers agree.  Unset: kombu's 3600 s.
if os.environ.get("CELERY_VISIBILITY_TIMEOUT"):
    _visibility = float(os.environ["CELERY_VISIBILITY_TIMEOUT"])
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility,
        # Look for lapsed tasks often enough for so short a timeout (kombu's
        # default sweep is every 10 s x 10).
        "unacked_restore_interval": max(1, min(10, int(_visibility // 3))),
        "unacked_restore_throttle": 1,
    }

# --- auth ------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- i18n, static ----------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- logging ---------------------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        "taskchan": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "project": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

"""The Celery app hand-offs are published with, and whether this process hands off at all.

The app is ``TASKCHAN_CELERY_APP`` (a dotted path such as
``"project.celery.app"``) if the settings name one, otherwise a private app
configured, as Celery's Django guide does, from the ``CELERY_*`` settings.
Celery is imported only when the app is first needed (``extras.require``).

With the in-memory channel layer (development, no services) there is no broker
a Celery worker could share, so a handed-off channel's messages go to
taskchan's own (in-process) workers instead, with a warning.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .. import extras
from ..stores.configured import get_store
from ..stores.redis import RedisStore
from ..stores.sharded import ShardedStore

if TYPE_CHECKING:
    from ..registry import Consumer

logger = logging.getLogger("taskchan.handoff")

#: The one Celery task that runs every handed-off consumer (``taskchan/tasks.py``).
TASK_NAME = "taskchan.run_handed_off"
#: Visibility timeout of kombu's Redis transport when none is configured.
KOMBU_REDIS_VISIBILITY_TIMEOUT = 3600.0
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://", "sentinel://", "sentinels://")

_app = None
_app_lock = threading.Lock()
#: channels already warned about running on taskchan's workers (in-memory layer)
_warned: set[str] = set()


def celery_app():
    """The Celery app hand-offs are published with (imports Celery)."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                path = getattr(django_settings, "TASKCHAN_CELERY_APP", None)
                if path:
                    _app = import_string(path)
                else:
                    app = extras.require("celery").Celery("taskchan", set_as_current=False)
                    app.config_from_object("django.conf:settings", namespace="CELERY")
                    _app = app
    return _app


def _reset_app(*, setting: str, **kwargs) -> None:
    global _app
    if setting.startswith("CELERY_") or setting == "TASKCHAN_CELERY_APP":
        with _app_lock:
            if _app is not None and not getattr(django_settings, "TASKCHAN_CELERY_APP", None):
                _app.close()
            _app = None


setting_changed.connect(_reset_app)


def publishing_conf(name: str, default=None):
    """A Celery setting as the publishing app sees it, without importing Celery when possible."""
    if getattr(django_settings, "TASKCHAN_CELERY_APP", None):
        return celery_app().conf.get(name, default)
    return getattr(django_settings, f"CELERY_{name.upper()}", default)


def broker_url(conf=publishing_conf) -> str:
    return conf("broker_write_url") or conf("broker_url") or ""


def _broker_named() -> bool:
    url = broker_url()
    return bool(url) and not url.startswith("memory")


def is_redis_store(store) -> bool:
    """A store on Redis: one host, or several (sharded); not the in-memory one."""
    return isinstance(store, (RedisStore, ShardedStore))


def celery_configured() -> bool:
    """True when this process can hand messages to Celery: a real broker is
    configured and taskchan's layer is the Redis one (whose Redis keeps the
    idempotency keys and start counters).  The admin shows "hand to Celery"
    only then."""
    if not extras.installed("celery"):
        return False
    try:
        store = get_store()
    except Exception:
        return False
    return is_redis_store(store) and _broker_named()


def active(store) -> bool:
    """Whether a handed-off channel's message goes to Celery with this store.

    False with the in-memory layer (development): it is stored for taskchan's
    in-process workers instead.  Raises ImproperlyConfigured with the Redis
    layer and no Celery broker, before anything is stored.
    """
    if not is_redis_store(store):
        return False
    extras.require("celery")  # MissingExtra, naming the extra, before anything is stored
    if not _broker_named():
        raise ImproperlyConfigured(
            "A channel hands its messages off to Celery (handoff='celery'), but no Celery broker "
            f"is configured (CELERY_BROKER_URL is {broker_url()!r}): set CELERY_BROKER_URL "
            "(e.g. to your Redis URL), or drop handoff='celery' from the consumer. Nothing was sent."
        )
    return True


def visibility_timeout(conf=publishing_conf) -> float | None:
    """Seconds the Redis broker waits before giving an unacked task to another worker.

    ``conf``: how to read a Celery setting (name, default); the publishing
    side's by default, a worker reads its own app's.
    """
    if not broker_url(conf).startswith(REDIS_SCHEMES):
        return None
    options = conf("broker_transport_options") or {}
    return float(options.get("visibility_timeout", KOMBU_REDIS_VISIBILITY_TIMEOUT))


def check(consumer: Consumer, delay: float | None) -> None:
    """send()'s extra door checks for a channel that hands off (runs before anything is stored)."""
    store = get_store()
    if not active(store):
        if consumer.channel not in _warned:
            _warned.add(consumer.channel)
            logger.warning(
                "%s hands off to Celery, but the channel layer is the in-memory one: its messages "
                "run on taskchan's workers instead (Celery needs the Redis layer and a broker).",
                consumer.channel,
            )
        return
    vt = visibility_timeout()
    if delay and vt and delay > vt / 2:
        raise ValueError(
            f"delay={delay!r} s is too long for {consumer.channel!r}, which hands off to Celery: "
            f"the Redis broker hands a task that waits longer than its visibility_timeout ({vt:g} s) "
            "to a second worker, so it would run twice. Keep delays under half the visibility_timeout "
            "(CELERY_BROKER_TRANSPORT_OPTIONS) or use a taskchan channel for long delays."
        )

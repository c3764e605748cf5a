"""Every TASKCHAN_* setting, its default and its unit.

Values are read from Django's settings on first use and cached (send() reads
several per call); the cache is dropped on Django's ``setting_changed`` signal,
so ``override_settings`` in tests takes effect at once, as channels' layer
manager does for CHANNEL_LAYERS.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .time_limits import time_limit_problem

#: setting name -> (default, type, one-line meaning)
DEFAULTS: dict[str, tuple[Any, type | tuple[type, ...], str]] = {
    "LAYER": ("default", str, "alias in CHANNEL_LAYERS whose reliable store taskchan uses"),
    "CONSUMER_MODULES": ([], (list, tuple), "extra dotted modules imported to register consumers"),
    "MAX_CONTENT_BYTES": (256 * 1024, int, "largest accepted content, in bytes of JSON"),
    "MAX_ATTEMPTS": (5, int, "default attempts (deliveries) before a message is dead-lettered"),
    "VISIBILITY_TIMEOUT": (30.0, (int, float), "seconds a delivered message stays leased without a heartbeat"),
    "IDEMPOTENCY_WINDOW": (24 * 3600.0, (int, float), "seconds an idempotency key is kept after its message finished"),
    "SEND_RETRY_SECONDS": (3.0, (int, float), "how long send() retries a Redis that does not answer"),
    "PREFETCH": (16, int, "messages a worker leases ahead of those running (shared by its channels)"),
    "SHUTDOWN_GRACE": (30.0, (int, float), "seconds a stopping worker waits for running jobs"),
    "POLL_INTERVAL": (0.1, (int, float), "seconds between checks for due delayed/retried messages"),
    "OUTBOX_RELAY_AFTER": (5.0, (int, float), "seconds after which a worker relays an un-relayed send_on_commit"),
    "STATUS_TTL": (3600, (int, float), "seconds every message's status record is kept after its last change (0: none)"),
    "RESULT_TTL": (
        86400, (int, float), "seconds a django.tasks result (the taskchan backend's) is kept after its last change",
    ),
    "PROGRESS_INTERVAL": (0.2, (int, float), "seconds between a worker's flushes of its jobs' latest progress"),
    "PROGRESS_CHECK": (2.0, (int, float), "seconds between a progress watcher's reads of an unfinished message's status"),
    "PROGRESS_WEBSOCKET": (
        "/progress/", str, "path the project routes ProgressConsumer at (the admin overview's live refresh; '': poll)",
    ),
    "KEY_PREFIX": ("taskchan", str, "prefix of every Redis key taskchan writes"),
    "TIME_LIMIT": (None, (int, float, type(None)), "seconds a job may run before it is interrupted (None: no limit)"),
    "STUCK_AFTER": (10.0, (int, float), "seconds a job thread may go on past its time limit before it is abandoned"),
    "MAX_STUCK_THREADS": (4, int, "abandoned (stuck) job threads after which the worker stops so it is restarted"),
    "CANCEL_TTL": (7 * 24 * 3600.0, (int, float), "seconds a cancel marker is kept (taskchan.cancel)"),
    "SEND_REPLICAS": (0, int, "replicas that must hold a message before send() returns (Redis WAIT); 0: do not wait"),
    "SEND_REPLICAS_TIMEOUT": (1.0, (int, float), "seconds send() waits for TASKCHAN_SEND_REPLICAS replicas before it raises"),
    "DEAD_LETTERS_DECRYPTED": (
        False, bool, "whether dead letters' content is stored decrypted when the layer has symmetric_encryption_keys",
    ),
}


#: setting name -> (lowest, highest, why the bounds): checked after the type
BOUNDS: dict[str, tuple[float, float, str]] = {
    "SEND_REPLICAS": (0, 100, "a count of replicas (0 turns waiting off)"),
    # WAIT 0 would block forever; past a minute a send() holds its caller (a
    # request, a job) longer than anything should wait for a replica.
    "SEND_REPLICAS_TIMEOUT": (0.001, 60.0, "seconds above 0 (WAIT 0 blocks forever), at most 60"),
}
#: numeric settings that must be finite and >= 0 (a lifetime, where 0 means off)
NON_NEGATIVE = frozenset({"STATUS_TTL", "RESULT_TTL"})
#: numeric settings that must be finite and > 0 (a period)
POSITIVE = frozenset({"PROGRESS_INTERVAL", "PROGRESS_CHECK"})


class Settings:
    """Typed accessor: ``conf.settings.MAX_ATTEMPTS`` reads TASKCHAN_MAX_ATTEMPTS."""

    def __init__(self):
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self._cache[name]
        except KeyError:
            pass
        try:
            default, kind, _meaning = DEFAULTS[name]
        except KeyError:
            raise AttributeError(f"unknown taskchan setting {name!r}") from None
        value = getattr(django_settings, f"TASKCHAN_{name}", default)
        if (
            not isinstance(value, kind)
            or (isinstance(value, bool) and kind is not bool)
            or (name in NON_NEGATIVE and not 0 <= value < float("inf"))
            or (name in POSITIVE and not 0 < value < float("inf"))
        ):
            raise ImproperlyConfigured(
                f"TASKCHAN_{name} must be {_type_names(kind)}"
                f"{' (finite and >= 0)' if name in NON_NEGATIVE else ' (finite and > 0)' if name in POSITIVE else ''}, got {value!r}. "
                f"It is the {_meaning}; the default is {default!r}."
            )
        problem = _bounds_problem(name, value)
        if problem is not None:
            raise ImproperlyConfigured(f"TASKCHAN_{name} {problem}. It is the {_meaning}; the default is {default!r}.")
        self._cache[name] = value
        return value

    def clear(self) -> None:
        self._cache.clear()


def _bounds_problem(name: str, value: Any) -> str | None:
    """Why a value of the right type is still out of bounds, for the settings that have bounds."""
    if name == "TIME_LIMIT":
        return time_limit_problem(value)
    if name in ("STUCK_AFTER", "CANCEL_TTL") and not 0 < value < float("inf"):
        return f"must be a positive, finite number of seconds, got {value!r}"
    if name == "MAX_STUCK_THREADS" and value < 1:
        return f"must be at least 1, got {value!r}"
    if name in BOUNDS:
        low, high, why = BOUNDS[name]
        if not low <= value <= high:
            return f"must be between {low} and {high} ({why}), got {value!r}"
    return None


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


settings = Settings()


def _setting_changed(*, setting: str, **kwargs) -> None:
    if setting.startswith("TASKCHAN_"):
        settings.clear()


setting_changed.connect(_setting_changed)

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
    "PROGRESS_INTERVAL": (0.2, (int, float), "seconds between a worker's flushes of its jobs' latest progress"),
    "PROGRESS_CHECK": (2.0, (int, float), "seconds between a progress watcher's reads of an unfinished message's status"),
    "PROGRESS_WEBSOCKET": (
        "/progress/", str, "path the project routes ProgressConsumer at (the admin overview's live refresh; '': poll)",
    ),
    "KEY_PREFIX": ("taskchan", str, "prefix of every Redis key taskchan writes"),
    "DEAD_LETTERS_DECRYPTED": (
        False, bool, "whether dead letters' content is stored decrypted when the layer has symmetric_encryption_keys",
    ),
}


#: numeric settings that must be finite and >= 0 (a lifetime, where 0 means off)
NON_NEGATIVE = frozenset({"STATUS_TTL"})
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
        self._cache[name] = value
        return value

    def clear(self) -> None:
        self._cache.clear()


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


settings = Settings()


def _setting_changed(*, setting: str, **kwargs) -> None:
    if setting.startswith("TASKCHAN_"):
        settings.clear()


setting_changed.connect(_setting_changed)

"""The consumers registered in this process, by channel: the table ``@consumer`` fills.

Looked up by whoever must know a channel's consumer: the producer (does the
channel hand off to Celery?), the worker, the Celery side, runworker's
patterns, the checks and the metrics.  It imports nothing of taskchan's, so
every one of them can; ``taskchan/registry.py`` declares consumers and fills it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from .registry import Consumer

_consumers: dict[str, Consumer] = {}


def add(entry: Consumer) -> Consumer:
    """Register ``entry`` for its channel; a second, different function on one channel is refused."""
    existing = _consumers.get(entry.channel)
    # Re-importing the same module (autoreload, tests) registers the same
    # function again; two different functions on one channel is a mistake.
    if existing is not None and existing.name != entry.name:
        raise ImproperlyConfigured(
            f"Channel {entry.channel!r} already has consumer {existing.name}; "
            f"{entry.name} cannot also consume it. Use a channel per consumer."
        )
    _consumers[entry.channel] = entry
    return entry


def get_consumer(channel: str) -> Consumer | None:
    return _consumers.get(channel)


def all_consumers() -> dict[str, Consumer]:
    return dict(_consumers)


def unregister(channel: str) -> None:
    """Forget a consumer (for tests)."""
    _consumers.pop(channel, None)


def handed_off_consumer(channel: str) -> Consumer | None:
    """The consumer of ``channel`` if it hands its messages to Celery (``taskchan/handoff/``), else None."""
    consumer = _consumers.get(channel)
    return consumer if consumer is not None and consumer.handoff else None

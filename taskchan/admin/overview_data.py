"""The queue overview's data: every channel's queue, leases, schedule and rates, and the live workers.

``collect()`` returns one JSON-ready dict that both the page (first render)
and its JSON endpoint (every refresh) use, with each table cell already turned
into text here, so the server and the browser show the same thing.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone

from .. import registry
from ..flow.status import FlowStatus, read_flow
from ..models import FailedMessage
from ..stores.base import ChannelStats, Survey, survey_once
from ..stores.configured import get_store
from ..text import duration, printable

#: how often the page fetches fresh numbers, in milliseconds
REFRESH_MS = 3000

CHANNEL_COLUMNS = [
    "Channel / consumer",
    "Queued",
    "In flight",
    "Scheduled",
    "Dead letters",
    "Processed (1 min)",
    "Processed (1 h)",
    "Dead-lettered (1 min)",
    "Dead-lettered (1 h)",
    "Flow control",
]
WORKER_COLUMNS = [
    "Worker",
    "Host",
    "PID",
    "Serves",
    "Concurrency",
    "Started",
    "Last finished",
    "Processed",
    "Failed attempts",
]


def _iso(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    try:
        return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):  # past year 9999, or not a number
        return ""


def _number(value) -> float | None:
    """A registry figure as a number, or None (an entry can hold anything: it is plain JSON in Redis)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return value


def _ago(timestamp, now: float) -> dict:
    when = _number(timestamp)
    return _cell(f"{duration(now - when)} ago" if when else "", title=_iso(when))


def _cell(text, *, href: str = "", title: str = "", numeric: bool = False, detail: str = "") -> dict:
    """A table cell for the page and its JSON; ``detail`` is a second, quieter line."""
    zero = numeric and str(text) == "0"
    return {"text": str(text), "href": href, "title": title, "numeric": numeric, "zero": zero, "detail": detail}


#: the row's figures read from Redis, by name (None in the JSON when unknown)
REDIS_FIGURES = (
    "queued", "in_flight", "oldest_lease_age", "scheduled", "next_due", "processed_last_minute",
    "processed_last_hour", "failed_last_minute", "failed_last_hour",
)
#: shown for a figure Redis could not give: "?" rather than a zero that looks real
_UNKNOWN = {"text": "?", "href": "", "title": "could not be read from Redis", "numeric": False, "zero": False,
            "detail": ""}


def _channel_row(
    stats: ChannelStats, failed: int, now: float, failed_links: bool = True, flow: FlowStatus | None = None
) -> dict:
    consumer = registry.get_consumer(stats.channel)
    known = not stats.extra.get("unknown")
    figures = {name: getattr(stats, name) if known else None for name in REDIS_FIGURES}
    failed_cell = _cell(
        failed, numeric=True, href=_failed_href(stats.channel) if failed and failed_links else ""
    )
    if known:
        in_flight = str(stats.in_flight)
        if stats.in_flight and stats.oldest_lease_age is not None:
            in_flight += f" (oldest {duration(stats.oldest_lease_age)})"
        scheduled = str(stats.scheduled)
        if stats.scheduled and stats.next_due is not None:
            wait = stats.next_due - now
            scheduled += (
                f" (next in {duration(wait)})" if wait > 0 else f" (next due {duration(-wait)} ago)"
            )
        queue_cells = [
            _cell(stats.queued, numeric=True),
            _cell(in_flight, numeric=True, href=_in_flight_href(stats.channel) if stats.in_flight else ""),
            _cell(scheduled, numeric=True, title=_iso(stats.next_due)),
        ]
        rate_cells = [
            _cell(stats.processed_last_minute, numeric=True),
            _cell(stats.processed_last_hour, numeric=True),
            _cell(stats.failed_last_minute, numeric=True),
            _cell(stats.failed_last_hour, numeric=True),
        ]
    else:
        queue_cells, rate_cells = [_UNKNOWN] * 3, [_UNKNOWN] * 4
    counts = (stats.queued, stats.in_flight, stats.scheduled, failed, stats.processed_last_hour, stats.failed_last_hour)
    return {
        "key": stats.channel,
        "idle": known and not any(counts),
        "channel": stats.channel,
        "consumer": consumer.name if consumer else "",
        **figures,
        "failed": failed,
        "cells": [
            _cell(stats.channel, detail=consumer.name if consumer else "(no consumer registered)"),
            *queue_cells,
            failed_cell,
            *rate_cells,
            _cell(flow.text(now) if flow else "", title="schedule slots in UTC") if known else _UNKNOWN,
        ],
        "paused": bool(flow and flow.paused is not None),
    }


def _in_flight_href(channel: str) -> str:
    """The channel's in-flight list (``in_flight.py``), where messages can be cancelled."""
    return reverse("admin:taskchan_queueoverview_in_flight", args=[channel])


def _failed_href(channel: str) -> str:
    changelist = reverse("admin:taskchan_failedmessage_changelist")
    return f"{changelist}?{urlencode({'channel': channel, 'retried': 'no'})}"


def _worker_row(info: dict, now: float) -> dict:
    channels = info.get("channels") if isinstance(info.get("channels"), list) else []
    unreadable = info.get("unreadable") if isinstance(info.get("unreadable"), dict) else {}
    serves = ", ".join(printable(str(c)) + (" (cannot be read)" if c in unreadable else "") for c in channels)
    return {
        "key": str(info.get("id", "")),
        **{
            k: info.get(k)
            for k in (
                "id",
                "host",
                "pid",
                "channels",
                "concurrency",
                "started",
                "last_finished",
                "processed",
                "failed",
                "unreadable",
            )
        },
        "cells": [
            _cell(printable(str(info.get("id", "")))),
            _cell(printable(str(info.get("host", "")))),
            _cell(info.get("pid", ""), numeric=True),
            _cell(serves, title="; ".join(f"{c}: {why}" for c, why in unreadable.items())),
            _cell(info.get("concurrency", ""), numeric=True),
            _ago(info.get("started"), now),
            _ago(info.get("last_finished"), now),
            _cell(info.get("processed", ""), numeric=True),
            _cell(info.get("failed", ""), numeric=True),
        ],
    }


def unreachable_text(survey: Survey) -> str:
    """'' when every Redis host answered; else which did not, for people."""
    if not survey.unreachable:
        return ""
    hosts = "; ".join(f"{where}: {error}" for where, error in survey.unreachable)
    return f"Could not read {len(survey.unreachable)} Redis host(s) ({hosts}); the figures leave them out."


def collect(store=None, *, failed_links: bool = True) -> dict:
    """Everything the overview shows, as a JSON-ready dict.

    ``failed_links``: link failed counts to the failed-message list (only for
    users who may see that list).
    """
    store = store or get_store()
    failed = FailedMessage.objects.unretried_by_channel()
    registered = set(registry.all_consumers())
    error = ""
    try:
        # A sync view runs in a thread with no event loop: give the store's
        # async API one of its own for this call.
        survey = asyncio.run(survey_once(store, registered | set(failed)))
        stats, workers, error = survey.stats, survey.workers, unreachable_text(survey)
    except Exception as exc:  # Redis down or misbehaving: show what the database knows
        error = f"Could not read the queues from {store!r}: {exc}"
        stats = [ChannelStats(channel, extra={"unknown": True}) for channel in sorted(registered | set(failed))]
        workers = []
    try:
        known = [s.channel for s in stats if not s.extra.get("unknown")]
        flow = asyncio.run(_flow_once(store, known)) if known else {}
    except Exception:  # the hosts that do not answer are reported above
        flow = {}
    now = time.time()
    generated = timezone.localtime()
    return {
        "generated_at": generated.isoformat(),
        "generated_text": generated.strftime("%H:%M:%S %Z"),
        "refresh_ms": REFRESH_MS,
        "refresh_seconds": REFRESH_MS / 1000,
        "error": error,
        "channel_columns": CHANNEL_COLUMNS,
        "worker_columns": WORKER_COLUMNS,
        "channels": [
            _channel_row(s, failed.get(s.channel, 0), now, failed_links, flow.get(s.channel)) for s in stats
        ],
        "workers": [
            _worker_row(w, now) for w in sorted(workers, key=lambda w: str(w.get("id", "")))
        ],
    }


async def _flow_once(store, channels) -> dict[str, FlowStatus]:
    """Pauses, schedules and limits (``flow/status.py``) from a short-lived loop, closing its clients."""
    try:
        return await read_flow(store, channels)
    finally:
        await store.aclose()

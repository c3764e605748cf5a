"""Prometheus metrics: what was sent, how jobs ended, how long they took, and the queues.

Counters and histograms (all labelled ``channel``) are counted where things
happen, in the process where they happen:

- ``taskchan_messages_sent_total``: stored by ``send()``/``asend()``/the
  outbox relay, in the *sending* process (web, shell, worker sending follow-ups);
- ``taskchan_messages_processed_total``, ``..._retried_total``,
  ``..._dead_lettered_total``, ``..._redelivered_total`` (a lapsed lease
  reclaimed from a dead worker), ``taskchan_job_duration_seconds`` and
  ``taskchan_job_start_delay_seconds`` (from send to the start of this
  attempt; a retry's includes its backoff), in the *worker* process.

Gauges (``taskchan_queue_depth``, ``taskchan_in_flight``,
``taskchan_scheduled``, ``taskchan_oldest_lease_age_seconds``,
``taskchan_store_up``) are read from the store at scrape time by
``StoreCollector``, so every process exposing them reports the same values.

Exposing them:

- ``runworker --metrics-port PORT`` serves the worker's own counters (and the
  gauges) on ``http://127.0.0.1:PORT/metrics`` with prometheus_client's HTTP
  server (``--metrics-addr`` for another interface); scrape every worker.
- ``metrics_view`` is a plain Django view (no login: a scraper has no
  session) serving the web process's counters and the gauges; mount it, e.g.
  ``path("metrics", taskchan.metrics.metrics_view)``, and protect it outside
  Django (serve it only on an internal network, or have the proxy require a
  token or an IP allow-list), since queue names and volumes are visible to
  anyone who can read it.

They need prometheus_client, the ``prometheus`` extra
(``pip install 'django-taskchan[prometheus]'``).  Without it the hooks below
count nothing and cost next to nothing; ``metrics_view`` and
``runworker --metrics-port`` raise ``MissingExtra``, which names the extra, and
``manage.py check`` reports a ``metrics_view`` in the URLs as ``taskchan.E021``.

Multi-process note: prometheus_client keeps counters in process memory, so
every process counts only what it did itself and a worker's numbers are lost
when it restarts (Prometheus' ``rate()`` copes with resets).  Under a
multi-process web server (gunicorn with several workers) a scrape of
``/metrics`` reaches one of them at random: set ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode) before the processes start, and
``metrics_view`` then aggregates every process's files.  Workers are better
scraped one by one through ``--metrics-port``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from . import extras
from .consumer_table import all_consumers
from .stores.base import survey_once
from .stores.configured import get_store

_LABELS = ("channel",)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

try:
    import prometheus_client
except ModuleNotFoundError:  # the 'prometheus' extra is not installed: nothing is counted
    prometheus_client = None

if prometheus_client is not None:
    from prometheus_client import Counter, Histogram

    SENT = Counter("taskchan_messages_sent", "Messages stored for a channel by send()", _LABELS)
    PROCESSED = Counter("taskchan_messages_processed", "Jobs that finished successfully", _LABELS)
    RETRIED = Counter("taskchan_messages_retried", "Failed attempts rescheduled for a retry", _LABELS)
    DEAD_LETTERED = Counter(
        "taskchan_messages_dead_lettered",
        "Messages that ended as a FailedMessage (exhausted, rejected, worker lost, malformed)",
        _LABELS,
    )
    REDELIVERED = Counter(
        "taskchan_messages_redelivered", "Lapsed leases (a dead worker's messages) reclaimed by this worker", _LABELS
    )
    DURATION = Histogram(
        "taskchan_job_duration_seconds",
        "Time a consumer ran, per attempt",
        _LABELS,
        buckets=(*_SECONDS, float("inf")),
    )
    START_DELAY = Histogram(
        "taskchan_job_start_delay_seconds",
        "Time from send to the start of an attempt (includes delays and retry backoff)",
        _LABELS,
        buckets=(*_SECONDS, 3600, float("inf")),
    )
    CANCELLED = Counter(
        "taskchan_messages_cancelled", "Messages cancelled (taskchan.cancel): acked unrun, or ended by Cancelled", _LABELS
    )
    _METRICS = (SENT, PROCESSED, RETRIED, DEAD_LETTERED, REDELIVERED, DURATION, START_DELAY, CANCELLED)


class _Uncounted:
    """Stands in for a metric's child when prometheus_client is not installed."""

    __slots__ = ()

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_UNCOUNTED = (_Uncounted(),) * 8

# channel -> (sent, processed, retried, dead lettered, redelivered, duration, start delay, cancelled) children.
# ``.labels()`` takes a lock and builds a tuple on every call; the hot path
# looks its children up here instead.  A racing first insert is harmless:
# ``.labels()`` returns the same child to both threads.
_children: dict[str, tuple] = {}


def _for(channel: str) -> tuple:
    children = _children.get(channel)
    if children is None:
        if prometheus_client is None:
            return _UNCOUNTED
        children = _children[channel] = tuple(metric.labels(channel) for metric in _METRICS)
    return children


# -- hooks (producer.py, worker.py) ------------------------------------------


def sent(channel: str, result=None):
    """Count a stored message; returns ``result`` so a ``return`` can wrap the store call."""
    _for(channel)[0].inc()
    return result


def sent_many(channel: str, count: int) -> None:
    """Count ``count`` messages stored at once (``send_many``)."""
    _for(channel)[0].inc(count)


def processed(channel: str) -> None:
    _for(channel)[1].inc()


def retried(channel: str) -> None:
    _for(channel)[2].inc()


def dead_lettered(channel: str) -> None:
    _for(channel)[3].inc()


def cancelled(channel: str) -> None:
    _for(channel)[7].inc()


def redelivered(channel: str, count: int = 1) -> None:
    _for(channel)[4].inc(count)


def job_started(channel: str, sent_at: float) -> float:
    """Observe send-to-start; return the start time for ``job_finished``."""
    if sent_at:
        _for(channel)[6].observe(max(0.0, time.time() - sent_at))
    return time.perf_counter()


def job_finished(channel: str, started: float) -> float:
    """Observe the attempt's duration and return it, in seconds."""
    seconds = time.perf_counter() - started
    _for(channel)[5].observe(seconds)
    return seconds


# -- gauges, read from the store at scrape time --------------------------------


class StoreCollector:
    """Queue depth, in flight, scheduled and oldest lease age per channel, from ``store.stats()``.

    Uses the overview's data gathering (``stores.base.survey_once``): the
    channels the store knows plus every registered consumer's.
    """

    def __init__(self, store=None):
        self._store = store

    def describe(self):
        return []  # do not read Redis when registering

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(
            "taskchan_store_up", "1 if the store (every Redis host of it) answered this scrape, else 0"
        )
        unreachable = GaugeMetricFamily(
            "taskchan_store_hosts_unreachable", "Redis hosts of the store that did not answer this scrape"
        )
        families = {
            "queued": GaugeMetricFamily("taskchan_queue_depth", "Messages waiting, not leased", labels=_LABELS),
            "in_flight": GaugeMetricFamily("taskchan_in_flight", "Messages leased to a worker", labels=_LABELS),
            "scheduled": GaugeMetricFamily(
                "taskchan_scheduled", "Delayed sends and retries waiting for their time", labels=_LABELS
            ),
            "oldest_lease_age": GaugeMetricFamily(
                "taskchan_oldest_lease_age_seconds",
                "Seconds since the longest-held lease was taken or renewed",
                labels=_LABELS,
            ),
        }
        store = None
        try:
            store = self._store or get_store()
            survey = _run(survey_once(store, set(all_consumers())))
        except Exception:
            up.add_metric([], 0)
            unreachable.add_metric([], len(getattr(store, "shards", None) or [store]) if store else 1)
            yield up
            yield unreachable
            return
        # With several hosts, the gauges below cover the ones that answered.
        up.add_metric([], 0 if survey.unreachable else 1)
        unreachable.add_metric([], len(survey.unreachable))
        yield up
        yield unreachable
        stats = survey.stats
        for s in stats:
            for name, family in families.items():
                value = getattr(s, name)
                if value is not None:
                    family.add_metric([s.channel], value)
        yield from families.values()


def _run(coro):
    """Run ``coro`` to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result = {}

    def target():
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


_install_lock = threading.Lock()
_collector: StoreCollector | None = None


def install(registry=None) -> None:
    """Register the gauges' collector on the default registry (once per process)."""
    global _collector
    registry = registry or extras.require("prometheus").REGISTRY
    with _install_lock:
        if _collector is None:
            _collector = StoreCollector()
            registry.register(_collector)


def _registry():
    client = extras.require("prometheus")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(StoreCollector())
        return registry
    install()
    return client.REGISTRY


def metrics_view(request):
    """``/metrics`` for a Prometheus scraper: this process's counters plus the queue gauges.

    No authentication of its own; protect it where it is served (see the module docstring).
    """
    from django.http import HttpResponse

    registry = _registry()
    body = prometheus_client.generate_latest(registry)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)


def start_server(port: int, addr: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` from a daemon thread of this process (``runworker --metrics-port``).

    On loopback unless ``addr`` says otherwise (``--metrics-addr``): queue
    names and volumes are not for the public side of the host.
    """
    install()
    prometheus_client.start_http_server(port, addr=addr)

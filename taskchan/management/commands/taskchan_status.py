"""``manage.py taskchan_status [--json] [--liveness | --alerts] [options] [PATTERN ...]``.

The queue overview of the admin on the command line: per channel queued, in
flight (and the oldest lease's age), scheduled, failed messages not yet
retried, processed/failed in the last minute and hour, plus the live workers.

As a health check it separates two questions, each with its exit status:

- **liveness** (exit 2 when it fails): every Redis host answers; a live worker
  serves each channel that has messages queued; no worker has gone without
  finishing a job for ``--stalled-after`` seconds while its channels have
  messages queued; no lease has lapsed (more than ``--max-lapsed`` per channel:
  a dead worker's messages nobody reclaims).  With ``--host``, only the
  workers on that host (and the channels they serve) count, and at least one
  must be alive: the probe of one machine or pod.  Restarting workers is what
  fixes these.
- **alerts** (exit 1): more than ``--max-failed`` un-retried dead letters on a
  channel, or a channel a worker cannot read (a Redis key of the wrong type).
  People fix these; a process restart does not.

``--liveness`` checks only the first (exit 0 or 2): the one for systemd,
Kubernetes probes and load balancers, which must not flap on a dead letter.
``--alerts`` checks only the second (exit 0 or 1, 2 if Redis cannot be read).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sys
import time

from django.core.management import BaseCommand, CommandError

from taskchan import registry
from taskchan.conf import settings
from taskchan.exceptions import NotATaskchanLayer
from taskchan.flow.status import read_flow
from taskchan.models import FailedMessage
from taskchan.stores.base import survey_once
from taskchan.stores.configured import get_store
from taskchan.text import duration

#: exit statuses
OK, ALERTS, NOT_LIVE = 0, 1, 2


def visibility_timeout(channel: str) -> float:
    consumer = registry.get_consumer(channel)
    return consumer.visibility_timeout if consumer else float(settings.VISIBILITY_TIMEOUT)


async def gather(store, extra_channels, patterns):
    survey = await survey_once(store, extra_channels, lapse_after=visibility_timeout)  # closes the store
    stats = survey.stats
    if patterns:
        stats = [s for s in stats if any(fnmatch.fnmatchcase(s.channel, p) for p in patterns)]
    try:
        # Pauses, schedules and limits (taskchan/flow/), read after the survey on the same loop.
        flow = await read_flow(store, [s.channel for s in stats])
    except Exception:  # a host the survey already reported as unreachable
        flow = {}
    finally:
        await store.aclose()
    return stats, survey.workers, survey.lapsed, survey.unreachable, flow


def channel_rows(stats, lapsed, failed, flow=None) -> list[dict]:
    rows = []
    flow = flow or {}
    for s in stats:
        consumer = registry.get_consumer(s.channel)
        rows.append(
            {
                "channel": s.channel,
                "consumer": consumer.name if consumer else None,
                "queued": s.queued,
                "in_flight": s.in_flight,
                "oldest_lease_age": s.oldest_lease_age,
                "visibility_timeout": visibility_timeout(s.channel),
                "lapsed": lapsed.get(s.channel, 0),
                "scheduled": s.scheduled,
                "next_due": s.next_due,
                "failed": failed.get(s.channel, 0),
                "processed_last_minute": s.processed_last_minute,
                "processed_last_hour": s.processed_last_hour,
                "failed_last_minute": s.failed_last_minute,
                "failed_last_hour": s.failed_last_hour,
                "flow": flow[s.channel].as_dict() if s.channel in flow else None,
            }
        )
    return rows


def _number(value, default: float = 0.0) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def liveness(channels, workers, unreachable, options, now) -> list[str]:
    """What a worker restart (or Redis coming back) would fix; [] when live."""
    problems = [f"{where}: Redis does not answer ({error})" for where, error in unreachable]
    host = options["host"]
    if host is not None:
        workers = [w for w in workers if w.get("host") == host]
        if not workers:
            problems.append(f"no live worker on host {host!r}")
        served = {c for w in workers for c in (w.get("channels") or [])}
        channels = [c for c in channels if c["channel"] in served]
    serving = {c for w in workers for c in (w.get("channels") or [])}
    # A paused channel's queue is meant to wait: it makes no worker stalled.
    queued = {c["channel"]: c["queued"] for c in channels if c["queued"] and not (c.get("flow") or {}).get("paused")}
    for name, count in queued.items():
        if name not in serving:
            problems.append(f"{name}: {count} message(s) queued and no live worker serves it")
    stalled_after = options["stalled_after"]
    for w in workers:
        waiting = sum(queued.get(c, 0) for c in (w.get("channels") or []))
        last = max(_number(w.get("started")), _number(w.get("last_finished")))
        if waiting and now - last > stalled_after:
            problems.append(
                f"worker {w.get('id')}: no job finished for {duration(now - last)} while {waiting} "
                f"message(s) wait on its channels (--stalled-after {stalled_after:g})"
            )
    for c in channels:
        if c["lapsed"] > options["max_lapsed"]:
            problems.append(
                f"{c['channel']}: {c['lapsed']} lease(s) older than the visibility timeout of "
                f"{c['visibility_timeout']:g} s (--max-lapsed {options['max_lapsed']})"
            )
    return problems


def alerts(channels, workers, options) -> list[str]:
    """What needs a person: dead letters past the threshold, channels that cannot be read."""
    problems = [
        f"{c['channel']}: {c['failed']} failed message(s) not retried (--max-failed {options['max_failed']})"
        for c in channels
        if c["failed"] > options["max_failed"]
    ]
    unreadable = {}
    for w in workers:
        if isinstance(w.get("unreadable"), dict):
            unreadable.update(w["unreadable"])
    problems += [f"{channel}: cannot be read: {why}" for channel, why in sorted(unreadable.items())]
    return problems


class Command(BaseCommand):
    help = (
        "Show taskchan's queues and workers; exit 2 when not live (Redis, workers, lapsed leases), "
        "1 on alerts (dead letters, unreadable channels)."
    )
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("patterns", nargs="*", metavar="CHANNEL_PATTERN", help="channels to show, e.g. 'taskchan.mail.*'")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--liveness", action="store_true", help="check liveness only: exit 0 or 2 (for probes)")
        which.add_argument("--alerts", action="store_true", help="check alerts only: exit 0 or 1")
        parser.add_argument("--max-failed", type=int, default=0, help="failed messages allowed per channel (default 0)")
        parser.add_argument("--max-lapsed", type=int, default=0, help="lapsed leases allowed per channel (default 0)")
        parser.add_argument(
            "--stalled-after", type=float, default=300.0,
            help="seconds a worker may go without finishing a job while its channels have messages queued (default 300)",
        )
        parser.add_argument("--host", default=None, help="only the workers on this host (as they register: its hostname)")
        parser.add_argument("--layer", default=None, help="channel layer alias (default: TASKCHAN_LAYER)")

    def handle(self, *args, **options):
        try:
            store = get_store(options["layer"])
        except NotATaskchanLayer as exc:
            raise CommandError(str(exc)) from None
        failed = FailedMessage.objects.unretried_by_channel()
        try:
            stats, workers, lapsed, unreachable, flow = asyncio.run(
                gather(store, set(registry.all_consumers()) | set(failed), options["patterns"])
            )
        except Exception as exc:
            self.stderr.write(f"taskchan_status: could not read the queues from {store!r}: {exc}")
            self._exit(NOT_LIVE)
        now = time.time()
        channels = channel_rows(stats, lapsed, failed, flow)
        workers = sorted(workers, key=lambda w: str(w.get("id", "")))
        if options["alerts"]:  # an unreadable Redis still exits 2: nothing was checked there
            not_live = [f"{where}: Redis does not answer ({error})" for where, error in unreachable]
        else:
            not_live = liveness(channels, workers, unreachable, options, now)
        alerting = [] if options["liveness"] else alerts(channels, workers, options)
        if options["json"]:
            report = {
                "live": not not_live, "healthy": not not_live and not alerting, "liveness": not_live,
                "alerts": alerting, "problems": not_live + alerting,
                "unreachable": [{"store": where, "error": error} for where, error in unreachable],
                "channels": channels, "workers": workers,
            }
            self.stdout.write(json.dumps(report, indent=2, default=str))
        else:
            self.stdout.write(self._table(channels, workers, now))
            for name, status in sorted(flow.items()):
                if line := status.text(now):
                    self.stdout.write(f"{name}: {line}")
            for line in [*(f"NOT LIVE {p}" for p in not_live), *(f"ALERT {p}" for p in alerting)] or ["OK"]:
                self.stdout.write(line)
        self._exit(NOT_LIVE if not_live else ALERTS if alerting else OK)

    def _exit(self, code: int) -> None:
        if code:
            sys.stdout.flush()
            sys.exit(code)

    def _table(self, channels, workers, now) -> str:
        header = ["Channel", "Queued", "In flight", "Oldest lease", "Lapsed", "Scheduled", "Failed",
                  "Done 1m", "Done 1h", "Failed 1m", "Failed 1h"]
        rows = [
            [
                c["channel"], c["queued"], c["in_flight"],
                duration(c["oldest_lease_age"]) if c["oldest_lease_age"] is not None else "-",
                c["lapsed"], c["scheduled"], c["failed"], c["processed_last_minute"],
                c["processed_last_hour"], c["failed_last_minute"], c["failed_last_hour"],
            ]
            for c in channels
        ]
        out = [_format(header, rows) if rows else "No channels.", ""]
        if workers:
            wrows = [
                [
                    w.get("id", ""), w.get("pid", ""), w.get("concurrency", ""), _ago(w.get("started"), now),
                    _ago(w.get("last_finished"), now), w.get("processed", ""), w.get("failed", ""),
                    ", ".join(map(str, w.get("channels") or [])),
                ]
                for w in workers
            ]
            header = ["Worker", "PID", "Concurrency", "Started", "Last finished", "Processed", "Failed", "Serves"]
            out.append(_format(header, wrows))
        else:
            out.append("No live workers.")
        return "\n".join(out)


def _ago(timestamp, now) -> str:
    return f"{duration(now - timestamp)} ago" if _number(timestamp) else "-"


def _format(header, rows) -> str:
    cells = [[str(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        parts = [v.ljust(w) if i == 0 or not v.replace(".", "").isdigit() else v.rjust(w)
                 for i, (v, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)

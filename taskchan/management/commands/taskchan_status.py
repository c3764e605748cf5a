"""``manage.py taskchan_status [--json] [--max-failed N] [--max-lapsed N] [PATTERN ...]``.

The queue overview of the admin on the command line: per channel queued, in
flight (and the oldest lease's age), scheduled, failed messages not yet
retried, processed/failed in the last minute and hour, plus the live workers.

As a health check it exits 1 when a channel has more than ``--max-failed``
un-retried failed messages or more than ``--max-lapsed`` lapsed leases
(leases older than the consumer's visibility timeout: a dead worker's
messages waiting to be reclaimed), and 2 when the store cannot be read (with
several Redis hosts: when any of them cannot; the others are still shown).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sys
import time

from django.core.management import BaseCommand, CommandError

from taskchan import registry
from taskchan.admin_overview import duration
from taskchan.conf import settings
from taskchan.exceptions import NotATaskchanLayer
from taskchan.layers import get_store
from taskchan.models import FailedMessage
from taskchan.stores.base import survey_once


def visibility_timeout(channel: str) -> float:
    consumer = registry.get_consumer(channel)
    return consumer.visibility_timeout if consumer else float(settings.VISIBILITY_TIMEOUT)


async def gather(store, extra_channels, patterns):
    survey = await survey_once(store, extra_channels, lapse_after=visibility_timeout)  # closes the store
    stats = survey.stats
    if patterns:
        stats = [s for s in stats if any(fnmatch.fnmatchcase(s.channel, p) for p in patterns)]
    return stats, survey.workers, survey.lapsed, survey.unreachable


class Command(BaseCommand):
    help = "Show taskchan's queues and workers; exit 1 past the failure/lapsed-lease thresholds, 2 if unreadable."
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("patterns", nargs="*", metavar="CHANNEL_PATTERN", help="channels to show, e.g. 'taskchan.mail.*'")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        parser.add_argument("--max-failed", type=int, default=0, help="failed messages allowed per channel (default 0)")
        parser.add_argument("--max-lapsed", type=int, default=0, help="lapsed leases allowed per channel (default 0)")
        parser.add_argument("--layer", default=None, help="channel layer alias (default: TASKCHAN_LAYER)")

    def handle(self, *args, **options):
        patterns = options["patterns"]
        try:
            store = get_store(options["layer"])
        except NotATaskchanLayer as exc:
            raise CommandError(str(exc)) from None
        failed = FailedMessage.objects.unretried_by_channel()
        try:
            stats, workers, lapsed, unreachable = asyncio.run(
                gather(store, set(registry.all_consumers()) | set(failed), patterns)
            )
        except Exception as exc:
            self.stderr.write(f"taskchan_status: could not read the queues from {store!r}: {exc}")
            sys.stdout.flush()
            sys.exit(2)
        now = time.time()
        channels = []
        for s in stats:
            consumer = registry.get_consumer(s.channel)
            channels.append(
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
                }
            )
        workers = sorted(workers, key=lambda w: str(w.get("id", "")))
        problems = []
        for row in channels:
            if row["failed"] > options["max_failed"]:
                problems.append(
                    f"{row['channel']}: {row['failed']} failed message(s) not retried (--max-failed {options['max_failed']})"
                )
            if row["lapsed"] > options["max_lapsed"]:
                problems.append(
                    f"{row['channel']}: {row['lapsed']} lease(s) older than the visibility timeout of "
                    f"{row['visibility_timeout']:g} s (--max-lapsed {options['max_lapsed']})"
                )
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "healthy": not problems and not unreachable,
                        "problems": problems,
                        "unreachable": [{"store": where, "error": error} for where, error in unreachable],
                        "channels": channels,
                        "workers": workers,
                    },
                    indent=2,
                    default=str,
                )
            )
        else:
            self.stdout.write(self._table(channels, workers, now))
            for problem in problems:
                self.stdout.write(f"UNHEALTHY {problem}")
            for where, error in unreachable:
                self.stdout.write(f"UNREACHABLE {where}: {error} (its channels are left out above)")
            if not problems and not unreachable:
                self.stdout.write("OK")
        if unreachable:
            # Some Redis hosts could not be read: the same exit as none at all.
            sys.stdout.flush()
            sys.exit(2)
        if problems:
            sys.stdout.flush()
            sys.exit(1)

    def _table(self, channels, workers, now) -> str:
        header = ["Channel", "Queued", "In flight", "Oldest lease", "Lapsed", "Scheduled", "Failed",
                  "Done 1m", "Done 1h", "Failed 1m", "Failed 1h"]
        rows = [
            [
                c["channel"],
                c["queued"],
                c["in_flight"],
                duration(c["oldest_lease_age"]) if c["oldest_lease_age"] is not None else "-",
                c["lapsed"],
                c["scheduled"],
                c["failed"],
                c["processed_last_minute"],
                c["processed_last_hour"],
                c["failed_last_minute"],
                c["failed_last_hour"],
            ]
            for c in channels
        ]
        out = [_format(header, rows) if rows else "No channels."]
        out.append("")
        if workers:
            wrows = [
                [
                    w.get("id", ""),
                    w.get("pid", ""),
                    w.get("concurrency", ""),
                    f"{duration(now - w['started'])} ago" if w.get("started") else "",
                    w.get("processed", ""),
                    w.get("failed", ""),
                    ", ".join(map(str, w.get("channels") or [])),
                ]
                for w in workers
            ]
            out.append(_format(["Worker", "PID", "Concurrency", "Started", "Processed", "Failed", "Serves"], wrows))
        else:
            out.append("No live workers.")
        return "\n".join(out)


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

"""A consumer's schedule: a crontab (cronsim, in Django's TIME_ZONE) or a fixed interval.

Both give *slots*: instants every worker computes alike, whatever its clock
says, so that the slot itself names the firing (``ticker.py`` claims each one
once in the store).  An interval's slots are the multiples of its length since
the Unix epoch (``schedule=30``: :00 and :30 of every minute).  A crontab's are
cronsim's matches in ``TIME_ZONE`` (five fields, or six with seconds first):
across a daylight-saving change a wall time that does not exist is fired at
the first instant after the gap, and one that happens twice is fired once
(cronsim's rules, as cron's).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from ..exceptions import InvalidOption

#: shortest and longest interval schedule, seconds
MIN_INTERVAL = 1
MAX_INTERVAL = 366 * 24 * 3600
#: longest crontab accepted (cronsim has no bound of its own)
MAX_CRONTAB_CHARS = 200


class Interval:
    """Every ``seconds`` (whole), aligned on the Unix epoch."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def after(self, t: float) -> float:
        """The first slot strictly after unix time ``t``."""
        return (math.floor(t / self.seconds) + 1) * self.seconds

    def at_or_before(self, t: float) -> float:
        """The last slot at or before ``t``."""
        return math.floor(t / self.seconds) * self.seconds

    def __str__(self) -> str:
        return f"every {self.seconds} s"


class Crontab:
    """A crontab evaluated in Django's ``TIME_ZONE`` (read at each use, so ``override_settings`` applies)."""

    def __init__(self, expression: str):
        self.expression = expression

    @staticmethod
    def _zone():
        from django.conf import settings

        return ZoneInfo(settings.TIME_ZONE) if settings.TIME_ZONE else UTC

    def after(self, t: float) -> float:
        start = datetime.fromtimestamp(math.floor(t), self._zone())
        return next(CronSim(self.expression, start)).timestamp()

    def at_or_before(self, t: float) -> float:
        # reverse=True yields matches strictly before its start: start one second later.
        start = datetime.fromtimestamp(math.floor(t) + 1, self._zone())
        return next(CronSim(self.expression, start, reverse=True)).timestamp()

    def __str__(self) -> str:
        return self.expression


def parse_schedule(value: object) -> Interval | Crontab:
    """A crontab string, whole seconds (int) or a ``timedelta``; InvalidOption with the rule otherwise."""
    if isinstance(value, str):
        return _crontab(value)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds != int(seconds):
            raise InvalidOption(f"schedule as a timedelta must be whole seconds, got {value!r}")
        value = int(seconds)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOption(
            "schedule must be a crontab string (e.g. \"*/5 * * * *\"), whole seconds (e.g. 30) "
            f"or a datetime.timedelta, got {value!r}"
        )
    if not MIN_INTERVAL <= value <= MAX_INTERVAL:
        raise InvalidOption(
            f"schedule must be from {MIN_INTERVAL} second to {MAX_INTERVAL:,} seconds (366 days), got {value!r}"
        )
    return Interval(value)


def _crontab(expression: str) -> Crontab:
    if len(expression) > MAX_CRONTAB_CHARS or not expression.isascii():
        raise InvalidOption(f"schedule crontab must be at most {MAX_CRONTAB_CHARS} ASCII characters, got {expression!r}")
    probe = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        # Parsing checks each field; the first match checks that it ever fires
        # (cronsim refuses "30 2 31 2 *" itself: "Bad day-of-month").
        next(CronSim(expression, probe))
    except (CronSimError, StopIteration, ValueError, IndexError) as exc:
        raise InvalidOption(
            f"schedule {expression!r} is not a valid crontab ({exc or 'it never fires'}); five fields "
            "(minute hour day-of-month month day-of-week) or six with seconds first, e.g. \"*/5 * * * *\""
        ) from None
    return Crontab(expression)


def slot_iso(slot: float) -> str:
    """A slot as the message content shows it: ISO 8601, UTC, ``Z``."""
    return datetime.fromtimestamp(slot, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

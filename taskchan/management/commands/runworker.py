"""``manage.py runworker PATTERN...``: run consumers for taskchan channels.

Replaces channels' own runworker (taskchan comes first in INSTALLED_APPS).
``taskchan.*`` and other shell patterns expand against the registered
consumers; names outside ``taskchan.`` are served by channels' worker through
the ASGI application, exactly as channels' command does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from django.core.management import BaseCommand, CommandError

from taskchan import registry
from taskchan.conf import settings
from taskchan.exceptions import MissingExtra, NotATaskchanLayer
from taskchan.stores.configured import get_store
from taskchan.stores.memory import MemoryStore
from taskchan.worker import Worker, lifeline, time_limits

logger = logging.getLogger("taskchan.worker")

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def shell_expanded(names: list[str]) -> list[str]:
    """The arguments that are files here and not a registered channel.

    An unquoted ``taskchan.*`` is expanded by the shell when a file matches it
    (``taskchan.log``), so runworker receives file names instead of the pattern.
    """
    known = registry.all_consumers()
    return [name for name in names if name not in known and os.path.isfile(name)]


class Command(BaseCommand):
    help = "Run workers for taskchan channels (patterns such as 'taskchan.*' allowed) and plain channels."
    leave_locale_alone = True
    # A worker runs no views: skipping the system checks keeps the URL conf,
    # admin and templates out of its memory and its start-up time.
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("channels", nargs="+", help="channel names or patterns, e.g. 'taskchan.*'")
        parser.add_argument("--layer", default=None, help="channel layer alias (default: TASKCHAN_LAYER)")
        parser.add_argument("--concurrency", type=positive_int, default=1, help="jobs run at once (default 1)")
        parser.add_argument(
            "--prefetch", type=int, default=None,
            help="messages leased ahead of the running ones (default TASKCHAN_PREFETCH)",
        )
        parser.add_argument(
            "--burst", action="store_true",
            help="exit once the channels have nothing queued, scheduled or in flight",
        )
        parser.add_argument(
            "--grace", type=float, default=None,
            help="seconds to let running jobs finish after SIGTERM (default TASKCHAN_SHUTDOWN_GRACE)",
        )
        parser.add_argument(
            "--metrics-port", type=int, default=None,
            help="serve Prometheus metrics of this worker on http://ADDR:PORT/metrics",
        )
        parser.add_argument(
            "--metrics-addr", default="127.0.0.1",
            help="interface for --metrics-port (default 127.0.0.1; 0.0.0.0 for every interface)",
        )

    def handle(self, *args, **options):
        self._configure_logging(options["verbosity"])
        alias = options["layer"] or settings.LAYER
        files = shell_expanded(options["channels"])
        if files:
            raise CommandError(
                f"{', '.join(map(repr, files))}: {'is a file' if len(files) == 1 else 'are files'} in this "
                "directory, not a channel: the shell expanded an unquoted pattern such as taskchan.* "
                "into file names before runworker saw it. Quote the pattern: "
                "python manage.py runworker 'taskchan.*'"
            )
        try:
            taskchan_channels, other_channels = registry.expand(options["channels"])
        except registry.UnknownPattern as exc:
            raise CommandError(str(exc)) from None
        try:
            store = get_store(alias)
        except NotATaskchanLayer as exc:
            raise CommandError(str(exc)) from None
        if taskchan_channels and isinstance(store, MemoryStore):
            # Its messages live in the memory of the process that sent them;
            # this process would wait forever for messages nobody can give it.
            raise CommandError(
                f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer: a runworker process shares no memory "
                "with the processes that send, so it would never see their messages. Use "
                "'taskchan.layers.RedisChannelLayer' with CONFIG hosts (in the reference project: set "
                "REDIS_URL), or, in development, 'manage.py runserver', which runs the workers in-process."
            )
        if options["prefetch"] is not None and options["prefetch"] < 0:
            raise CommandError("--prefetch must be 0 or more")

        if options["metrics_port"] is not None:
            from taskchan import metrics

            try:
                metrics.start_server(options["metrics_port"], options["metrics_addr"])
            except MissingExtra as exc:
                raise CommandError(f"--metrics-port: {exc}") from None
        worker = None
        if taskchan_channels:
            worker = Worker(
                taskchan_channels,
                store=store,
                concurrency=options["concurrency"],
                prefetch=options["prefetch"],
                burst=options["burst"],
                grace=options["grace"],
            )
        clean = asyncio.run(self._run(worker, other_channels, alias))
        sys.stdout.flush()
        sys.stderr.flush()
        if worker is not None and worker.stuck:
            # Threads stuck past their time limit cannot be stopped: end the
            # process with a status that asks the supervisor for a fresh one.
            os._exit(time_limits.EXIT_STUCK)
        if not clean:
            # Jobs still run in threads past the grace period; their leases
            # lapse and another worker runs them. Do not wait for them.
            os._exit(0)

    async def _run(self, worker: Worker | None, other_channels: list[str], alias: str) -> bool:
        plain = None
        if other_channels:
            from channels.layers import get_channel_layer
            from channels.routing import get_default_application
            from channels.worker import Worker as ChannelsWorker

            logger.info("serving plain channels %s through the ASGI application", ", ".join(other_channels))
            channels_worker = ChannelsWorker(
                application=get_default_application(),
                channels=other_channels,
                channel_layer=get_channel_layer(alias),
            )
            plain = asyncio.create_task(channels_worker.arun())
            if worker is not None:
                # channels' worker serving the plain channels must not die unnoticed
                # beside a taskchan worker that goes on (lifeline.py).
                lifeline.watch(plain, "channels' worker for the plain channels", lambda: False, Worker.on_fatal)
        try:
            if worker is None:
                await plain
                return True
            return await worker.arun()
        finally:
            if plain is not None and not plain.done():
                plain.cancel()
                await asyncio.gather(plain, return_exceptions=True)

    def _configure_logging(self, verbosity: int) -> None:
        level = LOG_LEVELS.get(verbosity, logging.INFO)
        root = logging.getLogger("taskchan")
        root.setLevel(level)
        if not logging.getLogger().handlers and not root.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
            root.addHandler(handler)

"""``manage.py runserver``: daphne's, plus in-process workers on the in-memory layer.

daphne is not a taskchan dependency: where it is not installed this is
Django's own (WSGI) runserver with the same in-process workers, so views that
send jobs work, and websockets need daphne (``pip install daphne``).

With ``taskchan.layers.InMemoryChannelLayer`` (no REDIS_URL) messages live in
the server's own memory, so the server process runs a worker for every
registered channel in a background thread - as Channels 1's runserver did -
and jobs sent from views run with no other process.  With Redis configured it
is daphne's runserver unchanged: run ``manage.py runworker`` separately.
"""

from __future__ import annotations

import logging
import threading

try:
    from daphne.management.commands.runserver import Command as BaseRunserver
except ModuleNotFoundError:
    # staticfiles' runserver serves static files as Django's does, and is
    # Django's plain runserver when staticfiles is not installed.
    from django.contrib.staticfiles.management.commands.runserver import Command as BaseRunserver

from taskchan import registry
from taskchan.stores.configured import get_store
from taskchan.stores.memory import MemoryStore
from taskchan.worker import Worker

logger = logging.getLogger("taskchan.devserver")


class Command(BaseRunserver):
    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--noworker", action="store_false", dest="run_worker",
            help="do not run in-process taskchan workers",
        )

    def inner_run(self, *args, **options):
        if options.get("run_worker", True):
            self._start_worker()
        return super().inner_run(*args, **options)

    def _start_worker(self) -> None:
        store = get_store()
        channels = sorted(registry.all_consumers())
        if not isinstance(store, MemoryStore) or not channels:
            return
        worker = Worker(channels, store=store, concurrency=4)
        thread = threading.Thread(target=worker.run, name="taskchan-worker", daemon=True)
        thread.start()
        self.stdout.write(f"taskchan: in-process worker serving {', '.join(channels)}\n")

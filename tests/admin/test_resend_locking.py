"""The one locking rule of re-sending (taskchan/resend.py): two re-sends of the
same row at the same moment send it once.

Two threads, each with its own database connection, re-send the same row(s)
from views loaded before either started (two admins with the same page open).
Redis is paused for writes (``CLIENT PAUSE ... WRITE``) while they start, so
the first send is held for a while inside its transaction: without the lock
the second would read the row unretried meanwhile and send it too.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from taskchan.exceptions import CannotResend
from taskchan.models import FailedMessage
from taskchan.resend import resend_many
from tests.admin.conftest import bulk_failed, make_failed
from tests.conftest import KEYS

pytestmark = pytest.mark.django_db(transaction=True)

#: how long Redis holds writes back, so the first send is still running when the second starts
PAUSE_MS = 800


def race(redis_client, *calls):
    """Run ``calls`` at once, each in a thread of its own, while Redis holds writes back.

    Returns each call's result or the exception it raised, in order.
    """
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index, call):
        try:
            start.wait()
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    redis_client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert time.monotonic() - started >= PAUSE_MS / 1000  # the sends did wait for Redis
    return results


def test_two_resends_of_one_row_at_once_send_it_once(use_redis_layer, redis_client):
    row = make_failed(channel="taskchan.t.record", content={"n": 1})
    first_view = FailedMessage.objects.get(pk=row.pk)
    second_view = FailedMessage.objects.get(pk=row.pk)  # loaded before either re-send

    results = race(redis_client, first_view.resend, second_view.resend)

    [new_id] = [r for r in results if isinstance(r, str)]
    [refused] = [r for r in results if isinstance(r, CannotResend)]
    assert str(refused) == f"it was already retried as message {new_id}"
    assert redis_client.xlen(KEYS.stream("taskchan.t.record")) == 1
    assert FailedMessage.objects.get(pk=row.pk).retried_as == new_id


def test_two_bulk_resends_of_the_same_rows_at_once_send_each_once(use_redis_layer, redis_client):
    bulk_failed(20, channel="taskchan.t.record")
    rows = FailedMessage.objects.filter(channel="taskchan.t.record")

    first, second = race(redis_client, lambda: resend_many(rows.all()), lambda: resend_many(list(rows)))

    assert sorted([len(first.sent), len(second.sent)]) == [0, 20]
    assert sorted([len(first.skipped), len(second.skipped)]) == [0, 20]
    assert redis_client.xlen(KEYS.stream("taskchan.t.record")) == 20
    assert FailedMessage.objects.filter(retried_as="").count() == 0

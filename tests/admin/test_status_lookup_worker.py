"""The status lookup page with a real worker: a cancel that holds, a kept result, a dead letter.

Consumers are in ``tests/jobs.py`` (``taskchan.t.record``, ``taskchan.t.reject``,
``taskchan.adm.keep``).
"""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

import taskchan
from taskchan.models import FailedMessage
from tests.admin.conftest import LOOKUP, detail_url, shown_state
from tests.conftest import done_records, wait_for

# Committed rows: the worker process writes dead letters to the same database.
pytestmark = pytest.mark.django_db(transaction=True)


def state_becomes(message_id: str, state: str, timeout: float = 30):
    wait_for(
        lambda: taskchan.status(message_id).state == state,
        timeout=timeout,
        message=f"{message_id} {state}",
    )


def test_cancel_from_the_lookup_makes_a_queued_message_read_cancelled_and_never_run(
    client_with, use_redis_layer, redis_client, worker
):
    client = client_with("overview", "cancel")
    drop = taskchan.send("taskchan.t.record", {"n": 1})
    keep = taskchan.send("taskchan.t.record", {"n": 2})
    page = client.get(LOOKUP, {"message_id": drop})
    assert shown_state(page) == "queued" and 'value="Cancel"' in page.content.decode()
    client.post(LOOKUP, {"message_id": drop})

    worker("taskchan.t.record")
    state_becomes(keep, "succeeded")
    state_becomes(drop, "cancelled")
    assert [r[0] for r in done_records(redis_client)] == [keep]  # the cancelled one never ran
    page = client.get(LOOKUP, {"message_id": drop})
    assert shown_state(page) == "cancelled" and 'value="Cancel"' not in page.content.decode()
    assert [e.object_id for e in LogEntry.objects.all()] == [drop]


def test_a_finished_message_shows_its_kept_result_and_progress_and_cannot_be_cancelled(
    client_with, use_redis_layer, worker
):
    worker("taskchan.adm.keep")
    message_id = taskchan.send("taskchan.adm.keep", {"result": {"sum": 4242}, "note": "summed"})
    state_becomes(message_id, "succeeded")
    client = client_with("overview", "cancel")
    page = client.get(LOOKUP, {"message_id": message_id})
    text = page.content.decode()
    assert shown_state(page) == "succeeded"
    assert "&quot;sum&quot;: 4242" in text  # the kept result, as JSON
    assert "3 of 3: summed" in text  # the last progress report
    assert "Finished" in text and "taskchan.adm.keep" in text
    assert 'value="Cancel"' not in text
    response = client.post(LOOKUP, {"message_id": message_id}, follow=True)
    assert f"Nothing was cancelled: message {message_id} is succeeded." in response.content.decode()
    assert not LogEntry.objects.exists()


def test_a_hostile_result_and_progress_note_are_shown_escaped(client_with, use_redis_layer, worker):
    hostile = '<script>alert("x")</script>'
    worker("taskchan.adm.keep")
    message_id = taskchan.send(
        "taskchan.adm.keep", {"result": {"html": hostile}, "note": "<img src=x onerror=alert(1)>"}
    )
    state_becomes(message_id, "succeeded")
    text = client_with("overview").get(LOOKUP, {"message_id": message_id}).content.decode()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(\\&quot;x\\&quot;)&lt;/script&gt;" in text  # as JSON, then escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_a_dead_lettered_message_links_to_its_failed_message_page(
    client_with, use_redis_layer, worker
):
    worker("taskchan.t.reject")
    message_id = taskchan.send("taskchan.t.reject", {})
    row = wait_for(
        lambda: FailedMessage.objects.filter(message_id=message_id).first(),
        timeout=30,
        message="the dead letter",
    )
    state_becomes(message_id, "failed")
    page = client_with("overview", "view").get(LOOKUP, {"message_id": message_id})
    text = page.content.decode()
    assert shown_state(page) == "failed"
    assert f'href="{detail_url(row)}" id="taskchan-dead-letter"' in text
    assert "taskchan.exceptions.Reject" in text and "not for us" in text  # the failed attempt
    # Without the failed-message pages' permission: no link that would answer 403.
    assert (
        'id="taskchan-dead-letter"'
        not in client_with("overview").get(LOOKUP, {"message_id": message_id}).content.decode()
    )

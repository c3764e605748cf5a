"""The status lookup page without a worker: who may see and cancel, bad ids, unknown ids, Redis down.

What a worker does to a looked-up message (cancel, results, dead letters)
is in ``test_status_lookup_worker.py``.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import taskchan
from taskchan.cancels import is_cancelled
from taskchan.stores.configured import get_store
from tests.admin.conftest import LOOKUP, OVERVIEW, shown_state
from tests.conftest import layer_settings, lease_as
from tests.servers import free_port

pytestmark = pytest.mark.django_db

CH = "taskchan.t.record"
UNKNOWN_ID = "0" * 32


@pytest.fixture(params=["redis", "sharded"])
def queued(request):
    """A message queued on CH (no worker runs), on the Redis layer or a sharded one."""
    request.getfixturevalue("use_redis_layer" if request.param == "redis" else "use_sharded_layer")
    return taskchan.send(CH, {"n": 1})


def test_the_overview_links_to_the_lookup(client_with, use_redis_layer):
    page = client_with("overview").get(OVERVIEW).content.decode()
    assert f'href="{LOOKUP}" id="taskchan-lookup-link"' in page


def test_the_in_flight_list_links_each_message_to_its_lookup(client_with, use_redis_layer):
    message_id = taskchan.send(CH, {"n": 1})
    lease_as(get_store(), CH)
    page = client_with("overview").get(f"{OVERVIEW}in-flight/{CH}/").content.decode()
    assert f'<a href="{LOOKUP}?message_id={message_id}">{message_id}</a>' in page


def test_a_queued_message_reads_queued_with_its_channel(client_with, queued):
    page = client_with("overview").get(LOOKUP, {"message_id": queued})
    assert page.status_code == 200
    assert shown_state(page) == "queued"
    text = page.content.decode()
    assert f"<td>{CH}</td>" in text and "Enqueued" in text


def test_a_delayed_message_reads_scheduled_with_its_due_time_and_a_cancel(
    client_with, use_redis_layer
):
    message_id = taskchan.send(CH, {"n": 1}, delay=3600)
    page = client_with("overview", "cancel").get(LOOKUP, {"message_id": message_id})
    assert shown_state(page) == "scheduled"
    text = page.content.decode()
    assert "<th>Due</th>" in text and 'value="Cancel"' in text


def test_an_unknown_id_reads_unknown_and_offers_no_cancel(client_with, use_redis_layer):
    client = client_with("overview", "cancel")
    page = client.get(LOOKUP, {"message_id": UNKNOWN_ID})
    assert shown_state(page) == "unknown"
    assert 'value="Cancel"' not in page.content.decode()
    # A cancel posted anyway is refused: there is nothing it could stop.
    response = client.post(LOOKUP, {"message_id": UNKNOWN_ID}, follow=True)
    assert f"Nothing was cancelled: message {UNKNOWN_ID} is unknown." in response.content.decode()
    assert not is_cancelled(UNKNOWN_ID)
    assert not LogEntry.objects.exists()


def test_the_form_with_no_id_shows_no_message(client_with, use_redis_layer):
    page = client_with("overview").get(LOOKUP)
    assert page.status_code == 200
    assert shown_state(page) is None and "errornote" not in page.content.decode()


@pytest.mark.parametrize("garbage", ["a b", "x" * 101, "<script>alert(1)</script>", "id\x00", "ü"])
def test_a_bad_id_gets_the_form_error_and_no_lookup(client_with, use_redis_layer, garbage):
    page = client_with("overview").get(LOOKUP, {"message_id": garbage})
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="taskchan-lookup-errors"' in text
    assert shown_state(page) is None
    assert "<script>alert" not in text


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=120))
@example(text="\x00")
@example(text="a" * 100)
@example(text="malformed:0-1")
def test_no_text_as_an_id_gives_a_server_error(client_with, use_redis_layer, text):
    client = client_with("overview", "cancel")
    page = client.get(LOOKUP, {"message_id": text})
    assert page.status_code == 200
    assert shown_state(page) in (None, "unknown")  # nothing is queued: a valid id is unknown
    response = client.post(LOOKUP, {"message_id": text})
    assert response.status_code == 302  # back to the lookup, with what happened in a message
    assert not LogEntry.objects.exists()


def test_anonymous_and_non_staff_are_sent_to_the_login_page(client_with, queued):
    for client in (Client(), client_with("overview", "cancel", staff=False)):
        for response in (
            client.get(LOOKUP, {"message_id": queued}),
            client.post(LOOKUP, {"message_id": queued}),
        ):
            assert response.status_code == 302
            assert response["Location"].startswith("/admin/login/")
    assert not is_cancelled(queued)


def test_staff_without_the_view_permission_is_refused(client_with, queued):
    client = client_with("cancel")  # cancel alone does not open the page
    assert client.get(LOOKUP, {"message_id": queued}).status_code == 403
    assert client.post(LOOKUP, {"message_id": queued}).status_code == 403
    assert not is_cancelled(queued)


def test_view_without_cancel_shows_no_button_and_a_post_is_refused(client_with, queued):
    client = client_with("overview")
    page = client.get(LOOKUP, {"message_id": queued})
    assert shown_state(page) == "queued"
    assert 'value="Cancel"' not in page.content.decode()
    assert client.post(LOOKUP, {"message_id": queued}).status_code == 403
    assert not is_cancelled(queued)
    assert not LogEntry.objects.exists()


def test_the_cancel_form_carries_the_csrf_token_and_a_post_without_it_is_refused(
    client_with, queued
):
    client = client_with("overview", "cancel", enforce_csrf=True)
    page = client.get(LOOKUP, {"message_id": queued}).content.decode()
    form = re.search(
        r'<form method="post" id="taskchan-cancel">.*?</form>', page, re.DOTALL
    ).group()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    assert client.post(LOOKUP, {"message_id": queued}).status_code == 403
    assert not is_cancelled(queued)
    assert (
        client.post(LOOKUP, {"message_id": queued, "csrfmiddlewaretoken": token}).status_code == 302
    )
    assert is_cancelled(queued)


def test_cancel_of_a_queued_message_sets_its_marker_and_writes_the_admin_log(client_with, queued):
    client = client_with("overview", "cancel")
    response = client.post(LOOKUP, {"message_id": queued})
    assert response.status_code == 302 and response["Location"] == f"{LOOKUP}?message_id={queued}"
    page = client.get(response["Location"])
    text = page.content.decode()
    assert f"Message {queued} is cancelled" in text
    assert is_cancelled(queued)
    # It reads queued until a worker reaches it; the page says the cancel is on its way.
    assert shown_state(page) == "queued" and 'id="taskchan-cancel-pending"' in text
    assert 'value="Cancel"' not in text
    [entry] = LogEntry.objects.all()
    assert entry.object_id == queued
    assert entry.change_message == f"Cancelled message {queued} on {CH}."


@pytest.mark.parametrize("where", ["redis", "one host of two"])
def test_redis_not_answering_is_said_not_a_server_error(client_with, settings, redis_url, where):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.CHANNEL_LAYERS = (
        layer_settings(dead) if where == "redis" else layer_settings(redis_url, dead)
    )
    client = client_with("overview", "cancel")
    page = client.get(LOOKUP, {"message_id": UNKNOWN_ID})
    assert page.status_code == 200
    assert 'id="taskchan-lookup-error">Could not read the status from &lt;' in page.content.decode()
    assert shown_state(page) is None
    response = client.post(LOOKUP, {"message_id": UNKNOWN_ID}, follow=True)
    assert "Nothing was cancelled: Could not read the status" in response.content.decode()
    assert not LogEntry.objects.exists()

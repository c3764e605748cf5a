"""send_on_commit rows waiting for their relay, in the admin: read-only, never
deletable, and "relay now" for users who may change them."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.db import transaction

import taskchan
from taskchan.models import OutboxMessage
from tests.conftest import free_port, layer_settings

pytestmark = pytest.mark.django_db(transaction=True)

OUTBOX = "/admin/taskchan/outboxmessage/"


@pytest.fixture
def stuck_row(use_redis_layer, settings):
    """A committed send_on_commit message whose relay failed (Redis was down), then Redis is back."""
    settings.CHANNEL_LAYERS = layer_settings(f"redis://127.0.0.1:{free_port()}/0")
    with transaction.atomic():
        message_id = taskchan.send_on_commit("taskchan.t.record", {"order": 7})
    settings.CHANNEL_LAYERS = layer_settings(use_redis_layer)
    return OutboxMessage.objects.get(pk=message_id)


def test_a_waiting_row_is_listed_and_shown_read_only(client_with, stuck_row):
    client = client_with("outbox_view")

    listing = client.get(OUTBOX)
    assert listing.status_code == 200
    assert stuck_row.pk in listing.content.decode()
    assert b"relay_now" not in listing.content  # no action without the change permission

    detail = client.get(f"{OUTBOX}{stuck_row.pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "&quot;order&quot;: 7" in page  # the envelope, escaped
    assert 'name="_save"' not in page


def test_nobody_adds_or_deletes_a_committed_message(client_with, stuck_row):
    client = client_with("outbox_view", "outbox_relay", superuser=True)

    assert client.get(f"{OUTBOX}add/").status_code == 403
    assert client.post(f"{OUTBOX}{stuck_row.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(OUTBOX, {"action": "delete_selected", "_selected_action": [stuck_row.pk], "post": "yes"})
    assert OutboxMessage.objects.filter(pk=stuck_row.pk).exists()


def test_relay_now_stores_the_message_once_and_logs_it(client_with, stuck_row, redis_client):
    from taskchan.stores.configured import get_store

    client = client_with("outbox_view", "outbox_relay")
    response = client.post(OUTBOX, {"action": "relay_now", "_selected_action": [stuck_row.pk]}, follow=True)

    assert "Relayed 1 message(s) to the store." in response.content.decode()
    assert not OutboxMessage.objects.filter(pk=stuck_row.pk).exists()
    stream = get_store().keys.stream("taskchan.t.record")
    [(_, fields)] = redis_client.xrange(stream)
    assert stuck_row.pk in fields["m"]
    entry = LogEntry.objects.get(object_id=stuck_row.pk)
    assert entry.change_message == "Relayed to the store from the admin."


def test_relay_now_needs_the_change_permission(client_with, stuck_row):
    client = client_with("outbox_view")
    client.post(OUTBOX, {"action": "relay_now", "_selected_action": [stuck_row.pk]})
    assert OutboxMessage.objects.filter(pk=stuck_row.pk).exists()

"""The overview's in-flight list and its "cancel" action: permissions, the cancel itself, the admin log."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

import taskchan
from taskchan.cancels import is_cancelled
from taskchan.stores.configured import get_store
from tests.admin.conftest import OVERVIEW, OVERVIEW_DATA
from tests.conftest import lease_as

pytestmark = pytest.mark.django_db

CH = "taskchan.t.slow"
IN_FLIGHT = f"{OVERVIEW}in-flight/{CH}/"


@pytest.fixture(params=["redis", "sharded"])
def leased(request):
    """Two messages of CH leased to a worker that is not running, on the Redis layer or a sharded one."""
    request.getfixturevalue("use_redis_layer" if request.param == "redis" else "use_sharded_layer")
    ids = [taskchan.send(CH, {"n": n}) for n in range(2)]
    lease_as(get_store().home(CH), CH)
    return ids


def test_the_overview_links_a_channels_in_flight_figure_to_its_list(client_with, leased):
    data = client_with("overview").get(OVERVIEW_DATA).json()
    [row] = [r for r in data["channels"] if r["channel"] == CH]
    assert row["cells"][2]["href"] == IN_FLIGHT


def test_the_list_shows_leased_messages_and_cancel_only_with_the_permission(client_with, leased):
    page = client_with("overview").get(IN_FLIGHT)
    assert page.status_code == 200
    text = page.content.decode()
    assert all(message_id in text for message_id in leased) and "ghost-worker" in text
    assert 'value="Cancel"' not in text
    assert 'value="Cancel"' in client_with("overview", "cancel").get(IN_FLIGHT).content.decode()


def test_cancel_needs_the_permission(client_with, leased):
    response = client_with("overview").post(IN_FLIGHT, {"message_id": leased[0]})
    assert response.status_code == 403
    assert not is_cancelled(leased[0])
    assert client_with().get(IN_FLIGHT).status_code == 403  # staff without the overview's permission
    assert not LogEntry.objects.exists()


def test_cancel_cancels_the_message_and_writes_the_admin_log(client_with, leased):
    response = client_with("overview", "cancel").post(IN_FLIGHT, {"message_id": leased[0]}, follow=True)
    assert response.status_code == 200
    assert f"Message {leased[0]} is cancelled" in response.content.decode()
    assert is_cancelled(leased[0]) and not is_cancelled(leased[1])
    [entry] = LogEntry.objects.all()
    assert entry.object_id == leased[0]
    assert entry.change_message == f"Cancelled message {leased[0]} on {CH}."


@pytest.mark.parametrize("garbage", ["", "x" * 101, "a b", "<script>"])
def test_cancel_of_garbage_cancels_nothing_and_says_so(client_with, use_redis_layer, garbage):
    response = client_with("overview", "cancel").post(IN_FLIGHT, {"message_id": garbage}, follow=True)
    assert "Nothing was cancelled" in response.content.decode()
    assert not LogEntry.objects.exists()

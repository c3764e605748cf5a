"""The queue overview's pause and resume buttons: their own permission, the admin log, on both layers."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from taskchan.stores.configured import get_store
from tests.admin.conftest import OVERVIEW, OVERVIEW_DATA
from tests.conftest import on_store

CH = "taskchan.t.record"
PAUSE = OVERVIEW + "pause/"


@pytest.fixture(params=["use_memory_layer", "use_redis_layer"])
def layer(request):
    request.getfixturevalue(request.param)


def is_paused(channel: str) -> bool:
    store = get_store()
    return channel in on_store(store, lambda: store.home(channel).paused([channel]))


def flow_cell(client) -> str:
    row = next(r for r in client.get(OVERVIEW_DATA).json()["channels"] if r["channel"] == CH)
    return row["cells"][-1]["text"]


def test_viewing_the_overview_is_not_enough_to_pause(client_with, layer):
    client = client_with("overview")
    assert "Pause and resume" not in client.get(OVERVIEW).content.decode()
    assert client.post(PAUSE, {"channel": CH, "action": "pause"}).status_code == 403
    assert not is_paused(CH)
    assert not LogEntry.objects.exists()


def test_pause_and_resume_from_the_overview_are_logged(client_with, layer):
    client = client_with("overview", "pause")
    page = client.get(OVERVIEW).content.decode()
    assert "Pause and resume" in page and 'value="pause"' in page

    response = client.post(PAUSE, {"channel": CH, "action": "pause"}, follow=True)
    assert response.redirect_chain[-1][0] == OVERVIEW
    assert f"Paused {CH}." in response.content.decode()
    assert is_paused(CH)
    assert flow_cell(client).startswith("PAUSED") and "by user" in flow_cell(client)
    assert 'value="resume"' in client.get(OVERVIEW).content.decode()

    client.post(PAUSE, {"channel": CH, "action": "resume"})
    assert not is_paused(CH)
    assert flow_cell(client) == ""
    assert list(LogEntry.objects.order_by("pk").values_list("object_repr", "change_message")) == [
        (CH, f"Paused {CH}."), (CH, f"Resumed {CH}."),
    ]


@pytest.mark.parametrize(("data", "error"), [
    ({"channel": "not a channel", "action": "pause"}, "Invalid taskchan channel name"),
    ({"channel": CH, "action": "explode"}, "Unknown action"),
])
def test_a_bad_press_changes_nothing(client_with, layer, data, error):
    client = client_with("overview", "pause")
    response = client.post(PAUSE, data, follow=True)
    assert error in response.content.decode()
    assert not is_paused(CH) and not LogEntry.objects.exists()
    assert client.get(PAUSE).status_code == 405

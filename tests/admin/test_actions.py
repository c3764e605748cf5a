"""Retry, discard, edit and retry, hand to Celery: on one row, on a selection,
on a group; each logged in the admin log and reported with a pluralised message."""

from __future__ import annotations

import json
import sys
import types

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.messages import get_messages

from taskchan.exceptions import StoreUnavailable
from taskchan.models import FailedMessage
from tests.admin.conftest import (
    CHANGELIST,
    GROUPS,
    detail_url,
    make_failed,
    queued_envelopes,
)

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _retry_url(row) -> str:
    return f"{CHANGELIST}{row.pk}/retry/"


def _edit_url(row) -> str:
    return f"{CHANGELIST}{row.pk}/edit-retry/"


# -- retry one -------------------------------------------------------------------


def test_retry_resends_the_content_as_a_fresh_message_and_links_to_it(client_with, use_memory_layer):
    row = make_failed(content={"photo_id": 7}, channel="taskchan.t.record")
    client = client_with("view", "retry")

    response = client.post(_retry_url(row))

    assert response.status_code == 302 and response["Location"] == detail_url(row)
    row.refresh_from_db()
    [envelope] = queued_envelopes("taskchan.t.record")
    assert envelope.content == {"photo_id": 7}
    assert envelope.id == row.retried_as != row.message_id
    assert envelope.attempts_before == 0 and envelope.errors == []  # a fresh message
    assert row.retried_at is not None
    [text] = _messages(response)
    assert text == f'Re-sent as message <a href="{CHANGELIST}?message_id={row.retried_as}">{row.retried_as}</a>.'
    [entry] = LogEntry.objects.all()
    assert (entry.action_flag, entry.object_id) == (CHANGE, str(row.pk))
    assert entry.change_message == f"Retried as message {row.retried_as}."

    page = client.get(detail_url(row)).content.decode()
    assert f'href="{CHANGELIST}?message_id={row.retried_as}"' in page
    assert 'id="taskchan-retry"' not in page  # retried: no second retry button
    listing = client.get(CHANGELIST).content.decode()
    assert f'retried as <a href="{CHANGELIST}?message_id={row.retried_as}">' in listing


def test_a_retried_row_is_not_sent_twice(client_with, use_memory_layer):
    row = make_failed(channel="taskchan.t.record")
    client = client_with("view", "retry")
    client.post(_retry_url(row))
    response = client.post(_retry_url(row))
    assert _messages(response)[-1] == (
        f"Not re-sent: it was already retried as message {FailedMessage.objects.get().retried_as}."
    )
    assert len(queued_envelopes("taskchan.t.record")) == 1
    assert LogEntry.objects.count() == 1


def test_a_malformed_row_cannot_be_retried_as_it_is(client_with, use_memory_layer):
    row = make_failed(message_id="malformed:taskchan.t.record:1-0", channel="taskchan.t.record", content=None, raw="{")
    response = client_with("view", "retry").post(_retry_url(row))
    assert "no content (a malformed message): use edit and retry" in _messages(response)[0]
    assert queued_envelopes("taskchan.t.record") == []


def test_a_store_that_does_not_answer_is_reported_and_nothing_is_marked(client_with, use_memory_layer, monkeypatch):
    row = make_failed(channel="taskchan.t.record")

    def down(self, content=None):
        raise StoreUnavailable("Redis did not answer")

    monkeypatch.setattr(FailedMessage, "resend", down)
    response = client_with("view", "retry").post(_retry_url(row))
    assert _messages(response) == ["Not re-sent: Redis did not answer"]
    row.refresh_from_db()
    assert row.retried_as == "" and not LogEntry.objects.exists()


# -- retry a selection -----------------------------------------------------------


def test_retry_selected_resends_each_and_skips_what_it_cannot(client_with, use_memory_layer):
    rows = [make_failed(n, channel="taskchan.t.record", content={"n": n}) for n in range(3)]
    done = make_failed(9, channel="taskchan.t.record", retried_as="a" * 32)
    broken = make_failed(10, channel="taskchan.t.record", content=None, message_id="malformed:x:1-0")
    client = client_with("view", "retry")

    response = client.post(
        CHANGELIST,
        {"action": "retry_selected", "_selected_action": [r.pk for r in [*rows, done, broken]], "index": 0},
    )

    assert response.status_code == 302
    sent, skipped = _messages(response)
    assert sent == "3 failed messages were re-sent on their channels."
    assert skipped.startswith("2 failed messages were not re-sent: ") and skipped.endswith(".")
    assert set(skipped[len("2 failed messages were not re-sent: ") : -1].split("; ")) == {
        "it was already retried as message " + "a" * 32,
        "it has no content (a malformed message): use edit and retry",
    }
    envelopes = {e.id: e.content for e in queued_envelopes("taskchan.t.record")}
    for row in rows:
        row.refresh_from_db()
        assert envelopes.pop(row.retried_as) == row.content
    assert envelopes == {}
    assert LogEntry.objects.filter(action_flag=CHANGE).count() == 3


def test_retrying_one_selected_row_says_so_in_the_singular(client_with, use_memory_layer):
    row = make_failed(channel="taskchan.t.record")
    response = client_with("view", "retry").post(
        CHANGELIST, {"action": "retry_selected", "_selected_action": [row.pk], "index": 0}
    )
    assert _messages(response) == ["1 failed message was re-sent on its channel."]


# -- discard ---------------------------------------------------------------------


def test_discard_selected_asks_first_then_deletes_and_logs(client_with, use_memory_layer):
    keep = make_failed(0)
    gone = [make_failed(n) for n in (1, 2)]
    client = client_with("view", "delete")
    data = {"action": "delete_selected", "_selected_action": [r.pk for r in gone], "index": 0}

    confirm = client.post(CHANGELIST, data)
    assert confirm.status_code == 200
    assert "Are you sure you want to delete the selected failed messages?" in confirm.content.decode()
    assert FailedMessage.objects.count() == 3

    response = client.post(CHANGELIST, {**data, "post": "yes"})
    assert response.status_code == 302
    assert list(FailedMessage.objects.all()) == [keep]
    assert _messages(response) == ["Successfully deleted 2 failed messages."]
    assert sorted(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True)) == sorted(
        str(r.pk) for r in gone
    )


def test_the_action_is_called_discard(client_with, use_memory_layer):
    make_failed()
    page = client_with("view", "delete").get(CHANGELIST).content.decode()
    assert '<option value="delete_selected">Discard selected failed messages</option>' in page


def test_discard_from_the_detail_page_uses_djangos_confirmation(client_with, use_memory_layer):
    row = make_failed()
    client = client_with("view", "delete")
    assert f'href="{CHANGELIST}{row.pk}/delete/"' in client.get(detail_url(row)).content.decode()
    assert "Are you sure" in client.get(f"{CHANGELIST}{row.pk}/delete/").content.decode()
    client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"})
    assert not FailedMessage.objects.exists()
    assert LogEntry.objects.get().action_flag == DELETION


# -- edit and retry --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "Not valid JSON: Expecting property name enclosed in double quotes"),
        ("", "This field is required."),
        ("[1, 2]", "Message content must be a dict, got list"),
        ('"text"', "Message content must be a dict, got str"),
        ('{"x": NaN}', "Message content is not JSON-serialisable"),
        ('{"x": Infinity}', "Message content is not JSON-serialisable"),
        ('{"blob": "' + "y" * 300 + '"}', "over the limit of 200 (TASKCHAN_MAX_CONTENT_BYTES)"),
    ],
)
def test_edit_and_retry_refuses_what_send_refuses(client_with, use_memory_layer, settings, text, error):
    settings.TASKCHAN_MAX_CONTENT_BYTES = 200
    row = make_failed(content={"n": 1}, channel="taskchan.t.record")
    response = client_with("view", "change", "retry").post(_edit_url(row), {"content": text})

    assert response.status_code == 200
    page = response.content.decode()
    assert error.replace('"', "&quot;") in page or error in page, page[page.find("errornote") :][:600]
    row.refresh_from_db()
    assert (row.content, row.original_content, row.retried_as) == ({"n": 1}, None, "")
    assert queued_envelopes("taskchan.t.record") == []
    assert not LogEntry.objects.exists()


def test_edit_and_retry_sends_the_edit_and_keeps_the_original(client_with, use_memory_layer):
    row = make_failed(content={"photo_id": "7"}, channel="taskchan.t.record")
    client = client_with("view", "change", "retry")

    form = client.get(_edit_url(row)).content.decode()
    assert "{\n  &quot;photo_id&quot;: &quot;7&quot;\n}" in form

    response = client.post(_edit_url(row), {"content": '{"photo_id": 7, "note": "fixed"}'})

    assert response.status_code == 302 and response["Location"] == detail_url(row)
    row.refresh_from_db()
    assert row.content == {"photo_id": 7, "note": "fixed"}
    assert row.original_content == {"photo_id": "7"}
    [envelope] = queued_envelopes("taskchan.t.record")
    assert (envelope.id, envelope.content) == (row.retried_as, {"photo_id": 7, "note": "fixed"})
    assert _messages(response)[0].startswith("Edited and re-sent as message <a href=")
    assert LogEntry.objects.get().change_message == f"Edited the content and retried as message {row.retried_as}."
    page = client.get(detail_url(row)).content.decode()
    assert "original content (before edit and retry)" in page.lower()
    assert "&quot;photo_id&quot;: &quot;7&quot;" in page and "&quot;note&quot;: &quot;fixed&quot;" in page


def test_edit_and_retry_gives_a_malformed_message_content(client_with, use_memory_layer):
    row = make_failed(message_id="malformed:taskchan.t.record:3-0", channel="taskchan.t.record", content=None, raw="{garbage")
    response = client_with("view", "change", "retry").post(_edit_url(row), {"content": '{"rebuilt": true}'})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.content == {"rebuilt": True} and row.original_content is None and row.raw == "{garbage"
    assert [e.content for e in queued_envelopes("taskchan.t.record")] == [{"rebuilt": True}]


def test_edit_and_retry_of_a_retried_row_is_refused(client_with, use_memory_layer):
    row = make_failed(channel="taskchan.t.record", retried_as="b" * 32)
    client = client_with("view", "change", "retry")
    assert "already retried" in client.get(_edit_url(row)).content.decode()
    response = client.post(_edit_url(row), {"content": '{"n": 5}'})
    assert response.status_code == 200
    assert "Not re-sent: it was already retried as message" in response.content.decode()
    row.refresh_from_db()
    assert row.content == {"n": 0} and queued_envelopes("taskchan.t.record") == []


# -- groups ----------------------------------------------------------------------


def _group_rows():
    a_value = [make_failed(n, channel="taskchan.a", content={"n": n}) for n in range(3)]
    a_key = [make_failed(10 + n, channel="taskchan.a", last_error_type="builtins.KeyError") for n in range(2)]
    b_value = make_failed(20, channel="taskchan.b")
    b_done = make_failed(21, channel="taskchan.b", retried_as="c" * 32)
    return a_value, a_key, b_value, b_done


def test_groups_count_failures_by_channel_and_error_type(client_with, use_memory_layer):
    _group_rows()
    page = client_with("view", "retry", "delete").get(GROUPS).content.decode()
    lines = page.split('<tr data-channel="')[1:]
    assert [line.split('"')[0] for line in lines] == ["taskchan.a", "taskchan.a", "taskchan.b"]
    first, second, third = lines
    assert 'data-error-type="builtins.ValueError"' in first and '">3</a></td>' in first and "Retry all 3" in first
    assert 'data-error-type="builtins.KeyError"' in second and '">2</a></td>' in second
    assert 'data-error-type="builtins.ValueError"' in third and '">2</a></td>' in third
    assert '<td class="num">1</td>' in third and "Retry all 1" in third and "Discard all 2" in third
    assert f'href="{CHANGELIST}?channel=taskchan.a&amp;last_error_type=builtins.KeyError"' in second


def test_retry_all_of_a_group_resends_only_that_group(client_with, use_memory_layer):
    a_value, _a_key, _b_value, b_done = _group_rows()
    client = client_with("view", "retry")
    upto = max(r.pk for r in a_value)
    response = client.post(f"{GROUPS}retry/?channel=taskchan.a&error_type=builtins.ValueError&upto={upto}")
    assert response.status_code == 302 and response["Location"] == GROUPS
    assert _messages(response) == ["3 failed messages were re-sent on their channels."]
    assert sorted(e.content["n"] for e in queued_envelopes("taskchan.a")) == [0, 1, 2]
    assert set(FailedMessage.objects.exclude(retried_as="").values_list("pk", flat=True)) == {
        *(r.pk for r in a_value), b_done.pk
    }
    assert LogEntry.objects.count() == 3


def test_discard_all_of_a_group_confirms_and_spares_later_failures(client_with, use_memory_layer):
    a_value, a_key, b_value, b_done = _group_rows()
    client = client_with("view", "delete")
    upto = max(r.pk for r in a_value + a_key + [b_value, b_done])
    url = f"{GROUPS}discard/?channel=taskchan.b&error_type=builtins.ValueError&upto={upto}"
    later = make_failed(30, channel="taskchan.b")  # failed after the groups page was shown

    confirm = client.post(url)
    assert confirm.status_code == 200 and "Are you sure" in confirm.content.decode()
    response = client.post(url, {"post": "yes"})

    assert response.status_code == 302 and response["Location"] == GROUPS
    assert _messages(response) == ["Successfully deleted 2 failed messages."]
    assert set(FailedMessage.objects.filter(channel="taskchan.b")) == {later}
    assert FailedMessage.objects.filter(channel="taskchan.a").count() == 5
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 2


def test_group_urls_without_their_parameters_are_bad_requests(client_with, use_memory_layer):
    client = client_with(superuser=True)
    assert client.post(f"{GROUPS}retry/?channel=taskchan.a").status_code == 400
    assert client.post(f"{GROUPS}discard/?upto=x&channel=y").status_code == 400


# -- hand to Celery --------------------------------------------------------------


def _fake_handoff(monkeypatch, configured: bool):
    handed = []
    module = types.ModuleType("taskchan.handoff")
    module.celery_configured = lambda: configured

    def publish_dead_letter(row):
        handed.append(row.pk)
        return f"celery{len(handed) - 1}".ljust(32, "0")

    module.publish_dead_letter = publish_dead_letter
    monkeypatch.setitem(sys.modules, "taskchan.handoff", module)
    return handed


def test_hand_to_celery_is_hidden_without_the_handoff_module(client_with, use_memory_layer, monkeypatch):
    monkeypatch.setitem(sys.modules, "taskchan.handoff", None)  # import fails
    row = make_failed()
    client = client_with(superuser=True)
    assert "hand_to_celery_selected" not in client.get(CHANGELIST).content.decode()
    assert 'id="taskchan-celery"' not in client.get(detail_url(row)).content.decode()
    assert client.post(f"{CHANGELIST}{row.pk}/celery/").status_code == 404


def test_hand_to_celery_is_hidden_when_celery_is_not_configured(client_with, use_memory_layer, monkeypatch):
    handed = _fake_handoff(monkeypatch, configured=False)
    row = make_failed()
    client = client_with(superuser=True)
    assert "hand_to_celery_selected" not in client.get(CHANGELIST).content.decode()
    assert 'id="taskchan-celery"' not in client.get(detail_url(row)).content.decode()
    assert client.post(f"{CHANGELIST}{row.pk}/celery/").status_code == 404
    assert handed == []


def test_hand_to_celery_from_the_detail_page_and_a_selection(client_with, use_memory_layer, monkeypatch):
    handed = _fake_handoff(monkeypatch, configured=True)
    one, two, three = (make_failed(n) for n in range(3))
    client = client_with("view", "retry")

    assert 'id="taskchan-celery"' in client.get(detail_url(one)).content.decode()
    assert client.get(f"{CHANGELIST}{one.pk}/celery/").status_code == 405
    response = client.post(f"{CHANGELIST}{one.pk}/celery/")
    assert response.status_code == 302 and handed == [one.pk]
    assert _messages(response) == ["1 failed message was handed to Celery."]

    response = client.post(
        CHANGELIST,
        {"action": "hand_to_celery_selected", "_selected_action": [one.pk, two.pk, three.pk], "index": 0},
    )
    assert sorted(handed) == sorted([one.pk, two.pk, three.pk])
    assert _messages(response)[-2:] == [
        "2 failed messages were handed to Celery.",
        f"1 failed message was skipped: it was already retried as message {'celery0'.ljust(32, '0')}.",
    ]
    assert LogEntry.objects.filter(change_message__startswith="Handed to Celery as message celery").count() == 3


def test_hand_to_celery_needs_the_retry_permission(client_with, use_memory_layer, monkeypatch):
    handed = _fake_handoff(monkeypatch, configured=True)
    row = make_failed()
    client = client_with("view")
    assert 'id="taskchan-celery"' not in client.get(detail_url(row)).content.decode()
    assert client.post(f"{CHANGELIST}{row.pk}/celery/").status_code == 403
    assert handed == []


def test_json_in_the_editor_is_the_stored_content(client_with, use_memory_layer):
    content = {"ünïcode": "✓", "nested": {"list": [1, 2.5, None, True]}}
    row = make_failed(content=content)
    page = client_with("view", "change", "retry").get(_edit_url(row)).content.decode()
    start = page.index('name="content"')
    text = page[page.index(">", start) + 1 : page.index("</textarea>", start)]
    import html

    assert json.loads(html.unescape(text)) == content

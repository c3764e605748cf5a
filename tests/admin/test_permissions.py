"""Who may see and do what: staff only, the model's view permission to look,
retry/delete/change+retry to act, the overview's own permission; POST and CSRF on every action."""

from __future__ import annotations

import pytest
from django.test import Client

from taskchan.models import FailedMessage
from tests.admin.conftest import (
    CHANGELIST,
    GROUPS,
    OVERVIEW,
    OVERVIEW_DATA,
    detail_url,
    make_failed,
    make_user,
)

pytestmark = pytest.mark.django_db


def _pages(row) -> list[str]:
    return [
        CHANGELIST,
        detail_url(row),
        GROUPS,
        f"{CHANGELIST}{row.pk}/edit-retry/",
        OVERVIEW,
        OVERVIEW_DATA,
    ]


def test_anonymous_is_sent_to_the_login_page(use_memory_layer):
    row = make_failed()
    client = Client()
    for url in [*_pages(row), f"{CHANGELIST}{row.pk}/retry/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url
    response = client.post(f"{CHANGELIST}{row.pk}/retry/")
    assert response.status_code == 302
    assert FailedMessage.objects.get().retried_as == ""


def test_a_user_who_is_not_staff_is_sent_to_the_login_page(client_with, use_memory_layer):
    row = make_failed()
    client = client_with("view", "retry", "delete", "overview", staff=False)
    for url in _pages(row):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


def test_staff_without_permissions_is_refused_everywhere(client_with, use_memory_layer):
    row = make_failed()
    client = client_with()
    for url in _pages(row):
        assert client.get(url).status_code == 403, url
    for url in [
        f"{CHANGELIST}{row.pk}/retry/",
        f"{CHANGELIST}{row.pk}/edit-retry/",
        f"{CHANGELIST}{row.pk}/delete/",
        f"{GROUPS}retry/?channel=taskchan.t.poison&error_type=builtins.ValueError&upto={row.pk}",
        f"{GROUPS}discard/?channel=taskchan.t.poison&error_type=builtins.ValueError&upto={row.pk}",
    ]:
        assert client.post(url, {"content": "{}", "post": "yes"}).status_code == 403, url
    index = client.get("/admin/").content.decode()
    assert "Failed messages" not in index
    assert "Queue overview" not in index
    row.refresh_from_db()
    assert row.retried_as == ""


def test_view_permission_shows_list_and_detail_without_any_action(client_with, use_memory_layer):
    row = make_failed()
    client = client_with("view")

    listing = client.get(CHANGELIST)
    assert listing.status_code == 200
    page = listing.content.decode()
    assert 'value="retry_selected"' not in page
    assert 'value="delete_selected"' not in page
    assert "taskchan-overview-link" not in page  # no overview permission

    detail = client.get(detail_url(row)).content.decode()
    for button in ("taskchan-retry", "taskchan-edit-retry", "taskchan-discard", "taskchan-celery"):
        assert f'id="{button}"' not in detail
    assert 'name="_save"' not in detail  # read-only: nothing to save

    groups = client.get(GROUPS).content.decode()
    assert "taskchan-retry-all" not in groups and "taskchan-discard-all" not in groups

    assert client.post(f"{CHANGELIST}{row.pk}/retry/").status_code == 403
    assert client.get(f"{CHANGELIST}{row.pk}/edit-retry/").status_code == 403
    assert client.get(f"{CHANGELIST}{row.pk}/delete/").status_code == 403
    response = client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [row.pk], "index": 0})
    row.refresh_from_db()
    assert row.retried_as == ""
    assert response.status_code in (200, 302)


def test_nobody_can_add_or_edit_stored_fields(client_with, use_memory_layer):
    row = make_failed()
    client = client_with(superuser=True)
    assert client.get(CHANGELIST + "add/").status_code == 403
    response = client.post(detail_url(row), {"channel": "taskchan.other", "content": "{}", "_save": "Save"})
    assert response.status_code == 403
    row.refresh_from_db()
    assert row.channel == "taskchan.t.poison"
    assert 'name="_save"' not in client.get(detail_url(row)).content.decode()


def test_retry_permission_shows_retry_but_not_discard_or_edit(client_with, use_memory_layer):
    row = make_failed()
    client = client_with("view", "retry")
    detail = client.get(detail_url(row)).content.decode()
    assert 'id="taskchan-retry"' in detail
    assert 'id="taskchan-discard"' not in detail
    assert 'id="taskchan-edit-retry"' not in detail
    assert 'value="retry_selected"' in client.get(CHANGELIST).content.decode()
    assert client.get(f"{CHANGELIST}{row.pk}/edit-retry/").status_code == 403


def test_discard_needs_the_delete_permission(client_with, use_memory_layer):
    row = make_failed()
    client = client_with("view", "delete")
    page = client.get(detail_url(row)).content.decode()
    assert 'id="taskchan-discard"' in page and 'id="taskchan-retry"' not in page
    assert client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not FailedMessage.objects.exists()


@pytest.mark.parametrize(("perms", "allowed"), [(("view", "change"), False), (("view", "retry"), False), (("view", "change", "retry"), True)])
def test_edit_and_retry_needs_change_and_retry(client_with, use_memory_layer, perms, allowed):
    row = make_failed()
    client = client_with(*perms)
    assert client.get(f"{CHANGELIST}{row.pk}/edit-retry/").status_code == (200 if allowed else 403)
    assert ('id="taskchan-edit-retry"' in client.get(detail_url(row)).content.decode()) is allowed


def test_overview_has_its_own_permission(client_with, use_memory_layer):
    overview_only = client_with("overview")
    assert overview_only.get(OVERVIEW).status_code == 200
    assert overview_only.get(OVERVIEW_DATA).status_code == 200
    assert overview_only.get(CHANGELIST).status_code == 403
    index = overview_only.get("/admin/").content.decode()
    assert f'href="{OVERVIEW}"' in index
    assert "Failed messages" not in index
    # No links to pages it may not open, on the page or in its refreshes.
    make_failed(1, channel="taskchan.t.poison")
    assert f'href="{CHANGELIST}' not in overview_only.get(OVERVIEW).content.decode()
    assert CHANGELIST not in overview_only.get(OVERVIEW_DATA).content.decode()
    both = client_with("overview", "view")
    assert f'href="{CHANGELIST}"' in both.get(OVERVIEW).content.decode()
    assert f"{CHANGELIST}?channel=taskchan.t.poison" in both.get(OVERVIEW_DATA).content.decode()

    list_only = client_with("view")
    assert list_only.get(OVERVIEW).status_code == 403
    assert list_only.get(OVERVIEW_DATA).status_code == 403
    assert f'href="{OVERVIEW}"' not in list_only.get("/admin/").content.decode()


def test_the_overview_is_linked_from_the_taskchan_section_of_the_index(client_with, use_memory_layer):
    client = client_with(superuser=True)
    for url in ("/admin/", "/admin/taskchan/"):
        page = client.get(url).content.decode()
        assert f'href="{OVERVIEW}"' in page and "Queue overview" in page
        assert f'href="{CHANGELIST}"' in page


def test_actions_are_post_only(client_with, use_memory_layer):
    row = make_failed()
    client = client_with(superuser=True)
    for url in (
        f"{CHANGELIST}{row.pk}/retry/",
        f"{GROUPS}retry/?channel=taskchan.t.poison&error_type=builtins.ValueError&upto={row.pk}",
        f"{GROUPS}discard/?channel=taskchan.t.poison&error_type=builtins.ValueError&upto={row.pk}",
    ):
        assert client.get(url).status_code == 405, url
    row.refresh_from_db()
    assert row.retried_as == ""
    assert FailedMessage.objects.count() == 1


def test_every_action_checks_csrf(use_memory_layer):
    row = make_failed()
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(superuser=True))
    for url, data in [
        (f"{CHANGELIST}{row.pk}/retry/", {}),
        (f"{CHANGELIST}{row.pk}/edit-retry/", {"content": '{"n": 2}'}),
        (f"{GROUPS}retry/?channel=taskchan.t.poison&error_type=builtins.ValueError&upto={row.pk}", {}),
        (f"{GROUPS}discard/?channel=taskchan.t.poison&error_type=builtins.ValueError&upto={row.pk}", {"post": "yes"}),
        (CHANGELIST, {"action": "retry_selected", "_selected_action": [row.pk], "index": 0}),
        (CHANGELIST, {"action": "delete_selected", "_selected_action": [row.pk], "index": 0, "post": "yes"}),
        (f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}),
    ]:
        assert client.post(url, data).status_code == 403, url
    row.refresh_from_db()
    assert row.retried_as == "" and row.content == {"n": 0}

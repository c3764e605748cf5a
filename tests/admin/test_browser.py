"""The admin in a real browser (Chromium through Playwright) against a real
runserver on the test Redis, with real runworker processes.

Each page visited is saved under ``test-artifacts/screenshots/admin-*.png``, in a
1280-pixel window with Django's navigation sidebar open; ``make screenshots``
copies the ones the docs show to ``docs/images/``.
The server shares the test database through ``subprocess_env`` (a file, so the
tests use ``transaction=True``: rows are committed before the server reads them).
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

import taskchan
from taskchan.models import FailedMessage
from tests.admin.conftest import (
    CHANGELIST,
    GROUPS,
    OVERVIEW,
    PASSWORD,
    detail_url,
    make_failed,
    make_user,
)
from tests.browser import test_page as browser
from tests.conftest import KEYS, done_records, start_runserver, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT_MS = browser.TIMEOUT_MS
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture
def admin_server(manage, use_redis_layer):
    """runserver on a free port, on the test Redis and the test database; yields its base URL."""
    _proc, url = start_runserver(manage, redis_url=use_redis_layer)
    return url


def orm_beside_playwright(monkeypatch) -> None:
    """Let this test use the ORM while Playwright's sync API runs its event loop in the
    thread (Django refuses ORM calls where a loop runs).  Set after the server and
    worker processes started, so they do not inherit it."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def shot(page, name: str) -> None:
    browser.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(browser.SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page, base: str, user, password: str = PASSWORD) -> None:
    page.context.clear_cookies()
    page.goto(base + "/admin/login/?next=/admin/")
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(password)
    page.locator("#login-form [type=submit]").click()


def _row(page, message_id: str):
    return page.locator("#result_list tbody tr").filter(has=page.locator(f'span[title="{message_id}"]'))


def test_a_dead_letter_is_retried_from_its_page_and_a_real_worker_runs_it(
    request, monkeypatch, admin_server, worker, redis_client
):
    base = admin_server
    user = make_user(superuser=True)
    proc = worker("taskchan.t.poison", "taskchan.t.reject", "taskchan.adm.*")
    key = uuid.uuid4().hex
    poison_id = taskchan.send("taskchan.t.poison", {"photo_id": 7})
    fail_id = taskchan.send("taskchan.adm.fail_once", {"key": key})
    reject_id = taskchan.send("taskchan.t.reject", {"order": 12})
    wait_for(
        lambda: FailedMessage.objects.filter(message_id__in=[poison_id, fail_id, reject_id]).count() == 3,
        timeout=60,
        message="three dead letters written by the real worker",
    )

    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        page.set_viewport_size({"width": 1280, "height": 900})  # the size of docs/images/*.png
        log_in(page, base, user)
        page.goto(base + CHANGELIST)
        expect(page.locator("#result_list tbody tr")).to_have_count(3)
        expect(_row(page, poison_id)).to_contain_text("taskchan.t.poison")
        expect(_row(page, poison_id)).to_contain_text("ValueError: poison message always fails")
        expect(_row(page, fail_id)).to_contain_text("RuntimeError: first run for key")
        expect(_row(page, reject_id)).to_contain_text("rejected by consumer")

        # Retry from the detail page: a fresh message, run by the real worker.
        _row(page, fail_id).locator("th a").click()
        expect(page.locator(".field-content_display pre")).to_contain_text(f'"key": "{key}"')
        expect(page.locator(".field-errors_display")).to_contain_text("RuntimeError")
        expect(page.locator(".field-traceback_display pre")).to_contain_text("Traceback (most recent call last)")
        shot(page, "admin-failed-message-detail")
        page.locator("#taskchan-retry").click()
        success = page.locator(".messagelist .success")
        expect(success).to_contain_text("Re-sent as message")
        new_id = success.locator("a").inner_text()
        assert re.fullmatch(r"[0-9a-f]{32}", new_id)
        runs = wait_for(
            lambda: [r for r in done_records(redis_client) if r[0] == new_id],
            timeout=30,
            message="the real worker to run the retried message",
        )
        assert runs == [(new_id, 1, proc.pid)]
        page.reload()
        expect(page.locator(".field-retried_as_link a")).to_have_text(new_id)
        expect(page.locator("#taskchan-retry")).to_have_count(0)
        shot(page, "admin-failed-message-retried")

        # The "retried as" link filters the list to the new id: it succeeded, so no row.
        page.locator(".field-retried_as_link a").click()
        expect(page.locator("#taskchan-result-count")).to_have_text("0 failed messages")

        # Retry the poison message as a selection action: it fails again, as a new row.
        page.goto(base + CHANGELIST)
        _row(page, poison_id).locator("input.action-select").check()
        page.locator("select[name=action]").select_option("retry_selected")
        page.locator("button[name=index]").first.click()
        expect(page.locator(".messagelist .success")).to_have_text("1 failed message was re-sent on its channel.")
        poison_row = FailedMessage.objects.get(message_id=poison_id)
        assert poison_row.retried_as
        wait_for(
            lambda: FailedMessage.objects.filter(message_id=poison_row.retried_as).exists(),
            timeout=60,
            message="the retried poison message to be dead-lettered again",
        )
        page.reload()
        expect(_row(page, fail_id).locator("td.field-status")).to_contain_text("retried as")
        expect(page.locator("#result_list tbody tr")).to_have_count(4)
        shot(page, "admin-failed-messages")
        _row(page, poison_id).locator("td.field-status a").click()
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        expect(_row(page, poison_row.retried_as)).to_contain_text("taskchan.t.poison")
        assert errors == []


def test_a_payload_is_shown_as_text_never_run(request, monkeypatch, admin_server):
    base = admin_server
    user = make_user(superuser=True)
    row = make_failed(
        content={"html": XSS},
        last_error=XSS,
        errors=[{"type": "builtins.ValueError", "message": XSS, "at": 1700000000.0, "attempt": 1}],
        traceback=XSS,
    )
    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        log_in(page, base, user)
        page.goto(base + CHANGELIST)
        expect(page.locator("#result_list")).to_contain_text("ValueError: <script>window.__pwned = 1</script>")
        page.goto(base + detail_url(row))
        expect(page.locator(".field-content_display pre")).to_contain_text('"html": "<script>window.__pwned = 1</script>')
        expect(page.locator(".field-traceback_display pre")).to_have_text(XSS)
        expect(page.locator(".field-errors_display pre")).to_have_text(XSS)
        page.wait_for_timeout(500)  # give a broken image's onerror time to run, were it markup
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#content-main img[src='x']").count() == 0
        assert page.locator("script", has_text="__pwned").count() == 0
        shot(page, "admin-escaped-payload")
        page.goto(base + f"{CHANGELIST}{row.pk}/edit-retry/")
        expect(page.locator("#id_content")).to_have_value(re.compile(re.escape('"html": "<script>window.__pwned')))
        assert page.evaluate("window.__pwned") is None
        assert errors == []


def test_users_without_the_rights_are_refused(request, monkeypatch, admin_server):
    base = admin_server
    staff = make_user()  # staff, no permission
    not_staff = make_user("view", "retry", staff=False)
    row = make_failed()
    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        page.goto(base + CHANGELIST)
        expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/taskchan/failedmessage/$"))

        log_in(page, base, not_staff)
        expect(page.locator(".errornote")).to_contain_text("staff account")
        shot(page, "admin-refused-not-staff")

        log_in(page, base, staff)
        expect(page.locator("#content")).to_contain_text("have permission to view or edit anything")
        for url in (CHANGELIST, detail_url(row), GROUPS, OVERVIEW, OVERVIEW + "data/"):
            response = page.goto(base + url)
            assert response.status == 403, url
        shot(page, "admin-refused-staff-without-permission")
        response = page.request.post(base + f"{CHANGELIST}{row.pk}/retry/")
        assert response.status == 403  # no CSRF token: refused before anything else
        row.refresh_from_db()
        assert row.retried_as == ""
        assert errors == []


def test_the_overview_refreshes_itself_without_a_reload(request, monkeypatch, admin_server, worker, redis_client):
    base = admin_server
    user = make_user(superuser=True)
    proc = worker("taskchan.t.record", "taskchan.t.poison")
    for n in range(5):
        taskchan.send("taskchan.t.record", {"n": n})
    poison_id = taskchan.send("taskchan.t.poison", {"photo_id": 1})
    taskchan.send("taskchan.t.slow", {"seconds": 1}, delay=600)
    wait_for(lambda: len(done_records(redis_client)) == 5, timeout=30, message="five jobs run")
    wait_for(lambda: FailedMessage.objects.filter(message_id=poison_id).exists(), timeout=30, message="a dead letter")

    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        page.set_viewport_size({"width": 1280, "height": 900})
        log_in(page, base, user)
        page.locator("#content-main a", has_text="Queue overview").first.click()  # linked from the index
        expect(page).to_have_url(base + OVERVIEW)
        record = page.locator('#taskchan-channels-body tr[data-key="taskchan.t.record"] td')
        expect(record.nth(5)).to_have_text("5", timeout=TIMEOUT_MS)  # processed in the last minute
        poison = page.locator('#taskchan-channels-body tr[data-key="taskchan.t.poison"] td')
        expect(poison.nth(4)).to_have_text("1")  # dead letters not retried
        expect(poison.nth(7)).to_have_text("1")  # dead-lettered in the last minute
        slow = page.locator('#taskchan-channels-body tr[data-key="taskchan.t.slow"] td')
        expect(slow.nth(3)).to_contain_text("1 (next in ")
        workers = page.locator("#taskchan-workers-body tr")
        mine = workers.filter(has_text=str(proc.pid))
        expect(mine).to_contain_text("taskchan.t.record")
        expect(mine).to_contain_text("taskchan.t.poison")

        idle = page.locator('#taskchan-channels-body tr[data-key="taskchan.t.crash"]')
        expect(idle).to_be_visible()
        page.locator("#taskchan-hide-idle").check()
        expect(idle).to_be_hidden()
        expect(record.first).to_be_visible()

        page.evaluate("window.__noReload = 42")
        before = page.locator("#taskchan-updated").get_attribute("data-generated-at")
        taskchan.send("taskchan.t.slow", {"seconds": 1})
        taskchan.send("taskchan.t.slow", {"seconds": 1})  # nobody serves taskchan.t.slow: queued
        expect(slow.nth(1)).to_have_text("2", timeout=TIMEOUT_MS)
        assert page.evaluate("window.__noReload") == 42  # the same page, refreshed in place
        assert page.locator("#taskchan-updated").get_attribute("data-generated-at") != before
        expect(idle).to_be_hidden()  # still hidden after the tables were rebuilt
        shot(page, "admin-overview")
        assert errors == []


def test_groups_and_edit_and_retry_pages(request, monkeypatch, admin_server, redis_client):
    base = admin_server
    user = make_user(superuser=True)
    for n in range(3):
        make_failed(n, channel="taskchan.t.record", content={"n": n})
    make_failed(5, channel="taskchan.t.record", last_error_type="builtins.KeyError", last_error="'photo_id'")
    broken = make_failed(6, channel="taskchan.t.slow", content={"seconds": "ten"},
                         last_error_type="builtins.TypeError", last_error="must be real number, not str")

    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        page.set_viewport_size({"width": 1280, "height": 900})
        log_in(page, base, user)
        page.goto(base + CHANGELIST)
        page.locator("#taskchan-groups-link").click()
        lines = page.locator("#taskchan-groups tbody tr")
        expect(lines).to_have_count(3)
        expect(lines.first).to_contain_text("taskchan.t.record")
        expect(lines.first).to_contain_text("builtins.ValueError")
        shot(page, "admin-failed-message-groups")
        lines.first.locator(".taskchan-retry-all").click()
        expect(page.locator(".messagelist .success")).to_have_text("3 failed messages were re-sent on their channels.")
        expect(lines.first.locator(".taskchan-retry-all")).to_be_disabled()
        assert redis_client.xlen(KEYS.stream("taskchan.t.record")) == 3

        page.goto(base + detail_url(broken))
        page.locator("#taskchan-edit-retry").click()
        page.locator("#id_content").fill('{"seconds": ten}')
        page.locator("#taskchan-save-retry").click()
        expect(page.locator("#taskchan-content-errors")).to_contain_text("Not valid JSON")
        page.locator("#id_content").fill('{"seconds": NaN}')
        page.locator("#taskchan-save-retry").click()
        expect(page.locator("#taskchan-content-errors")).to_contain_text("not JSON-serialisable")
        shot(page, "admin-edit-and-retry")
        page.locator("#id_content").fill('{"seconds": 10}')
        page.locator("#taskchan-save-retry").click()
        expect(page.locator(".messagelist .success")).to_contain_text("Edited and re-sent as message")
        expect(page.locator(".field-original_content_display pre")).to_contain_text('"seconds": "ten"')
        expect(page.locator(".field-content_display pre")).to_contain_text('"seconds": 10')
        broken.refresh_from_db()
        assert broken.content == {"seconds": 10} and broken.original_content == {"seconds": "ten"}
        assert redis_client.xlen(KEYS.stream("taskchan.t.slow")) == 1
        assert errors == []


# -- layout at common desktop widths --------------------------------------------

#: a realistic long row: a dotted channel, a deep consumer path, a long error with no spaces to break at
LONG_ROW = {
    "channel": "taskchan.media.thumbnails-large",
    "consumer": "shop.media.consumers.make_large_thumbnail",
    "last_error_type": "django.core.exceptions.ObjectDoesNotExist",
    "last_error": "Photo matching query does not exist: /srv/media/uploads/2026/01/05/"
    "IMG_20260105_101203_with_a_very_long_name.jpg",
}

GEOMETRY = """(selector) => {
  const el = document.querySelector(selector);
  const box = el.getBoundingClientRect();
  return {scrollWidth: el.scrollWidth, clientWidth: el.clientWidth, right: box.right,
          pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


def assert_fits(page, selector: str, within: str) -> None:
    """``selector`` shows all of itself, no horizontal scrolling, inside ``within`` and the window."""
    box = page.evaluate(GEOMETRY, selector)
    outer = page.evaluate(GEOMETRY, within)
    assert box["scrollWidth"] <= box["clientWidth"] + 1, f"{selector} scrolls sideways: {box}"
    assert box["right"] <= outer["right"] + 1, f"{selector} runs past {within}: {box} vs {outer}"
    assert box["pageWidth"] <= box["viewport"], f"the page scrolls sideways: {box}"


@pytest.mark.parametrize("width", [1280, 1600])
def test_the_pages_fit_common_desktop_widths(request, monkeypatch, admin_server, worker, width):
    """With the navigation sidebar open (Django's default): the failed-message list shows every
    column without scrolling, the overview's tables stay inside the page, and the detail page's
    buttons sit on one row, none of them wrapped."""
    base = admin_server
    user = make_user(superuser=True)
    proc = worker("taskchan.t.record", "taskchan.t.poison", "taskchan.adm.*")
    taskchan.send("taskchan.t.record", {"n": 1})
    rows = [make_failed(n, **LONG_ROW) for n in range(3)] + [make_failed(3)]
    wait_for(lambda: proc.running and "serving" in proc.output(), timeout=30, message="the worker")

    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        page.set_viewport_size({"width": width, "height": 900})
        log_in(page, base, user)

        page.goto(base + CHANGELIST)
        expect(page.locator("#result_list tbody tr")).to_have_count(4)
        assert page.locator("#nav-sidebar").is_visible()
        assert_fits(page, "#changelist .results", "#content")
        for column in ("status", "last_failed"):
            header = page.locator(f"#result_list th.column-{column}")
            assert header.bounding_box()["x"] + header.bounding_box()["width"] <= width, column
        shot(page, f"admin-failed-messages-{width}")

        page.goto(base + detail_url(rows[0]))
        tools = page.locator(".object-tools > li")
        expect(tools).to_have_count(5)  # retry, edit and retry, hand to Celery, discard, history
        boxes = [tools.nth(i).bounding_box() for i in range(5)]
        assert len({round(b["y"]) for b in boxes}) == 1, f"the buttons wrap onto several rows: {boxes}"
        assert len({round(b["height"]) for b in boxes}) == 1, f"the buttons differ in height: {boxes}"
        assert max(b["x"] + b["width"] for b in boxes) <= width
        shot(page, f"admin-failed-message-detail-{width}")

        page.goto(base + OVERVIEW)
        expect(page.locator('#taskchan-workers-body tr[data-key]')).to_have_count(1)
        assert_fits(page, "#taskchan-channels", "#content")
        assert_fits(page, "#taskchan-workers", "#content")
        shot(page, f"admin-overview-{width}")
        assert errors == []

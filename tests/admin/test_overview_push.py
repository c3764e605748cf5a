"""The queue overview refreshed by the workers' websocket push (``/progress/``), polling as fallback.

Once its socket is subscribed the page polls only every 4 x 3 s: a change
shown within 6 s of the jobs that made it came by push.  Staff without the
overview's view permission, and anonymous visitors, are refused (4403).
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

import taskchan
from tests.admin.conftest import OVERVIEW, make_user
from tests.admin.test_browser import admin_server, log_in, orm_beside_playwright  # noqa: F401  (fixture)
from tests.browser import test_page as browser
from tests.conftest import done_records, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBE = """(url) => new Promise((resolve) => {
  const events = [];
  const ws = new WebSocket(url);
  ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", overview: true }));
  ws.onmessage = (m) => { events.push(JSON.parse(m.data)); ws.close(1000); };
  ws.onclose = (e) => resolve({ events, code: e.code });
})"""


def test_overview_refreshes_on_the_workers_push(request, monkeypatch, admin_server, worker, redis_client):  # noqa: F811
    base = admin_server
    user = make_user(superuser=True)
    worker("taskchan.t.record")
    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        log_in(page, base, user)
        page.goto(base + OVERVIEW)
        root = page.locator("#content-main")
        expect(root).to_have_attribute("data-pushed", "1")
        page.evaluate("window.__noReload = 1")
        page.wait_for_timeout(500)  # the refresh on subscribing has landed; the next poll is 12 s away
        sent = time.monotonic()
        for n in range(3):
            taskchan.send("taskchan.t.record", {"n": n})
        wait_for(lambda: len(done_records(redis_client)) == 3, timeout=10, message="three jobs run")
        record = page.locator('#taskchan-channels-body tr[data-key="taskchan.t.record"] td')
        expect(record.nth(5)).to_have_text("3", timeout=6000)  # processed in the last minute
        assert time.monotonic() - sent < 11
        assert page.evaluate("window.__noReload") == 1
        assert errors == []


def test_overview_push_is_for_staff_who_may_view_it(request, monkeypatch, admin_server):  # noqa: F811
    base = admin_server
    url = base.replace("http", "ws") + "/progress/"
    staff_without = make_user(staff=True)
    allowed = make_user("overview")
    orm_beside_playwright(monkeypatch)
    with browser.browser_page(request.node.name) as (page, errors):
        page.goto(base + "/")
        assert page.evaluate(SUBSCRIBE, url)["code"] == 4403  # anonymous
        log_in(page, base, staff_without)
        page.goto(base + "/")
        answer = page.evaluate(SUBSCRIBE, url)
        assert answer["code"] == 4403 and answer["events"][0]["type"] == "error"
        log_in(page, base, allowed)
        page.goto(base + "/")
        assert page.evaluate(SUBSCRIBE, url)["events"] == [{"type": "subscribed", "overview": True}]
        assert errors == []

"""Live progress in a real browser: the demo page's third card, over ``/progress/``.

Under runserver on the in-memory layer (its in-process worker runs the job),
and under daphne on Redis with a separate runworker; a reconnect in the middle
of a job, a forged or expired token, and a worker killed mid-job.
"""

from __future__ import annotations

import json
import re
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from tests.browser.test_page import browser_page
from tests.conftest import start_runserver

pytestmark = pytest.mark.django_db(transaction=True)

LONG = "taskchan.demo-long"


def bar_values(page) -> list[float]:
    return page.evaluate("window.__barValues")


def record_bar(page) -> None:
    """Keep every value the bar takes (a MutationObserver), to see it advance step by step."""
    page.evaluate(
        """() => {
          window.__barValues = [];
          const bar = document.getElementById("long-bar");
          new MutationObserver(() => window.__barValues.push(bar.value))
            .observe(bar, { attributes: true });
          const set = Object.getOwnPropertyDescriptor(HTMLProgressElement.prototype, "value").set;
          Object.defineProperty(bar, "value", {
            get() { return Number(this.getAttribute("value") || 0); },
            set(v) { set.call(this, v); window.__barValues.push(Number(v)); },
          });
        }"""
    )


def reached(page, step: int) -> None:
    """Wait until the bar shows ``step`` (checked every frame: a step lasts half a second)."""
    page.wait_for_function(f"document.getElementById('long-bar').value >= {step}", polling="raf")


def run_long_job(page, base: str, fail: bool = False, steps: int = 5) -> None:
    page.goto(base + "/")
    record_bar(page)
    page.evaluate(f"document.getElementById('long-form').dataset.steps = '{steps}'")
    page.locator("#long-send-fail" if fail else "#long-send").click()


def expect_bar_advances_to_the_result(page, steps: int = 5) -> None:
    status = page.locator("#long-status")
    bar = page.get_by_role("progressbar", name="Long job progress")
    expect(status).to_have_attribute("data-state", "running")
    expect(status).to_have_text(re.compile(r"step \d of 5|starting"))
    expect(status).to_have_attribute("data-state", "succeeded")
    expect(status).to_have_text(re.compile(r'^Done: \{"steps":5,"attempt":1,"worker_pid":\d+\}$'))
    expect(bar).to_have_attribute("max", str(steps))
    assert page.evaluate("document.getElementById('long-bar').value") == steps
    seen = bar_values(page)
    # Each step reported live: the bar took several values on its way, in order.
    middle = sorted({v for v in seen if 0 < v < steps})
    assert len(middle) >= 2, seen
    assert seen == sorted(seen), seen


def test_long_job_progress_under_runserver(request, devserver):
    _proc, base = devserver
    with browser_page(request.node.name) as (page, errors):
        run_long_job(page, base)
        expect_bar_advances_to_the_result(page)
        assert errors == []


def test_failing_long_job_shows_the_failure_live(request, devserver):
    _proc, base = devserver
    with browser_page(request.node.name) as (page, errors):
        run_long_job(page, base, fail=True)
        status = page.locator("#long-status")
        expect(status).to_have_attribute("data-state", "failed")
        expect(status).to_have_text("Failed: RuntimeError: the long job failed on purpose at step 3 of 5")
        assert "Traceback" not in status.text_content()
        assert page.evaluate("document.getElementById('long-bar').value") == 2
        assert 1 in bar_values(page)  # shown live, before the failure
        assert errors == []


@pytest.fixture
def daphne_redis(manage, use_redis_layer, worker):
    """runserver (daphne) on the test Redis, and a separate runworker for the long job."""
    _proc, base = start_runserver(manage, redis_url=use_redis_layer)
    return base


def test_long_job_progress_under_daphne_with_a_separate_worker(request, daphne_redis, worker):
    proc = worker(LONG)
    with browser_page(request.node.name) as (page, errors):
        run_long_job(page, daphne_redis)
        expect_bar_advances_to_the_result(page)
        assert f'"worker_pid":{proc.proc.pid}' in page.locator("#long-status").text_content()
        assert errors == []


def test_reconnect_mid_job_resumes(request, devserver):
    _proc, base = devserver
    with browser_page(request.node.name) as (page, errors):
        run_long_job(page, base, steps=8)
        status = page.locator("#long-status")
        reached(page, 2)
        # The server drops the socket (as a restart or a network change would)
        page.evaluate("window.longJobWatch.socket().close(4000)")
        # ...the helper reconnects, subscribes again and is sent where the job is now.
        expect(status).to_have_text(re.compile(r"step [4-8] of 8"))
        expect(status).to_have_attribute("data-state", "succeeded")
        assert page.evaluate("document.getElementById('long-bar').value") == 8
        assert errors == []


def subscribe_with(page, base: str, token: str, close_after_state: bool = False) -> dict:
    """Open /progress/, present ``token``; the events and the close code."""
    return page.evaluate(
        """([url, token, closeAfterState]) => new Promise((resolve) => {
          const events = [];
          const ws = new WebSocket(url);
          ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", token }));
          ws.onmessage = (m) => {
            events.push(JSON.parse(m.data));
            if (closeAfterState) ws.close(1000);
          };
          ws.onclose = (e) => resolve({ events, code: e.code });
        })""",
        [base.replace("http", "ws") + "/progress/", token, close_after_state],
    )


def test_forged_foreign_and_expired_tokens_are_refused(request, devserver):
    from django.core import signing

    import taskchan
    from taskchan.progress.token import SALT

    _proc, base = devserver
    good = taskchan.progress_token("a" * 32)
    payload, _, signature = good.rpartition(":")
    forged = payload + ":" + ("A" if signature[0] != "A" else "B") + signature[1:]
    widened = signing.b64_encode(b'{"ids":["a","b"],"exp":4e9}').decode() + ":" + good.split(":", 1)[1]
    payload = {"ids": ["a" * 32], "exp": 4e9}
    foreign_salt = signing.dumps(payload, salt="something.else", compress=True)
    foreign_key = signing.dumps(payload, salt=SALT, key="not the server's key", compress=True)
    expired = signing.dumps({"ids": ["a" * 32], "exp": 1.0}, salt=SALT, compress=True)
    with browser_page(request.node.name) as (page, errors):
        page.goto(base + "/")
        assert subscribe_with(page, base, good, close_after_state=True)["events"][0]["type"] == "state"
        for token in (forged, widened, foreign_salt, foreign_key, "", "x" * 50):
            answer = subscribe_with(page, base, token)
            assert answer["code"] == 4403, (token, answer)
            assert answer["events"] == [{"type": "error", "error": answer["events"][0]["error"], "code": 4403}]
        answer = subscribe_with(page, base, expired)
        assert answer["code"] == 4401
        assert "expired" in answer["events"][0]["error"]
        assert errors == []


def test_worker_killed_mid_job_shows_retrying_then_the_rerun(request, daphne_redis, worker):
    import taskchan

    workers = {w.pid: w for w in (worker(LONG, args=("--concurrency", "1")), worker(LONG))}
    with browser_page(request.node.name) as (page, errors):
        run_long_job(page, daphne_redis, steps=6)
        status = page.locator("#long-status")
        reached(page, 2)
        with ThreadPoolExecutor(1) as other:  # status() runs a loop: not in Playwright's thread
            [running_on] = other.submit(taskchan.status, status.get_attribute("data-id")).result().worker_ids
        first = workers.pop(int(running_on.split(":")[1]))
        first.signal(signal.SIGKILL)
        first.wait()
        # The other worker reclaims it once its lease (visibility_timeout=3) lapses.
        expect(status).to_have_text(re.compile(r"^(Retrying: attempt 2 started|attempt 2: .*)$"))
        expect(status).to_have_attribute("data-state", "succeeded")
        result = json.loads(status.text_content().removeprefix("Done: "))
        assert result["attempt"] == 2 and result["worker_pid"] == next(iter(workers))
        assert errors == []

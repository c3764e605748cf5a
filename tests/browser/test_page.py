"""The demo page in a real browser (Chromium through Playwright) against runserver.

runserver runs with no REDIS_URL: the in-memory layer, jobs run by its
in-process worker.  Each test saves a screenshot of the page under
``test-artifacts/screenshots/<test name>.png``, pass or fail.

Playwright's sync API runs its own event loop; these tests stay sync and close
the browser before the test ends (so Django's teardown sees no running loop).
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: how long a page element may take to reach its expected state, in ms
TIMEOUT_MS = 20_000

# Assertions wait as long as page actions do (Playwright's default is 5 s, too
# short for a loaded two-core machine running the suite in parallel).
expect.set_options(timeout=TIMEOUT_MS)




@contextmanager
def browser_page(name: str):
    """A fresh Chromium page; its screenshot is saved when the block ends, however it ends."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                yield page, errors
            finally:
                try:
                    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
                except Exception as exc:  # a crashed page must not hide the test's own failure
                    print(f"screenshot failed: {exc}")
        finally:
            browser.close()


def test_page_echoes_over_the_websocket(request, devserver):
    _proc, base = devserver
    with browser_page(request.node.name) as (page, errors):
        page.goto(base + "/")

        expect(page.locator("#echo-status")).to_have_text("open", timeout=TIMEOUT_MS)
        expect(page.locator("#echo-send")).to_be_enabled(timeout=TIMEOUT_MS)
        page.locator("#echo-input").fill("hello")
        page.locator("#echo-send").click()

        expect(page.locator("#echo-log li")).to_have_text(["You said: hello"], timeout=TIMEOUT_MS)
        expect(page.locator("#echo-input")).to_have_value("", timeout=TIMEOUT_MS)
        page.locator("#echo-input").fill("second")
        page.locator("#echo-input").press("Enter")
        expect(page.locator("#echo-log li")).to_have_text(
            ["You said: hello", "You said: second"], timeout=TIMEOUT_MS
        )
        assert errors == []


def test_job_form_shows_the_result(request, devserver):
    proc, base = devserver
    with browser_page(request.node.name) as (page, errors):
        page.goto(base + "/")

        page.locator("#job-text").fill("Hello taskchan")
        page.locator("#job-send").click()

        result = page.locator("#job-result")
        expect(result).to_have_attribute("data-status", "done", timeout=TIMEOUT_MS)
        expect(result).to_have_attribute("data-result", "NAHCKSAT OLLEH", timeout=TIMEOUT_MS)
        # The runserver process itself ran the job (in-process worker, no services).
        expect(result).to_have_attribute("data-worker-pid", str(proc.pid), timeout=TIMEOUT_MS)
        expect(result).to_have_text(
            re.compile(rf"^NAHCKSAT OLLEH \(worker pid {proc.pid}\)$"), timeout=TIMEOUT_MS
        )
        assert errors == []


def test_job_form_shows_an_error_for_empty_text(request, devserver):
    _proc, base = devserver
    with browser_page(request.node.name) as (page, errors):
        page.goto(base + "/")

        page.locator("#job-send").click()

        result = page.locator("#job-result")
        expect(result).to_have_attribute("data-status", "error", timeout=TIMEOUT_MS)
        expect(result).to_contain_text("missing or empty", timeout=TIMEOUT_MS)
        assert errors == []


def test_the_job_that_fails_is_retried_then_kept_as_a_failed_message(request, monkeypatch, devserver):
    """The demo's second button: a job whose consumer always raises, so that a newcomer has a
    failed message to look at in the admin without a shell."""
    from taskchan.models import FailedMessage

    _proc, base = devserver
    with browser_page(request.node.name) as (page, errors):
        page.goto(base + "/")

        page.locator("#job-text").fill("Hello taskchan")
        page.locator("#job-send-fail").click()

        result = page.locator("#job-result")
        expect(result).to_have_attribute("data-status", "failed", timeout=TIMEOUT_MS)
        expect(result).to_contain_text(
            "Failed after 2 attempts: RuntimeError: demo job failed on purpose (attempt 2 of 2): "
            "could not process 'Hello taskchan'"
        )
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # the ORM beside Playwright's loop
        row = FailedMessage.objects.get(message_id=result.get_attribute("data-id"))
        assert (row.channel, row.consumer, row.attempts) == (
            "taskchan.demo-fails", "project.consumers.always_fails", 2
        )
        assert [error["attempt"] for error in row.errors] == [1, 2]
        expect(page.locator("#job-admin-link")).to_have_attribute(
            "href", f"/admin/taskchan/failedmessage/{row.pk}/change/"
        )
        page.screenshot(path=str(SCREENSHOTS / "demo-failed-job.png"))
        assert errors == []

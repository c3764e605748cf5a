"""``manage.py runserver`` with no services: the in-memory layer, jobs run in-process.

A new user who runs the development server with no REDIS_URL posts a job and
sees it done, by the server process itself, with no worker started.
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)




class Client:
    """urllib with a cookie jar; sends Django's CSRF token the way the demo page does."""

    def __init__(self, base: str):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def csrf_token(self) -> str:
        return next(c.value for c in self.cookies if c.name == "csrftoken")

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """(status, headers, body) of one request; 4xx/5xx are returned, not raised."""
        url = self.base + path  # always http://127.0.0.1:PORT/...
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
        try:
            with self.opener.open(req, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()

    def get(self, path: str):
        return self.request("GET", path)

    def post_json(self, path: str, body: bytes):
        return self.request(
            "POST",
            path,
            body,
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-CSRFToken": self.csrf_token(),
            },
        )


@pytest.fixture
def client(devserver):
    _proc, base = devserver
    client = Client(base)
    status, _headers, page = client.get("/")
    assert status == 200
    assert b'id="job-form"' in page
    assert client.csrf_token()
    return client


def test_devserver_runs_posted_jobs_in_process(devserver, client):
    proc, _base = devserver

    status, headers, body = client.post_json("/jobs/", json.dumps({"text": "Hello world"}).encode())

    assert status == 202, body
    assert headers.get_content_type() == "application/json"
    message_id = json.loads(body)["id"]
    assert message_id

    def done():
        status, _headers, body = client.get(f"/jobs/{message_id}/")
        assert status == 200, body
        result = json.loads(body)
        return result if result["status"] == "done" else None

    result = wait_for(done, timeout=30, interval=0.1, message=f"job {message_id} to be done")
    assert result["result"] == "DLROW OLLEH"
    # No worker process exists: the runserver process ran the job itself.
    assert result["worker_pid"] == proc.pid
    assert "taskchan: in-process worker serving" in proc.output()


#: (body, what the error says): each is answered 400 with a JSON error
BAD_JOB_INPUT = [
    (b'{"text": ""}', "missing or empty"),
    (b'{"text": "   "}', "missing or empty"),
    (b"{}", "missing or empty"),
    (b'{"text": 42}', "must be a string"),
    (b"[1, 2]", "must be a JSON object"),
    (b"{not json", "not valid JSON"),
    (json.dumps({"text": "x" * 1001}).encode(), "at most 1000"),
]


def test_unknown_job_is_pending_and_bad_job_input_is_a_400_json_error(client):
    # One server for every case: each runserver start costs seconds, and these requests change nothing.
    status, _headers, body = client.get("/jobs/no-such-message/")
    assert status == 200
    assert json.loads(body) == {"status": "pending"}

    for bad, error_contains in BAD_JOB_INPUT:
        status, headers, reply = client.post_json("/jobs/", bad)
        assert status == 400, (bad, reply)
        assert headers.get_content_type() == "application/json", bad
        assert error_contains in json.loads(reply)["error"], (bad, reply)

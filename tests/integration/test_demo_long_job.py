"""The demo's long-job endpoint: what it accepts, and the token it answers with."""

from __future__ import annotations

import json

import pytest

import taskchan
from taskchan.progress.token import read_token

pytestmark = pytest.mark.django_db


def post(client, body) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/jobs/long/", raw, content_type="application/json")
    return response.status_code, response.json()


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_queued_with_a_token_naming_it(client, use_memory_layer, steps):
    status, body = post(client, {"steps": steps})
    assert status == 202
    assert read_token(body["token"]) == [body["id"]]
    found = taskchan.status(body["id"])
    assert (found.state, found.channel) == ("queued", "taskchan.demo-long")


@pytest.mark.parametrize("body", [{"steps": 0}, {"steps": 21}, {"steps": True}, {"steps": "5"}, {"steps": 5.0},
                                  [], b"{not json", b"\xff"])
def test_bad_bodies_are_refused(client, use_memory_layer, body):
    status, answer = post(client, body)
    assert status == 400 and answer["error"]

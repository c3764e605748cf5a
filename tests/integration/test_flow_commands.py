"""``manage.py taskchan_pause`` and what ``taskchan_status`` shows of flow control, on real Redis.

A paused channel is shown as paused, a scheduled one with its last and next
firing and its limits; a paused channel's waiting messages are not a liveness
failure (they are meant to wait).
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

import taskchan
from taskchan.consumer_table import unregister

pytestmark = pytest.mark.django_db(transaction=True)

CH = "taskchan.c.flowcmd"


@pytest.fixture
def scheduled():
    entry = taskchan.consumer(CH, schedule="*/5 * * * *", rate_limit="10/s")(lambda message: None)
    yield entry
    unregister(CH)


def run(*args) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=out)
    except SystemExit as exit:
        return exit.code, out.getvalue()
    return 0, out.getvalue()


def test_pause_command_status_and_resume(use_redis_layer, redis_client, scheduled):
    taskchan.send(CH, {"n": 1})
    code, out = run("taskchan_status", "--liveness")
    assert code == 2 and f"{CH}: 1 message(s) queued and no live worker serves it" in out

    assert run("taskchan_pause", CH) == (0, f"Paused {CH}.\n")
    assert redis_client.exists(f"taskchan:paused:{CH}")

    code, out = run("taskchan_status")
    assert code == 0, out  # waiting on purpose: not a liveness failure
    line = next(line for line in out.splitlines() if line.startswith(f"{CH}: "))
    assert "PAUSED" in line and "(manage.py taskchan_pause)" in line
    assert "schedule */5 * * * * (never fired, next in" in line and "rate 10/s" in line
    code, out = run("taskchan_status", "--json")
    row = next(c for c in json.loads(out)["channels"] if c["channel"] == CH)
    assert row["flow"]["paused"]["by"].endswith("(manage.py taskchan_pause)")
    assert row["flow"]["next_slot"] % 300 == 0

    assert run("taskchan_pause", CH, "--resume") == (0, f"Resumed {CH}.\n")
    assert not redis_client.exists(f"taskchan:paused:{CH}")
    assert run("taskchan_status", "--liveness")[0] == 2


def test_pause_command_refuses_a_bad_channel_name(use_redis_layer):
    with pytest.raises(CommandError, match="taskchan"):
        call_command("taskchan_pause", "not-a-taskchan-channel")

"""Dead letters PostgreSQL would refuse are still recorded, once, on PostgreSQL.

PostgreSQL refuses what SQLite stores without a word: an ``integer`` past
2**31 - 1, a ``varchar(255)`` of 300 characters, NUL in text, ``\\u0000`` in
``jsonb``.  Before, such a dead letter failed every visibility timeout and the
message never reached the admin.  Now ``taskchan/deadletter.py`` fits every
value to its column, and a row the database still refuses is written again
with the whole envelope as text (``raw``) and no content.

Run against a database of the test's own (created and dropped here) with the
test settings (``DATABASE_URL``), so the test consumers are there.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis as redis_lib

from tests.conftest import KEYS, ROOT, done_records
from tests.integration.test_postgres import database_url, project_env, run  # noqa: F401 - the fixture

RECORD_SCRIPT = r"""
import json
import django
django.setup()
from taskchan import deadletter
from taskchan.envelope import Envelope
from taskchan.models import FailedMessage

envelope = Envelope(
    id="f" * 32, channel="taskchan.t.reject", content={"text": "nul \x00 here"}, max_attempts=2**31,
    reply_channel="r" * 300, sent_at=1e20,
    errors=[{"type": "x." * 200, "message": "m\x00", "at": 1e20, "attempt": 10**20}],
    traceback="tb \x00 \ud800",
)
deadletter.record(
    channel="taskchan." + "c" * 150, entry_id="1-0", reason="exhausted", envelope=envelope,
    consumer="k" * 300, attempts=10**20, max_attempts=2**31,
)
deadletter.record_malformed(
    channel="taskchan." + "a" * 90, entry_id="1700000000000-12", raw="\udcff\udcfe bytes \x00 and \ud800",
    error="not UTF-8 text",
)
print(json.dumps(list(FailedMessage.objects.order_by("id").values()), default=str))
"""

LIST_SCRIPT = """
import json
import django
django.setup()
from taskchan.models import FailedMessage
print(json.dumps(list(FailedMessage.objects.order_by("id").values()), default=str))
"""


def pg_env(url: str, redis_url: str) -> dict:
    env = project_env(url, redis_url)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    return env


@pytest.fixture
def pg(database_url, redis_url):  # noqa: F811 - the fixture imported above
    env = pg_env(database_url, redis_url)
    migrate = run(["manage.py", "migrate", "--noinput"], env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return env


def test_values_past_every_column_are_fitted_and_recorded_on_postgres(pg):
    result = run(["-c", RECORD_SCRIPT], pg)
    assert result.returncode == 0, result.stdout + result.stderr

    exhausted, malformed = json.loads(result.stdout.splitlines()[-1])
    assert exhausted["message_id"] == "f" * 32
    assert (exhausted["attempts"], exhausted["max_attempts"]) == (2**31 - 1, 2**31 - 1)
    assert len(exhausted["channel"]) == 100 and len(exhausted["consumer"]) == 255
    assert len(exhausted["reply_channel"]) == 255 and len(exhausted["last_error_type"]) == 255
    assert exhausted["sent_at"] is None
    # jsonb refused "\u0000" in the content: the row keeps the envelope as text instead.
    assert exhausted["content"] is None
    assert "the database refused this row's values" in exhausted["raw"]
    assert '"c":{"text":"nul \\u0000 here"}' in exhausted["raw"]
    assert exhausted["traceback"] == "tb \\x00 \\ud800"

    assert malformed["message_id"].startswith("malformed:") and len(malformed["message_id"]) <= 64
    assert malformed["raw"] == "\\xff\\xfe bytes \\x00 and \\ud800"
    assert malformed["reason"] == "malformed"


def test_a_worker_on_postgres_records_every_dead_letter_once(pg, redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    good = client.xadd(KEYS.stream("taskchan.t.record"), {"m": json.dumps(
        {"v": 1, "id": "a" * 32, "ch": "taskchan.t.record", "c": {"n": 1}, "t": 1.0}
    )})
    forged = {
        name: client.xadd(KEYS.stream("taskchan.t.record"), {"m": json.dumps(
            {"v": 1, "id": f"forged-{name}", "ch": "taskchan.t.record", "c": {}, **fields}
        )})
        for name, fields in {
            "max-attempts": {"ma": 2**31}, "reply": {"rc": "r" * 300}, "attempts": {"n": 10**20},
            "long-id": {"id": "i" * 70},
        }.items()
    }
    rejected = json.dumps({
        "v": 1, "id": "b" * 32, "ch": "taskchan.t.reject", "c": {"text": "nul \x00"}, "t": 1.0,
        "ma": 10_000, "rc": "specific." + "x" * 80 + "!y",
    })
    client.xadd(KEYS.stream("taskchan.t.reject"), {"m": rejected})

    worker = subprocess.run(
        [sys.executable, "manage.py", "runworker", "taskchan.t.record", "taskchan.t.reject", "--burst"],
        cwd=ROOT, env=pg, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert "could not record dead letter" not in worker.stdout + worker.stderr

    listing = run(["-c", LIST_SCRIPT], pg)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout.splitlines()[-1])
    by_id = {row["message_id"]: row for row in rows}
    assert len(rows) == len(forged) + 1
    for entry_id in forged.values():
        row = by_id[f"malformed:taskchan.t.record:{entry_id.decode()}"]
        assert row["reason"] == "malformed" and row["content"] is None
    row = by_id["b" * 32]
    assert (row["reason"], row["max_attempts"], row["reply_channel"]) == (
        "rejected", 10_000, "specific." + "x" * 80 + "!y"
    )
    assert row["content"] is None and '"text":"nul \\u0000"' in row["raw"]
    assert [r[0] for r in done_records(redis_lib.Redis.from_url(redis_url, decode_responses=True))] == ["a" * 32]
    assert good and client.xlen(KEYS.stream("taskchan.t.record")) == 0
    client.close()

"""Re-sending's one locking rule on PostgreSQL, where the lock is a row lock
(``SELECT ... FOR UPDATE``): two re-sends of the same row at once send it once,
and two bulk re-sends of the same rows send each row once.

SQLite (the suite's own database) serialises whole transactions, so
``tests/admin/test_resend_locking.py`` cannot tell a row lock from none; this
runs the same race in a process of its own with the reference project's
settings on a PostgreSQL database of the test's own.
"""

from __future__ import annotations

import json

import psycopg

from tests.conftest import KEYS
from tests.integration.test_postgres import database_url, project_env, run  # noqa: F401 (a fixture)

RACE_SCRIPT = """
import json, os
import django
django.setup()
import redis
from taskchan.models import FailedMessage
from taskchan.resend import resend_many
from tests.admin.test_resend_locking import race

client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
row = FailedMessage.objects.create(message_id="a" * 32, channel="taskchan.demo", content={"text": "one"},
                                   reason="exhausted")
first_view, second_view = FailedMessage.objects.get(pk=row.pk), FailedMessage.objects.get(pk=row.pk)
one = race(client, first_view.resend, second_view.resend)
FailedMessage.objects.bulk_create(
    FailedMessage(message_id=f"{n:032x}", channel="taskchan.demo", content={"text": str(n)}, reason="exhausted")
    for n in range(20)
)
rows = FailedMessage.objects.filter(message_id__in=[f"{n:032x}" for n in range(20)])
many = race(client, lambda: resend_many(rows.all()), lambda: resend_many(list(rows)))
print(json.dumps({
    "one": [r if isinstance(r, str) else f"{type(r).__name__}: {r}" for r in one],
    "many_sent": sorted(len(result.sent) for result in many),
}))
"""


def test_two_resends_at_once_send_once_on_postgres(database_url, redis_url, redis_client):  # noqa: F811
    env = project_env(database_url, redis_url)
    migrate = run(["manage.py", "migrate", "--noinput"], env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    race = run(["-c", RACE_SCRIPT], env)

    assert race.returncode == 0, race.stdout + race.stderr
    outcome = json.loads(race.stdout.splitlines()[-1])
    [new_id] = [r for r in outcome["one"] if not r.startswith("CannotResend")]
    assert [r for r in outcome["one"] if r != new_id] == [
        f"CannotResend: it was already retried as message {new_id}"
    ]
    assert outcome["many_sent"] == [0, 20]
    assert redis_client.xlen(KEYS.stream("taskchan.demo")) == 1 + 20
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
        retried = conn.execute("SELECT retried_as FROM taskchan_failedmessage WHERE message_id = %s", ["a" * 32])
        assert retried.fetchone() == (new_id,)
        unretried = conn.execute("SELECT count(*) FROM taskchan_failedmessage WHERE retried_as = ''")
        assert unretried.fetchone() == (0,)

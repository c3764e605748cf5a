"""The PostgreSQL path end to end: DATABASE_URL -> migrate -> send -> runworker -> a row.

Runs the reference project's own settings (``project.settings``) against a
database of the test's own, created here and dropped afterwards, and the test
Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.conftest import KEYS, ROOT

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

SEND_SCRIPT = """
import django
django.setup()
from django.db import transaction
import taskchan
with transaction.atomic():
    message_id = taskchan.send_on_commit("taskchan.demo", {"text": "hello postgres"})
print(message_id)
"""


@pytest.fixture
def database_url():
    """``postgres://`` URL of a fresh, empty database; dropped after the test."""
    name = f"taskchan_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def project_env(database_url: str, redis_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    for name in ("TASKCHAN_TEST_DB", "DEBUG", "SECRET_KEY"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    return env


def run(args, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_postgres_migrate_send_and_runworker(database_url, redis_url, redis_client):
    env = project_env(database_url, redis_url)

    migrate = run(["manage.py", "migrate", "--noinput"], env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    send = run(["-c", SEND_SCRIPT], env)
    assert send.returncode == 0, send.stdout + send.stderr
    message_id = send.stdout.split()[-1]
    # After the commit the outbox row was relayed to Redis and deleted.
    assert redis_client.xlen(KEYS.stream("taskchan.demo")) == 1

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "runworker", "taskchan.demo", "--burst"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output

    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as conn:
        rows = conn.execute(
            "SELECT text, result, worker_pid FROM project_demoresult WHERE message_id = %s",
            [message_id],
        ).fetchall()
        outbox_rows = conn.execute("SELECT count(*) FROM taskchan_outboxmessage").fetchone()[0]
        failed_rows = conn.execute("SELECT count(*) FROM taskchan_failedmessage").fetchone()[0]
    assert rows == [("hello postgres", "SERGTSOP OLLEH", worker.pid)]
    assert outbox_rows == 0
    assert failed_rows == 0
    assert redis_client.xlen(KEYS.stream("taskchan.demo")) == 0

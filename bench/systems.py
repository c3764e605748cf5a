"""The systems the benchmark compares: their names, where each keeps queued jobs,
the environment of its processes and the command of its worker.

Every row runs the same no-op job (``bench/common.py``).  The *ceiling* row is
what Redis Streams and one Python producer do with no queue library at all:
``XADD`` per job, a worker reading with ``XREADGROUP COUNT`` and acking each
batch in one pipeline (``bench/streams_worker.py``); every other row's
end-to-end rate is also printed as a fraction of it.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from bench.common import (
    CEILING_STREAM,
    CELERY_QUEUE,
    DTASKS_QUEUE,
    LIMITED_CHANNEL,
    RATED_CHANNEL,
    RAW_CHANNEL,
    REDIS_URL_ENV,
    RELAY_CHANNEL,
    SHARD_URLS_ENV,
    SPREAD_CHANNELS,
    TASKCHAN_CHANNEL,
    TIME_LIMITED_CHANNEL,
)
from bench.processes import ROOT

#: "handoff": a taskchan channel with handoff="celery" (send() publishes to
#: Celery, a Celery worker runs it); "relay": the design not chosen, a taskchan
#: worker relaying each message to Celery (opt-in: --only ...,relay).
#: "encrypted": taskchan with the layer's symmetric_encryption_keys (--encrypted).
#: "cluster": the four channels of "multi" on a Redis Cluster of three masters (a
#: replica each); "durable": the same with TASKCHAN_SEND_REPLICAS = 1.
SYSTEMS = (
    "ceiling", "raw", "celery", "taskchan", "handoff", "relay", "multi", "sharded", "cluster", "durable", "encrypted",
    "timelimit", "rated", "limited", "nostatus", "progress", "sendmany", "dtasks", "threadmill", "dtredis", "dtdb",
)
#: Rows whose taskchan store is the bench's Redis Cluster.
CLUSTER_SYSTEMS = ("cluster", "durable")
#: the django.tasks rows (--only ...,dtasks,threadmill,dtredis,dtdb): one @task, four backends
DTASKS_SYSTEMS = {"dtasks": "taskchan", "threadmill": "threadmill", "dtredis": "redis", "dtdb": "db"}
#: the PostgreSQL database the django-tasks-db row uses (created if missing; trust auth)
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/taskchan_bench")
DEFAULT_SYSTEMS = ("ceiling", "raw", "celery", "taskchan", "handoff")
#: The row every end-to-end figure is divided by (the "of ceiling" column).
CEILING = "ceiling"
LABELS = {
    "ceiling": "bare Redis Streams (ceiling)",
    "raw": "raw channels_redis",
    "celery": "Celery",
    "taskchan": "taskchan",
    "handoff": "taskchan→celery",
    "relay": "taskchan→worker→celery",
    "multi": "taskchan, 4 channels",
    "sharded": "taskchan, 4 channels, 2 Redis",
    "cluster": "taskchan, 4 channels, cluster of 3",
    "durable": "taskchan, cluster, SEND_REPLICAS=1",
    "encrypted": "taskchan, encrypted",
    "timelimit": "taskchan, time_limit",
    "rated": "taskchan, rate limit (not binding)",
    "limited": "taskchan, concurrency limit per key (not binding)",
    "nostatus": "taskchan, status off",
    "dtasks": "django.tasks: taskchan",
    "threadmill": "django.tasks: threadmill",
    "dtredis": "django.tasks: django-tasks-redis",
    "dtdb": "django.tasks: django-tasks-db (PostgreSQL)",
    "progress": "taskchan, 100 progress calls/job",
    "sendmany": "taskchan, send_many",
}
#: Systems whose processes run under Django (and need its throw-away database).
DJANGO_SYSTEMS = (
    "taskchan", "handoff", "relay", "multi", "sharded", "cluster", "durable", "encrypted", "timelimit", "rated",
    "limited", "nostatus", "progress", "sendmany", "dtasks", "threadmill", "dtredis", "dtdb",
)
#: Where each system holds queued jobs (Redis command, key...), to check that a
#: send-only run stored every job it sent. Default prefixes: channels_redis
#: "asgi", taskchan "taskchan" (taskchan/stores/keys.py), kombu the queue name.
QUEUED = {
    "ceiling": ("xlen", CEILING_STREAM),
    "raw": ("zcard", "asgi" + RAW_CHANNEL),
    "celery": ("llen", CELERY_QUEUE),
    "taskchan": ("xlen", "taskchan:q:" + TASKCHAN_CHANNEL),
    "encrypted": ("xlen", "taskchan:q:" + TASKCHAN_CHANNEL),
    "timelimit": ("xlen", "taskchan:q:" + TIME_LIMITED_CHANNEL),
    "nostatus": ("xlen", "taskchan:q:" + TASKCHAN_CHANNEL),
    "dtasks": ("xlen", "taskchan:q:taskchan.tasks." + DTASKS_QUEUE),
    "progress": ("xlen", "taskchan:q:" + TASKCHAN_CHANNEL),
    "sendmany": ("xlen", "taskchan:q:" + TASKCHAN_CHANNEL),
    "handoff": ("llen", CELERY_QUEUE),
    "relay": ("xlen", "taskchan:q:" + RELAY_CHANNEL),
    "rated": ("xlen", "taskchan:q:" + RATED_CHANNEL),
    "limited": ("xlen", "taskchan:q:" + LIMITED_CHANNEL),
    **{
        system: ("xlen", *("taskchan:q:" + c for c in SPREAD_CHANNELS))
        for system in ("multi", "sharded")
    },
    # On the cluster: each channel's stream under its hash tag (taskchan/stores/keys.py).
    **{system: ("xlen", *("taskchan:q:{" + c + "}" for c in SPREAD_CHANNELS)) for system in CLUSTER_SYSTEMS},
}


def environments(
    redis_url: str, workdir: Path, second_url: str | None = None, cluster_url: str | None = None
) -> dict[str, dict]:
    """The environment of each system's producer and worker processes.

    Only the taskchan rows run under Django: with DJANGO_SETTINGS_MODULE set,
    Celery's Django fix-up would set Django up in the plain Celery worker too.
    """
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    base = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "REDIS_URL")}
    base.update(PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", **{REDIS_URL_ENV: redis_url})
    # Django as a deployment runs it: DEBUG off (with it on, Django's console
    # handler writes two lines per django.tasks task, in every backend's row).
    # DEBUG off needs a SECRET_KEY; this one signs nothing outside the run.
    taskchan = dict(
        base,
        DJANGO_SETTINGS_MODULE="bench.settings",
        REDIS_URL=redis_url,
        BENCH_SQLITE_PATH=str(workdir / "db.sqlite3"),
        DEBUG="0",
        SECRET_KEY="bench-only-" + secrets.token_urlsafe(32),
    )
    # The hand-off rows: taskchan's settings plus the hand-off consumers;
    # their Celery worker is the project's app under Django.
    handoff = dict(taskchan, DJANGO_SETTINGS_MODULE="bench.settings_handoff")
    envs = {"ceiling": base, "raw": base, "celery": base, "taskchan": taskchan, "multi": taskchan, "timelimit": taskchan,
            "handoff": handoff, "relay": handoff, "rated": taskchan, "limited": taskchan,
            "encrypted": dict(taskchan, DJANGO_SETTINGS_MODULE="bench.settings_encrypted"),
            # what keeping every message's status costs: the same row with it off
            "nostatus": dict(taskchan, TASKCHAN_STATUS_TTL="0"),
            # what progress reporting costs: the same job reporting 100 times (bench/jobs.py)
            "progress": dict(taskchan, BENCH_PROGRESS_CALLS="100"),
            # the taskchan row's jobs stored by send_many in chunks (bench/produce.py)
            "sendmany": taskchan,
            **{system: dict(taskchan, DJANGO_SETTINGS_MODULE="bench.settings_dtasks", BENCH_DTASKS=which,
                            BENCH_PG_URL=PG_URL)
               for system, which in DTASKS_SYSTEMS.items()}}  # fmt: skip
    if second_url:
        envs["sharded"] = dict(
            taskchan,
            DJANGO_SETTINGS_MODULE="bench.settings_sharded",
            **{SHARD_URLS_ENV: f"{redis_url},{second_url}"},
        )
    if cluster_url:
        # The reference project's own variables (project/settings.py).
        envs["cluster"] = dict(taskchan, TASKCHAN_REDIS_CLUSTER_URL=cluster_url)
        envs["durable"] = dict(envs["cluster"], TASKCHAN_SEND_REPLICAS="1")
    return envs


def worker_command(system: str) -> list[str]:
    """The command line of ``system``'s worker (stopped with SIGTERM to its process group)."""
    py = sys.executable
    if system == "ceiling":
        return [py, "-m", "bench.streams_worker"]
    if system == "raw":
        return [py, "-m", "bench.raw_worker"]
    # The same Celery worker configuration for the Celery and hand-off rows;
    # only the app differs (bench's plain one, or the project's under Django).
    celery = [
        py, "-m", "celery", "-A", "bench.celery_app" if system == "celery" else "project", "worker",
        "--pool", "threads", "--concurrency", "4",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-Q", CELERY_QUEUE, "--loglevel", "WARNING",
    ]  # fmt: skip
    if system in ("celery", "handoff"):
        return celery
    if system == "relay":
        return [py, "-m", "bench.relay_worker", *celery]
    manage = [py, "manage.py"]
    if system == "dtasks":
        return [*manage, "runworker", "taskchan.tasks." + DTASKS_QUEUE, "--concurrency", "4"]
    if system == "threadmill":  # one process of 4 threads, as the taskchan rows
        return [*manage, "threadmill", "worker", "-q", DTASKS_QUEUE, "--workers", "1", "--threads", "4"]
    if system == "dtredis":  # one process, one task at a time (its worker has no concurrency option)
        return [*manage, "run_redis_tasks", "--continuous", "--queue", DTASKS_QUEUE, "--interval", "0.01"]
    if system == "dtdb":  # one process, one task at a time, polling every 10 ms
        return [*manage, "db_worker", "--queue-name", DTASKS_QUEUE, "--interval", "0.01", "--no-startup-delay"]
    channels = {"timelimit": TIME_LIMITED_CHANNEL, "rated": RATED_CHANNEL, "limited": LIMITED_CHANNEL}.get(
        system, "taskchan.bench-sh.*" if system in ("multi", "sharded", *CLUSTER_SYSTEMS) else TASKCHAN_CHANNEL
    )
    return [py, "manage.py", "runworker", channels, "--concurrency", "4"]

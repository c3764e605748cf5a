"""Celery app for the benchmark: Redis broker, late acks, JSON only.

Worker (started by the orchestrator, `python -m bench`)::

    celery -A bench.celery_app worker --pool threads --concurrency 4 \
        --without-gossip --without-mingle --without-heartbeat -Q bench
"""

from __future__ import annotations

from celery import Celery

from bench.common import CELERY_QUEUE, record_done, redis_url

app = Celery("bench")
app.conf.update(
    broker_url=redis_url(),
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=CELERY_QUEUE,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop", ignore_result=True)
def noop(content: dict) -> None:
    record_done(content)

"""Consumers of the hand-off rows: the same no-op, run by a Celery worker.

``taskchan.bench-handoff`` (handoff="celery"): ``taskchan.send()`` publishes the
Celery task ``taskchan.run_handed_off`` at send time, and ``celery -A project
worker`` runs this consumer: the design taskchan ships (taskchan/handoff/).

``taskchan.bench-relay``: the design not chosen, measured for comparison.  The
message is stored in taskchan's stream as usual; a taskchan worker's consumer
publishes the Celery task and returns only once the broker accepted it, so the
worker acks after the hand-over; the Celery worker then runs the no-op.
"""

from __future__ import annotations

import taskchan
from bench.common import HANDOFF_CHANNEL, RELAY_CHANNEL, record_done
from taskchan.envelope import Envelope
from taskchan.handoff import publish


@taskchan.consumer(HANDOFF_CHANNEL, max_attempts=3, handoff="celery")
def noop(message) -> None:
    record_done(message.content)


@taskchan.consumer(RELAY_CHANNEL, max_attempts=3)
def relay(message) -> None:
    env = message.envelope
    raw = Envelope(
        id=env.id, channel=HANDOFF_CHANNEL, content=env.content, sent_at=env.sent_at
    ).encode()
    publish.send_task(HANDOFF_CHANNEL, raw, env.id)

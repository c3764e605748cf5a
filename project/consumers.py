"""The websocket echo (the seed's first example), the demo job consumers (one
that succeeds, one that always fails) and a plain (non-taskchan) channel consumer.

taskchan imports this module at start-up (``consumers.py`` of every installed
app is autodiscovered), which registers ``reverse_text`` for ``taskchan.demo``.
"""

import logging
import os
import time

import tenacity
from asgiref.sync import async_to_sync
from channels.consumer import SyncConsumer
from channels.generic.websocket import WebsocketConsumer
from django.utils import timezone

import taskchan
from project.models import DemoResult

logger = logging.getLogger(__name__)

#: websocket close code for a path with no route (4000-4999 are the application's)
CLOSE_NOT_FOUND = 4404
#: websocket close code for a binary frame (only text is echoed); daphne lets an
#: application send 1000 or 3000-4999 only, so not RFC 6455's 1003
CLOSE_UNSUPPORTED_DATA = 4415


class EchoConsumer(WebsocketConsumer):
    """Answers each text frame ``hello`` with ``You said: hello``; closes on a binary frame."""

    def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            self.close(code=CLOSE_UNSUPPORTED_DATA)
            return
        self.send(text_data=f"You said: {text_data}")


class NotFoundConsumer(WebsocketConsumer):
    """Accepts, then closes with 4404, so the client learns why it was turned away."""

    def connect(self):
        self.accept()
        self.close(code=CLOSE_NOT_FOUND)


#: a plain named channel, served by ``runworker demo-plain`` through the ASGI
#: application's "channel" route (``project/asgi.py``)
PLAIN_CHANNEL = "demo-plain"


class PlainPingConsumer(SyncConsumer):
    """Channels' own named-channel consumer, for a channel outside ``taskchan.``.

    ``{"type": "demo.ping", "text": ..., "reply_channel": ...}`` on ``demo-plain``
    is answered with ``{"type": "demo.pong", "text": ..., "worker_pid": ...}`` on
    ``reply_channel``.  Such channels keep Channels' at-most-once delivery: no
    acknowledgement, no retry (that is what ``taskchan.*`` channels add).
    """

    def demo_ping(self, message):
        reply_channel = message.get("reply_channel")
        if not reply_channel:
            logger.warning("demo.ping without a reply_channel: %r", message)
            return
        async_to_sync(self.channel_layer.send)(
            reply_channel,
            {"type": "demo.pong", "text": message.get("text", ""), "worker_pid": os.getpid()},
        )


@taskchan.consumer("taskchan.demo", max_attempts=3)
def reverse_text(message):
    """Store ``content["text"]`` reversed and upper-cased, with the worker's pid.

    Idempotent: a second delivery of the same message updates the same row.
    """
    text = message.content.get("text")
    if not isinstance(text, str):
        raise taskchan.Reject(f"content['text'] must be a string, got {text!r}")
    DemoResult.objects.update_or_create(
        message_id=message.id,
        defaults={
            "text": text,
            "result": text[::-1].upper(),
            "worker_pid": os.getpid(),
            "finished_at": timezone.now(),
        },
    )
    logger.info("demo message %s done on attempt %s", message.id, message.attempt)


#: the demo's failing job: retried once, then a dead letter in the admin
FAILING_CHANNEL = "taskchan.demo-fails"


@taskchan.consumer(FAILING_CHANNEL, max_attempts=2, backoff=tenacity.wait_fixed(1))
def always_fails(message):
    """Fails on every attempt, so that the demo can show a retry and then a dead
    letter, with its error and traceback, in the admin."""
    raise RuntimeError(
        f"demo job failed on purpose (attempt {message.attempt} of 2): "
        f"could not process {message.content.get('text')!r}"
    )


#: the demo's long job: a few steps, each reported, so that the page shows a live bar
LONG_CHANNEL = "taskchan.demo-long"
#: seconds each step of the long job takes (a person sees the bar move)
STEP_SECONDS = 0.5


# visibility_timeout: a worker killed mid-job hands it on within seconds (the
# lease of a running job is renewed by heartbeats, so a short one is safe).
@taskchan.consumer(LONG_CHANNEL, max_attempts=3, visibility_timeout=3, result_ttl=3600)
def long_job(message):
    """``{"steps": n, "fail": bool}``: n steps of STEP_SECONDS, each reported with
    ``message.progress``; with ``fail`` the third step raises.  Returns a small dict,
    kept with the status (``result_ttl``) and shown by the page."""
    steps = message.content.get("steps", 5)
    message.progress(0, steps, "starting")
    for step in range(1, steps + 1):
        time.sleep(STEP_SECONDS)
        if message.content.get("fail") and step == 3:
            raise RuntimeError(f"the long job failed on purpose at step {step} of {steps}")
        message.progress(step, steps, f"step {step} of {steps}")
    return {"steps": steps, "attempt": message.attempt, "worker_pid": os.getpid()}

"""Handing a channel's messages to Celery: ``@consumer(..., handoff="celery")``.

Where the hand-off happens: **at send time**.  ``send()`` (and ``asend()``, the
``send_on_commit`` relay, ``layer.send``) looks the channel's consumer up in the
registry (consumers are autodiscovered in every process) and, for a channel
that hands off, publishes the one taskchan Celery task,
``taskchan.run_handed_off``, instead of storing the message in taskchan's
stream.  It returns the message id only once the Celery broker has accepted
the task (with the Redis broker the publish is an ``LPUSH`` that returns after
Redis applied it), so nothing is lost at the hand-over, and nothing runs twice
because of it: there is no second copy in taskchan.  ``docs/celery.md`` has the
measurements behind the choice.

Producer side (this process): :func:`publish`, :func:`hand_to_celery`,
:func:`celery_configured`.  Celery side: :func:`run`, called by the task in
``taskchan/tasks.py``, which ``app.autodiscover_tasks()`` finds in a Celery
worker (``celery -A project worker``).

Celery is imported lazily, only by a process that actually hands a message
off: a web process or taskchan worker whose channels do not hand off never
loads it (``tests/celery/test_handoff_send.py`` checks).  It is the ``celery``
extra; without it, sending to such a channel raises ``MissingExtra`` before
anything is stored (``extras.require``).

The Celery app that publishes is ``TASKCHAN_CELERY_APP`` (a dotted path such as
``"project.celery.app"``) if the settings name one, otherwise a private app
configured, as Celery's Django guide does, from the ``CELERY_*`` settings.

With the in-memory channel layer (development, no services) there is no broker
a Celery worker could share, so a handed-off channel's messages go to
taskchan's own (in-process) workers instead, with a warning.

Redis keys written here, besides Celery's own broker keys (``P`` is
``TASKCHAN_KEY_PREFIX``):

``P:i:CH:KEY``  STRING  the idempotency key, as in the store
                (``stores/keys.py``): ``~ID`` while the publish is in flight
                (a claim that lapses after TASKCHAN_SEND_RETRY_SECONDS + 5 s),
                then ``ID`` for delay + TASKCHAN_IDEMPOTENCY_WINDOW; set to the
                window when the message finishes.
``P:cel:ID:N``  STRING  how many times attempt N+1 of message ID has started in
                a Celery worker (INCR when it starts); deleted when that
                attempt ends in the worker, so a count above 1 means earlier
                starts died with their worker.  7-day safety TTL.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback as traceback_module

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from . import extras
from .conf import settings
from .envelope import MalformedEnvelope, decode
from .exceptions import StoreUnavailable, UnknownChannel
from .registry import Consumer, get_consumer

logger = logging.getLogger("taskchan.handoff")

#: The one Celery task that runs every handed-off consumer.
TASK_NAME = "taskchan.run_handed_off"
#: Value prefix of an idempotency key whose message is being published.
PENDING = "~"
#: Seconds a claim on an idempotency key outlives the publish retry window.
CLAIM_MARGIN = 5.0
#: Safety lifetime of a start counter (``P:cel:ID:N``) whose worker died.
START_COUNTER_TTL = 7 * 24 * 3600
#: Seconds before a dead letter that could not be written is tried again.
DEAD_LETTER_RETRY_SECONDS = 5.0
#: Visibility timeout of kombu's Redis transport when none is configured.
KOMBU_REDIS_VISIBILITY_TIMEOUT = 3600.0
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://", "sentinel://", "sentinels://")

_app = None
_app_lock = threading.Lock()
_warned: set[str] = set()


# -- configuration ----------------------------------------------------------------


def celery_app():
    """The Celery app hand-offs are published with (imports Celery)."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                path = getattr(django_settings, "TASKCHAN_CELERY_APP", None)
                if path:
                    from django.utils.module_loading import import_string

                    _app = import_string(path)
                else:
                    app = extras.require("celery").Celery("taskchan", set_as_current=False)
                    app.config_from_object("django.conf:settings", namespace="CELERY")
                    _app = app
    return _app


def _reset_app(*, setting: str, **kwargs) -> None:
    global _app
    if setting.startswith("CELERY_") or setting == "TASKCHAN_CELERY_APP":
        with _app_lock:
            if _app is not None and not getattr(django_settings, "TASKCHAN_CELERY_APP", None):
                _app.close()
            _app = None


setting_changed.connect(_reset_app)


def _conf(name: str, default=None):
    """A Celery setting as the publishing app sees it, without importing Celery when possible."""
    if getattr(django_settings, "TASKCHAN_CELERY_APP", None):
        return celery_app().conf.get(name, default)
    return getattr(django_settings, f"CELERY_{name.upper()}", default)


def broker_url(conf=_conf) -> str:
    return conf("broker_write_url") or conf("broker_url") or ""


def _broker_named() -> bool:
    url = broker_url()
    return bool(url) and not url.startswith("memory")


def _is_redis_store(store) -> bool:
    """A store on Redis: one host, or several (sharded); not the in-memory one."""
    from .stores.redis import RedisStore
    from .stores.sharded import ShardedStore

    return isinstance(store, (RedisStore, ShardedStore))


def celery_configured() -> bool:
    """True when this process can hand messages to Celery: a real broker is
    configured and taskchan's layer is the Redis one (whose Redis keeps the
    idempotency keys and start counters).  The admin shows "hand to Celery"
    only then."""
    from .stores.configured import get_store

    if not extras.installed("celery"):
        return False
    try:
        store = get_store()
    except Exception:
        return False
    return _is_redis_store(store) and _broker_named()


def active(store) -> bool:
    """Whether a handed-off channel's message goes to Celery with this store.

    False with the in-memory layer (development): it is stored for taskchan's
    in-process workers instead.  Raises ImproperlyConfigured with the Redis
    layer and no Celery broker, before anything is stored.
    """
    if not _is_redis_store(store):
        return False
    extras.require("celery")  # MissingExtra, naming the extra, before anything is stored
    if not _broker_named():
        raise ImproperlyConfigured(
            "A channel hands its messages off to Celery (handoff='celery'), but no Celery broker "
            f"is configured (CELERY_BROKER_URL is {broker_url()!r}): set CELERY_BROKER_URL "
            "(e.g. to your Redis URL), or drop handoff='celery' from the consumer. Nothing was sent."
        )
    return True


def visibility_timeout(conf=_conf) -> float | None:
    """Seconds the Redis broker waits before giving an unacked task to another worker.

    ``conf``: how to read a Celery setting (name, default); the publishing
    side's by default, a worker reads its own app's.
    """
    if not broker_url(conf).startswith(REDIS_SCHEMES):
        return None
    options = conf("broker_transport_options") or {}
    return float(options.get("visibility_timeout", KOMBU_REDIS_VISIBILITY_TIMEOUT))


def check(consumer: Consumer, delay: float | None) -> None:
    """send()'s extra door checks for a channel that hands off (runs before anything is stored)."""
    from .stores.configured import get_store

    store = get_store()
    if not active(store):
        if consumer.channel not in _warned:
            _warned.add(consumer.channel)
            logger.warning(
                "%s hands off to Celery, but the channel layer is the in-memory one: its messages "
                "run on taskchan's workers instead (Celery needs the Redis layer and a broker).",
                consumer.channel,
            )
        return
    vt = visibility_timeout()
    if delay and vt and delay > vt / 2:
        raise ValueError(
            f"delay={delay!r} s is too long for {consumer.channel!r}, which hands off to Celery: "
            f"the Redis broker hands a task that waits longer than its visibility_timeout ({vt:g} s) "
            "to a second worker, so it would run twice. Keep delays under half the visibility_timeout "
            "(CELERY_BROKER_TRANSPORT_OPTIONS) or use a taskchan channel for long delays."
        )


# -- producer side --------------------------------------------------------------


def _retry_policy() -> dict:
    # Tried again for about TASKCHAN_SEND_RETRY_SECONDS, like send() to the store.
    seconds = settings.SEND_RETRY_SECONDS
    return {
        "max_retries": 2 + max(1, int(seconds / 0.5)),
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }


def _send_task(
    channel: str, raw: str, message_id: str, delay_ms: int = 0, consumer_name: str = ""
) -> None:
    """Publish the task; return only once the broker accepted it."""
    from kombu.exceptions import OperationalError

    from .producer import TRANSIENT

    app = celery_app()
    try:
        app.send_task(
            TASK_NAME,
            args=[channel, raw],
            task_id=message_id,
            countdown=delay_ms / 1000 if delay_ms else None,
            serializer="json",
            retry=True,
            retry_policy=_retry_policy(),
            shadow=f"{TASK_NAME}[{consumer_name or channel}]",
        )
    except (OperationalError, *TRANSIENT) as exc:
        raise StoreUnavailable(
            f"Could not hand the message to Celery: the broker at {_safe_url(broker_url())} did not "
            f"accept it within about {settings.SEND_RETRY_SECONDS} s ({exc}). Nothing was sent."
        ) from exc


def _safe_url(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def publish(
    consumer: Consumer, raw: str, message_id: str, *, delay_ms=0, idempotency_key=None, store=None
) -> str:
    """Hand one validated envelope to Celery; return the message id (or, for a
    repeated idempotency key, the first message's id, publishing nothing)."""
    channel = consumer.channel
    if idempotency_key is None:
        _send_task(channel, raw, message_id, delay_ms, consumer.name)
        return message_id

    import tenacity

    from .producer import TRANSIENT, _retrying, _unavailable

    store = store.home(channel)  # the channel's keys live on its home host
    client = store.client
    key = store.keys.idempotency(channel, idempotency_key)
    claim = PENDING + message_id
    claim_ms = int((settings.SEND_RETRY_SECONDS + CLAIM_MARGIN) * 1000)
    redis_call = _retrying(tenacity.Retrying)

    # Claim the key (SET NX); a claim held by a send that is still publishing
    # is waited for; one whose sender died lapses and is taken over.
    deadline = time.monotonic() + claim_ms / 1000 + 1
    try:
        while not redis_call(client.set, key, claim, nx=True, px=claim_ms):
            existing = redis_call(client.get, key)
            if existing is None:
                continue
            if not existing.startswith(PENDING):
                return existing
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"Another send with idempotency key {idempotency_key!r} is still handing its "
                    "message to Celery. Nothing was sent; try again."
                )
            time.sleep(0.02)
    except TRANSIENT as exc:
        raise _unavailable(store, channel, exc) from exc

    try:
        _send_task(channel, raw, message_id, delay_ms, consumer.name)
    except BaseException:
        try:
            client.eval(_RELEASE, 1, key, claim)
        except Exception:  # the claim lapses by itself
            logger.warning("could not release idempotency claim %s", key, exc_info=True)
        raise
    ttl_ms = int(delay_ms) + int(settings.IDEMPOTENCY_WINDOW * 1000)
    try:
        redis_call(client.set, key, message_id, px=ttl_ms)
    except TRANSIENT:
        # The task is published (accepted): report success.  The claim lapses,
        # after which a repeated send would publish again (a duplicate, never a loss).
        logger.warning(
            "handed %s to Celery but could not record idempotency key %s", message_id, key
        )
    return message_id


async def apublish(consumer: Consumer, raw: str, message_id: str, **options) -> str:
    """``publish`` for async code: the blocking publish runs in a thread."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(publish, thread_sensitive=False)(
        consumer, raw, message_id, **options
    )


def hand_to_celery(failed_message) -> str:
    """Re-send a dead letter's content through Celery, whatever its channel's own
    setting; mark the row retried (``retried_at``, ``retried_as``) and return
    the new message id.  For the admin's "hand to Celery" action."""
    from django.utils import timezone

    from .producer import _prepare

    if not celery_configured():
        raise ImproperlyConfigured(
            "Cannot hand to Celery: no Celery broker is configured (CELERY_BROKER_URL) or the "
            "channel layer is not taskchan's Redis layer."
        )
    if failed_message.content is None:
        raise ValueError(
            f"Dead letter {failed_message.message_id} has no content to re-send (it arrived malformed)."
        )
    channel = failed_message.channel
    consumer = get_consumer(channel)
    if consumer is None:
        raise UnknownChannel(
            f"No consumer is registered for {channel!r} in this process, so a Celery worker would "
            "have nothing to run it with. Is its module installed (consumers.py / TASKCHAN_CONSUMER_MODULES)?"
        )
    envelope, _delay_ms, raw = _prepare(channel, failed_message.content, None, None, None, None)
    from django.db import router, transaction

    from .models import FailedMessage

    # Two people handing (or retrying) the same row at once: the second waits
    # for the first's row lock, then finds it retried and sends nothing.
    with transaction.atomic(using=router.db_for_write(FailedMessage)):
        row = FailedMessage.objects.select_for_update().get(pk=failed_message.pk)
        if row.retried_as:
            raise ValueError(
                f"Dead letter {row.message_id} was already retried as message {row.retried_as}."
            )
        _send_task(channel, raw, envelope.id, 0, consumer.name)
        row.retried_at = timezone.now()
        row.retried_as = envelope.id
        row.save(update_fields=["retried_at", "retried_as"])
    failed_message.retried_at, failed_message.retried_as = row.retried_at, row.retried_as
    logger.info("handed dead letter %s to Celery as %s", failed_message.message_id, envelope.id)
    return envelope.id


# -- Celery side ------------------------------------------------------------------


def _store():
    from .stores.configured import get_store

    try:
        store = get_store()
    except Exception:
        return None
    return store if _is_redis_store(store) else None


def _home(store, envelope):
    # A message's start counter and idempotency key live on its channel's home host.
    return None if store is None else store.home(envelope.channel)


def _counter_key(store, envelope) -> str:
    return store.keys.celery_starts(envelope.id, envelope.attempts_before)


def _start(store, envelope) -> int:
    """Count this start of the attempt (one round trip); 1 unless earlier starts died."""
    if store is None:
        return 1
    try:
        pipe = store.client.pipeline(transaction=False)
        pipe.incr(_counter_key(store, envelope))
        pipe.expire(_counter_key(store, envelope), START_COUNTER_TTL)
        return int(pipe.execute()[0])
    except Exception:
        logger.warning(
            "could not count the start of %s; assuming its first", envelope.id, exc_info=True
        )
        return 1


def _end(store, envelope, idempotency_ms: int | None) -> None:
    """Forget the start counter (and refresh the idempotency key): one round trip."""
    if store is None:
        return
    try:
        pipe = store.client.pipeline(transaction=False)
        pipe.delete(_counter_key(store, envelope))
        if envelope.idempotency_key is not None and idempotency_ms is not None:
            pipe.pexpire(
                store.keys.idempotency(envelope.channel, envelope.idempotency_key), idempotency_ms
            )
        pipe.execute()
    except Exception:
        logger.warning("could not clear the start counter of %s", envelope.id, exc_info=True)


def _window_ms(extra_seconds: float = 0) -> int:
    return int((settings.IDEMPOTENCY_WINDOW + extra_seconds) * 1000)


def _record(task, channel, raw, envelope, dead_letter: dict) -> None:
    """Write the FailedMessage (marked as run under Celery); if the database
    will not take it, try again later rather than lose the message."""
    from . import deadletter

    try:
        deadletter.record(
            channel=channel,
            entry_id=task.request.id or "",
            envelope=envelope,
            raw=raw if envelope is None else "",
            ran_under_celery=True,
            **dead_letter,
        )
    except Exception:
        logger.exception(
            "could not record dead letter for %s; trying again in %gs",
            task.request.id,
            DEAD_LETTER_RETRY_SECONDS,
        )
        raw_next = raw if envelope is None else envelope.encode()
        raise task.retry(
            args=[channel, raw_next],
            kwargs={"dead_letter": dead_letter},
            countdown=DEAD_LETTER_RETRY_SECONDS,
            max_retries=None,
        ) from None


def run(task, channel: str, raw: str, dead_letter: dict | None = None) -> None:
    """Run one handed-off message in a Celery worker (the body of ``taskchan.run_handed_off``).

    The consumer gets the same ``Message`` as under a taskchan worker.  A
    failure is retried with ``self.retry(countdown=...)`` following the
    consumer's ``max_attempts`` and ``backoff`` (``retry.decide``), the next
    attempt's envelope carrying every error so far; ``Reject`` or the last
    failure becomes a FailedMessage marked ``ran_under_celery``.  An attempt
    whose worker died (SIGKILL, OOM) comes back through the broker
    (``acks_late``) and counts as a delivery, so a message that kills every
    worker is dead-lettered as *worker lost* after ``max_attempts``.
    """
    from asgiref.sync import async_to_sync
    from celery.exceptions import Reject as CeleryReject

    from . import retry
    from .message import Message
    from .models import FailedMessage

    Reason = FailedMessage.Reason
    try:
        envelope = decode(raw, channel)
    except MalformedEnvelope as exc:
        _record(
            task,
            channel,
            str(raw),
            None,
            dead_letter or {"reason": Reason.MALFORMED, "error": str(exc)},
        )
        return
    if dead_letter is not None:  # a dead letter the database refused earlier
        _record(task, channel, raw, envelope, dead_letter)
        return

    consumer = get_consumer(channel)
    if consumer is None:
        message = f"no consumer for {channel!r} is registered in this Celery worker"
        failed = envelope.failed(envelope.attempts_before + 1, "taskchan.NoConsumer", message, None)
        _record(
            task,
            channel,
            raw,
            failed,
            {"reason": Reason.NO_CONSUMER, "attempts": envelope.attempts_before},
        )
        return

    store = _home(_store(), envelope)
    starts = _start(store, envelope)
    attempt = envelope.attempts_before + starts
    max_attempts = envelope.max_attempts or consumer.max_attempts
    if starts > 1 and attempt > max_attempts:
        lost = envelope.failed(
            attempt - 1,
            "taskchan.WorkerLost",
            f"the Celery worker running it was lost {starts - 1} time(s)",
            None,
        )
        _end(store, envelope, _window_ms())
        _record(
            task,
            channel,
            raw,
            lost,
            {
                "reason": Reason.WORKER_LOST,
                "consumer": consumer.name,
                "attempts": attempt - 1,
                "max_attempts": max_attempts,
            },
        )
        return

    message = Message(envelope, attempt)
    try:
        if consumer.is_async:
            async_to_sync(consumer.func)(message)
        else:
            consumer.func(message)
    except Exception as exc:
        error, tb = exc, traceback_module.format_exc()
    else:
        _end(store, envelope, _window_ms())
        return

    exc_type = f"{type(error).__module__}.{type(error).__qualname__}"
    next_envelope = envelope.failed(attempt, exc_type, str(error) or exc_type, tb)
    decision = retry.decide(error, attempt, max_attempts, consumer.backoff)
    if decision.dead_letter:
        reason = Reason.REJECTED if decision.reason == "rejected" else Reason.EXHAUSTED
        # The start counter goes first: if the row cannot be written, _record
        # schedules the dead-lettering again (and a crash here at worst runs
        # the attempt once more).
        _end(store, envelope, _window_ms())
        _record(
            task,
            channel,
            raw,
            next_envelope,
            {
                "reason": reason,
                "consumer": consumer.name,
                "attempts": attempt,
                "max_attempts": max_attempts,
            },
        )
        return

    countdown = decision.delay
    vt = visibility_timeout(lambda name, default=None: getattr(task.app.conf, name, default))
    if vt and countdown > vt / 2:
        logger.warning(
            "retry of %s in %.0fs shortened to %.0fs: half the broker's visibility_timeout",
            envelope.id,
            countdown,
            vt / 2,
        )
        countdown = vt / 2
    logger.info(
        "retrying channel=%s message=%s attempt=%d/%d in %.2fs under Celery error=%s",
        channel,
        envelope.id,
        attempt,
        max_attempts,
        countdown,
        exc_type,
    )
    try:
        retry_signal = task.retry(
            args=[channel, next_envelope.encode()],
            kwargs={},
            countdown=countdown,
            max_retries=None,
            throw=False,
        )
    except Exception as publish_error:
        # The retry could not be published: put this delivery back instead of
        # acking it (acks_late would ack a failed task), so it is not lost.
        _end(store, envelope, None)
        raise CeleryReject(
            f"could not schedule the retry: {publish_error}", requeue=True
        ) from publish_error
    _end(store, envelope, _window_ms(countdown))
    raise retry_signal

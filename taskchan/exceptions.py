"""The taskchan error tree.

Every class's docstring is its default message and says what to do about it,
so ``raise SomeError()`` alone is already a useful error.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class TaskchanError(Exception):
    """Base class of every error taskchan raises."""

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())


# Refused at the door: nothing has been stored when these are raised.  They
# also subclass the built-in the issue tracker and users expect (ValueError,
# TypeError) so that generic validation code catches them.


class InvalidChannelName(TaskchanError, ValueError, TypeError):
    """The channel name is not a taskchan channel: use 'taskchan.<name>' with letters, digits, '-', '_' and '.'."""

    # A TypeError too: Channels' layers raise TypeError for a name they refuse,
    # so code written for channels_redis catches it from a taskchan layer.


class ContentNotSerializable(TaskchanError, TypeError):
    """Message content must be a dict that JSON round-trips unchanged (str keys; str, int, float, bool, None, list, dict values)."""


class MessageTooLarge(TaskchanError, ValueError):
    """The message content is over TASKCHAN_MAX_CONTENT_BYTES: store large data elsewhere and send its key."""


class InvalidOption(TaskchanError, ValueError):
    """A send option is outside its bounds: delay 0 to 10 years, max_attempts 1 to 10,000, idempotency_key 1 to 200 characters (see docs/delivery.md)."""


class ResultNotSerializable(TaskchanError, TypeError):
    """A consumer that keeps its result (result_ttl) returned a value JSON cannot hold: the attempt failed. Return plain values (str, int, float, bool, None, list, dict with str keys)."""


class StoreUnavailable(TaskchanError):
    """Redis could not be reached after retrying: nothing was sent. Check that Redis runs at the address in the channel layer's CONFIG "hosts"."""


class StoreRefused(StoreUnavailable):
    """Redis answered but refused to store the message (out of memory under maxmemory, a read-only replica, a key of the wrong type): nothing was sent."""


class SendNotReplicated(TaskchanError):
    """The Redis master stored the message, but fewer replicas than TASKCHAN_SEND_REPLICAS acknowledged it within TASKCHAN_SEND_REPLICAS_TIMEOUT: the message MAY OR MAY NOT survive a failover (it runs if the master lives on, or if a replica that got it is promoted). Send it again with the same idempotency_key to be sure it is kept once; check that the master's replicas are up (docs/deploying.md, "Durable sends")."""

    def __init__(self, message: str | None = None, *, message_id: str | None = None, acknowledged: int = 0, wanted: int = 0):
        super().__init__(message)
        self.message_id = message_id  # the id send() would have returned
        self.acknowledged = acknowledged  # replicas that had it when WAIT returned
        self.wanted = wanted


class NotATaskchanLayer(TaskchanError):
    """The channel layer is not a taskchan layer: set CHANNEL_LAYERS' BACKEND to taskchan.layers.RedisChannelLayer or taskchan.layers.InMemoryChannelLayer."""


class UnknownChannel(TaskchanError, LookupError):
    """No consumer is registered for this channel: decorate a function with @taskchan.consumer in an app's consumers.py."""


class CannotResend(TaskchanError, ValueError):
    """This dead letter cannot be re-sent as it is (already retried, no content, or sealed with a key the layer no longer has): nothing was sent. A row with no content can be edited and retried; a retried row's new message id is in retried_as."""


class MissingExtra(TaskchanError, ImproperlyConfigured):
    """A feature needs a package that is not installed: install taskchan with the extra named in the message."""


# Control flow raised by consumer code.  They are deliberately not
# TaskchanError subclasses: a consumer's broad ``except TaskchanError`` must not
# swallow them.


class Retry(Exception):
    """Raised by a consumer to ask for another attempt, after ``delay`` seconds
    (or the consumer's backoff when ``delay`` is None). It still counts towards
    ``max_attempts``."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested"):
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Reject(Exception):
    """Raised by a consumer to dead-letter the message at once, with ``reason``."""

    def __init__(self, reason: str = "rejected by consumer"):
        super().__init__(reason)
        self.reason = reason


class Cancelled(Exception):
    """Raised by ``message.check_cancelled()`` in a consumer whose message was cancelled
    (``taskchan.cancel``): the attempt ends as cancelled, neither retried nor dead-lettered."""

    def __init__(self, reason: str = "the message was cancelled"):
        super().__init__(reason)


# A BaseException, as Dramatiq's: it is raised inside the consumer's thread at
# any line, and a consumer's broad ``except Exception`` (a retry loop, a
# logging wrapper) must not swallow it and run on past the limit.


class TimeLimitExceeded(BaseException):
    """The job ran past its consumer's time_limit and was interrupted. The attempt failed: it is retried or dead-lettered like any failure. Raise the limit, or make the job shorter (split it into several messages)."""

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())

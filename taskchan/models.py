"""Dead letters (``FailedMessage``) and the send_on_commit outbox (``OutboxMessage``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from . import resend
from .sealed import SealedJSONField, SealedTextField


class FailedMessageQuerySet(models.QuerySet):
    def unretried(self):
        """Dead letters that still want attention: never re-sent (retry, edit and retry, hand to Celery)."""
        return self.filter(retried_as="")

    def unretried_by_channel(self) -> dict[str, int]:
        """``{channel: how many unretried}``, as the overview and ``taskchan_status`` show them."""
        return dict(self.unretried().values_list("channel").annotate(n=models.Count("id")).order_by())


class FailedMessage(models.Model):
    """A message that ended without success: every attempt failed, it was
    rejected, its workers kept dying, or it arrived malformed."""

    class Reason(models.TextChoices):
        EXHAUSTED = "exhausted", "attempts exhausted"
        REJECTED = "rejected", "rejected by consumer"
        WORKER_LOST = "worker_lost", "worker lost"
        MALFORMED = "malformed", "malformed message"
        NO_CONSUMER = "no_consumer", "no consumer"

    message_id = models.CharField(max_length=64, unique=True)
    channel = models.CharField(max_length=100, db_index=True)
    consumer = models.CharField(max_length=255, blank=True, db_index=True)
    # Sealed with the layer's symmetric_encryption_keys unless
    # TASKCHAN_DEAD_LETTERS_DECRYPTED (sealed.py); errors and tracebacks are not.
    content = SealedJSONField(null=True, blank=True, sealed_unless="DEAD_LETTERS_DECRYPTED")
    raw = SealedTextField(
        blank=True, help_text="the stored message as received, when it could not be read",
        sealed_unless="DEAD_LETTERS_DECRYPTED",
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    attempts = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, help_text="one {type, message, at, attempt} per failed attempt")
    last_error_type = models.CharField(max_length=255, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    first_failed_at = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    max_attempts = models.PositiveIntegerField(null=True, blank=True)
    reply_channel = models.CharField(max_length=255, blank=True)
    priority = models.SmallIntegerField(default=0, help_text="its priority (send(priority=)); a retry keeps it")
    retried_at = models.DateTimeField(null=True, blank=True)
    retried_as = models.CharField(max_length=64, blank=True, help_text="id of the message it was re-sent as")
    ran_under_celery = models.BooleanField(
        default=False, help_text="its attempts ran in a Celery worker (a channel with handoff=\"celery\")"
    )
    original_content = SealedJSONField(
        null=True, blank=True, help_text="the content as it failed, when it was edited before a retry",
        sealed_unless="DEAD_LETTERS_DECRYPTED",
    )


    objects = FailedMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-last_failed_at", "-id"]
        permissions = [("retry_failedmessage", "Can retry failed messages")]
        # The admin lists a filtered channel/consumer/error type newest first
        # by walking one of these, however many rows the table holds.
        indexes = [
            models.Index(fields=["channel", "last_failed_at"], name="taskchan_fm_channel_time"),
            models.Index(fields=["consumer", "last_failed_at"], name="taskchan_fm_consumer_time"),
            models.Index(fields=["last_error_type", "last_failed_at"], name="taskchan_fm_errtype_time"),
        ]

    def __str__(self):
        return f"{self.channel} {self.message_id} ({self.get_reason_display()})"

    def resend(self, content: dict | None = None) -> str:
        """Send the content (or ``content``) again on its channel as a fresh message; record the new id.

        Under the row's lock, as every re-send (``taskchan/resend.py``): raises
        ``CannotResend`` for a row already retried (or with no content to send).
        """
        return resend.resend_one(self, content)


class QueueOverview(models.Model):
    """No table: the admin's queue overview page hangs on it, with its own permission."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_queue_overview", "Can view the queue overview"),
            ("cancel_message", "Can cancel queued and running messages"),
            ("pause_channel", "Can pause and resume channels"),
        ]
        verbose_name = verbose_name_plural = "queue overview"

    def __str__(self):
        return "queue overview"


class OutboxMessage(models.Model):
    """A send_on_commit message, written in the caller's transaction and
    relayed to the store after commit (or by a worker's sweep if that relay
    never happened)."""

    id = models.CharField(max_length=64, primary_key=True)
    channel = models.CharField(max_length=100)
    envelope = SealedTextField()  # sealed whenever the layer has symmetric_encryption_keys
    delay_ms = models.PositiveBigIntegerField(default=0)
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    priority = models.SmallIntegerField(default=0, help_text="its priority (send_on_commit(priority=))")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.channel} {self.id}"

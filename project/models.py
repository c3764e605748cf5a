from django.db import models


class DemoResult(models.Model):
    """What the ``taskchan.demo`` consumer produced for one message."""

    message_id = models.CharField(max_length=100, unique=True)
    text = models.TextField()
    result = models.TextField()
    worker_pid = models.PositiveIntegerField()
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["-finished_at"]

    def __str__(self):
        return f"{self.message_id}: {self.result[:40]}"

"""taskchan as a ``django.tasks`` backend (Django 6.0 and later).

    TASKS = {"default": {"BACKEND": "taskchan.backend.TaskchanBackend", "QUEUES": ["default", "reports"]}}

A task on queue ``Q`` travels on the taskchan channel ``taskchan.tasks.Q``, so
``runworker 'taskchan.tasks.*'`` runs it with everything a taskchan message
has (leases, retries with backoff, dead letters in the admin, metrics).  The
pieces: ``task.py`` (the Task class with retry options, and their checks),
``runner.py`` (the consumer that runs a task in a worker), ``results.py``
(a message's status record read as a ``TaskResult``).  docs/tasks.md has the
setup and what each capability flag does here.
"""

from __future__ import annotations

from ..compat import HAS_DJANGO_TASKS

if not HAS_DJANGO_TASKS:
    import django
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "taskchan.backend.TaskchanBackend is a django.tasks backend, which needs Django 6.0 or later; "
        f"this is Django {django.get_version()}. Send with taskchan.send() and @taskchan.consumer instead, "
        "or upgrade Django."
    )

from .backend import TaskchanBackend
from .task import TaskchanTask

__all__ = ["TaskchanBackend", "TaskchanTask"]

"""The reference project: settings, URLs, ASGI app, Celery app and the demo app.

The Celery app is imported here so that it is loaded when Django starts and
``@shared_task`` uses it (as Celery's Django guide advises).
"""

from .celery import app as celery_app

__all__ = ("celery_app",)

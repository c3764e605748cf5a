"""The Celery app, for channels that hand their work to Celery.

Run a worker with ``celery -A project worker``.  Its settings are the
``CELERY_*`` names in ``project/settings.py``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

"""The Celery app, for channels that hand their work to Celery.

Run a worker with ``celery -A project worker``.  Its settings are the
``CELERY_*`` names in ``project/settings.py`` (JSON only, ``task_acks_late``,
``task_reject_on_worker_lost``; the broker is ``REDIS_URL``).

``app.autodiscover_tasks()`` imports every installed app's ``tasks.py``, which
registers taskchan's one task, ``taskchan.run_handed_off`` (``taskchan/tasks.py``);
the Django fix-up runs ``django.setup()`` first, which autodiscovers the
consumers it runs.

``CELERY_VISIBILITY_TIMEOUT`` (environment, seconds) sets the Redis broker's
``visibility_timeout`` in ``project/settings.py`` (``CELERY_BROKER_TRANSPORT_OPTIONS``),
where both the Celery workers and ``send()``'s delay check read it.  Unset, it
is kombu's default, 3600 s, which must exceed your longest job plus its
longest delay or retry backoff (``docs/celery.md``).  The tests set a few seconds.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


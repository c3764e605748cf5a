"""The reference project: settings, URLs, ASGI app, Celery app and the demo app.

The Celery app (``project/celery.py``) is deliberately not imported here, as
Celery's Django guide would have it: then every web and taskchan worker process
would load Celery (about 10 MB) whether or not any channel hands work to it.
``celery -A project worker`` (which finds ``project.celery``) and taskchan's Celery hand-off import it
where it is used.
"""

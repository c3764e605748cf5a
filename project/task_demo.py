"""The demo's django.tasks task (Django 6.0+): ``count_words.enqueue(text)`` from a view,
run by ``runworker 'taskchan.tasks.*'`` (``TASKS`` in ``project/settings.py``).

Not ``tasks.py``: Celery's ``autodiscover_tasks()`` imports every app's
``tasks`` module, and this one cannot be imported on Django 5.2."""

from django.tasks import task


@task
def count_words(text: str) -> dict:
    return {"words": len(text.split()), "characters": len(text)}

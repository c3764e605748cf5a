"""What differs between the Django releases taskchan supports (5.2 LTS, 6.0, 6.1), in one place.

Each name here is the newer Django's feature, or what stands in for it on the
older ones; docs/installation.md lists what a user sees differ.
"""

from __future__ import annotations

import importlib.util

try:  # Django 6.1: admin actions have locations (the change list, the change form)
    from django.contrib.admin.options import ActionLocation
except ImportError:  # Django 5.2 and 6.0: actions are on the change list only
    ActionLocation = None

#: the default ``action_location`` of ``ModelAdmin.get_actions`` (None before 6.1)
CHANGE_LIST = ActionLocation.CHANGE_LIST if ActionLocation is not None else None

#: Django 6.0 added ``django.tasks``, the task API a taskchan backend will serve
HAS_DJANGO_TASKS = importlib.util.find_spec("django.tasks") is not None


def location_kwargs(action_location) -> dict:
    """The keyword ``super().get_actions()`` takes on this Django: none before 6.1."""
    return {} if ActionLocation is None else {"action_location": action_location}

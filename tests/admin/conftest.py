"""Fixtures of the admin tests: users with given permissions, and failed messages."""

from __future__ import annotations

import datetime
import itertools
import re
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from taskchan.models import FailedMessage
from tests.conftest import lease_as, on_store

_names = itertools.count(1)

#: the permissions the admin checks, by short name
PERMS = {
    "view": ("failedmessage", "view_failedmessage"),
    "change": ("failedmessage", "change_failedmessage"),
    "delete": ("failedmessage", "delete_failedmessage"),
    "retry": ("failedmessage", "retry_failedmessage"),
    "overview": ("queueoverview", "view_queue_overview"),
    "cancel": ("queueoverview", "cancel_message"),
    "pause": ("queueoverview", "pause_channel"),
    "outbox_view": ("outboxmessage", "view_outboxmessage"),
    "outbox_relay": ("outboxmessage", "change_outboxmessage"),
}

#: every test user's password
PASSWORD = "taskchan-admin-test"  # noqa: S105

CHANGELIST = "/admin/taskchan/failedmessage/"
GROUPS = CHANGELIST + "groups/"
OVERVIEW = "/admin/taskchan/queueoverview/"
OVERVIEW_DATA = OVERVIEW + "data/"
LOOKUP = OVERVIEW + "lookup/"


def shown_state(response) -> str | None:
    """The state the status lookup page shows (None: no message shown)."""
    found = re.search(r'id="taskchan-state">([^<]*)<', response.content.decode())
    return found.group(1) if found else None


def detail_url(row) -> str:
    return f"{CHANGELIST}{row.pk}/change/"


def make_user(*perms: str, staff: bool = True, superuser: bool = False, password: str = PASSWORD):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        f"user{next(_names)}", password=password, is_staff=staff, is_superuser=superuser
    )
    for name in perms:
        model, codename = PERMS[name]
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="taskchan", content_type__model=model, codename=codename)
        )
    return user


@pytest.fixture
def client_with(db):
    """Factory: a test client logged in as a staff user with the given permissions (short names)."""

    def make(*perms: str, staff: bool = True, superuser: bool = False, enforce_csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=enforce_csrf)
        client.force_login(make_user(*perms, staff=staff, superuser=superuser))
        return client

    return make


def failed_fields(n: int = 0, **overrides) -> dict:
    now = timezone.now()
    fields = {
        "message_id": uuid.uuid4().hex,
        "channel": "taskchan.t.poison",
        "consumer": "tests.jobs.poison",
        "content": {"n": n},
        "reason": FailedMessage.Reason.EXHAUSTED,
        "attempts": 3,
        "max_attempts": 3,
        "errors": [
            {"type": "builtins.ValueError", "message": f"poison message always fails ({i})", "at": now.timestamp() - 3 + i, "attempt": i}
            for i in (1, 2, 3)
        ],
        "last_error_type": "builtins.ValueError",
        "last_error": "poison message always fails",
        "traceback": 'Traceback (most recent call last):\n  File "tests/jobs.py", line 1, in poison\nValueError: poison message always fails\n',
        "first_failed_at": now - datetime.timedelta(seconds=3),
        "last_failed_at": now - datetime.timedelta(microseconds=n),
    }
    fields.update(overrides)
    return fields


def make_failed(n: int = 0, **overrides) -> FailedMessage:
    return FailedMessage.objects.create(**failed_fields(n, **overrides))


def bulk_failed(count: int, **overrides) -> None:
    """``count`` rows in one bulk insert per 5,000 (newest has n = 0)."""
    FailedMessage.objects.bulk_create(
        (FailedMessage(**failed_fields(n, **overrides)) for n in range(count)), batch_size=5000
    )


def store_stats(channels):
    from taskchan.stores.configured import get_store

    store = get_store()
    return {s.channel: s for s in on_store(store, lambda: store.stats(channels))}


def queued_envelopes(channel: str, count: int = 20_000) -> list:
    """Lease and decode what waits on ``channel`` (through the store's public API)."""
    from taskchan.envelope import decode
    from taskchan.stores.configured import get_store

    return [decode(d.raw, channel) for d in lease_as(get_store(), channel, "admin-test", count)]

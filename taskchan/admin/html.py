"""Small HTML pieces the taskchan admin pages share: preformatted text, times, links to a message."""

from __future__ import annotations

import datetime
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from ..text import printable


def pre(text: str, css: str = "taskchan-pre"):
    """``text`` escaped in a ``<pre>``."""
    # printable(): JSON in a row can hold lone surrogates, which no page can encode
    return format_html('<pre class="{}">{}</pre>', css, printable(str(text)))


def when(timestamp) -> str:
    """A Unix timestamp as local time, ``Y-m-d H:i:s``; "-" for anything that is not a time."""
    try:
        moment = timezone.localtime(datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC))
    except (TypeError, ValueError, OverflowError, OSError):  # not a time, or past year 9999
        return "-"
    return date_format(moment, "Y-m-d H:i:s")


def message_filter_url(message_id: str) -> str:
    """The failed-message list filtered to one message id."""
    return reverse("admin:taskchan_failedmessage_changelist") + "?" + urlencode({"message_id": message_id})


def status_lookup_url(message_id: str = "") -> str:
    """The status lookup page (``lookup.py``), showing ``message_id`` when one is given."""
    url = reverse("admin:taskchan_queueoverview_lookup")
    return f"{url}?{urlencode({'message_id': message_id})}" if message_id else url


def change_url(row) -> str:
    """A failed message's detail page."""
    return reverse("admin:taskchan_failedmessage_change", args=[row.pk])

"""The taskchan admin: dead letters, the queue overview, and send_on_commit rows waiting.

Django's admin autodiscovery imports this package, so the ModelAdmins are
registered here.  ``FailedMessageAdmin`` is read-only (no add, no editing of
what was stored): its actions re-send (``retry``), delete (``discard``), edit
the content and re-send (``edit and retry``) or hand to Celery.  Permissions:

==============================  =============================================
view the list and a message     ``taskchan.view_failedmessage``
retry (one, selected, group)    ``taskchan.retry_failedmessage``
hand to Celery                  ``taskchan.retry_failedmessage``
discard                         ``taskchan.delete_failedmessage``
edit and retry                  ``taskchan.change_failedmessage`` and retry
queue overview                  ``taskchan.view_queue_overview``
status lookup of a message      ``taskchan.view_queue_overview``
cancel (in flight, lookup)      ``taskchan.cancel_message``
send_on_commit rows waiting     ``taskchan.view_outboxmessage``
relay them now                  ``taskchan.change_outboxmessage``
==============================  =============================================
Every failed-message action needs the view permission as well.

The modules:

===================  ==========================================================
``failed.py``        ``FailedMessageAdmin``: options, permissions, its URLs
``changelist.py``    the list: columns, search, value filters, bounded paginator
``detail.py``        the detail page: fieldsets and how each field is shown
``actions.py``       the list actions and how every action reports (log, message)
``views.py``         the one-row pages: retry, edit and retry, hand to Celery
``groups.py``        failures by channel and error, retry-all and discard-all
``overview.py``      ``QueueOverviewAdmin``: the queue overview page and its JSON
``overview_data.py`` what the overview shows, gathered from Redis and the database
``in_flight.py``     one channel's leased messages, each with *Cancel*
``lookup.py``        the status lookup of one message id, with *Cancel*
``cancel.py``        the one cancel both pages use: permission, admin log, message
``pause.py``         the overview's pause and resume buttons
``outbox.py``        ``OutboxMessageAdmin``: send_on_commit rows waiting, relay now
``html.py``          HTML pieces the pages share: ``<pre>`` blocks, times, links
===================  ==========================================================

Re-sending itself, and its one locking rule, is ``taskchan/resend.py``.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import FailedMessage, OutboxMessage, QueueOverview
from .failed import FailedMessageAdmin
from .outbox import OutboxMessageAdmin
from .overview import QueueOverviewAdmin

admin.site.register(FailedMessage, FailedMessageAdmin)
admin.site.register(QueueOverview, QueueOverviewAdmin)
admin.site.register(OutboxMessage, OutboxMessageAdmin)

__all__ = ["FailedMessageAdmin", "OutboxMessageAdmin", "QueueOverviewAdmin"]

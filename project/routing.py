"""Websocket routes.  Any path but ``/chat/`` and ``/progress/`` is closed with code 4404."""

from django.urls import path, re_path

from project.consumers import EchoConsumer, NotFoundConsumer
from taskchan.progress import ProgressConsumer

websocket_urlpatterns = [
    path("chat/", EchoConsumer.as_asgi()),
    # Live progress of jobs, for pages holding a taskchan.progress_token (docs/progress.md).
    path("progress/", ProgressConsumer.as_asgi()),
    # URLRouter raises on a path it cannot route; answer with a close instead.
    re_path(r"^", NotFoundConsumer.as_asgi()),
]

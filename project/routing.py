"""Websocket routes.  Any path but ``/chat/`` is closed with code 4404."""

from django.urls import path, re_path

from project.consumers import EchoConsumer, NotFoundConsumer

websocket_urlpatterns = [
    path("chat/", EchoConsumer.as_asgi()),
    # URLRouter raises on a path it cannot route; answer with a close instead.
    re_path(r"^", NotFoundConsumer.as_asgi()),
]

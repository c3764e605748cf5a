"""ASGI entry point: ``daphne project.asgi:application``.

HTTP goes to Django; websockets go through the origin check (ALLOWED_HOSTS)
and the session/auth middleware to the routes in ``project/routing.py``;
plain named channels (``runworker demo-plain``) go to their consumers by name.
``taskchan.*`` channels never pass through here: taskchan's worker runs them.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Set Django up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from project.consumers import PLAIN_CHANNEL, PlainPingConsumer  # noqa: E402
from project.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        "channel": ChannelNameRouter({PLAIN_CHANNEL: PlainPingConsumer.as_asgi()}),
    }
)

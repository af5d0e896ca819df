"""``bench.djproject.asgi:application``: the ASGI entry point of the benchmark project,
shaped like a Channels project's ``asgi.py``."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djproject.settings")

from django.core.asgi import get_asgi_application

# Django first: it sets itself up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.djproject.consumers import EchoConsumer, FanoutConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws/echo", EchoConsumer.as_asgi()),
    path("ws/fanout/<str:layer>/<str:role>", FanoutConsumer.as_asgi()),
]

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)})

"""``basic`` with a consumer class routed without ``.as_asgi()`` (channelserver.E004)."""

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from basic.asgi import django_asgi_app
from basic.consumers import EchoConsumer

application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": AllowedHostsOriginValidator(URLRouter([path("ws/echo/", EchoConsumer)]))}
)

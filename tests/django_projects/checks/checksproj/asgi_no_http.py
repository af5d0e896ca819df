"""W003: a ProtocolTypeRouter without "http"."""

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from checksproj.consumers import EchoConsumer

application = ProtocolTypeRouter(
    {"websocket": AllowedHostsOriginValidator(URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]))}
)

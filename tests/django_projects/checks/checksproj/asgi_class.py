"""E004: a consumer class routed without .as_asgi()."""

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application
from django.urls import path

from checksproj.consumers import EchoConsumer

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": AllowedHostsOriginValidator(URLRouter([path("ws/echo/", EchoConsumer)])),
    }
)

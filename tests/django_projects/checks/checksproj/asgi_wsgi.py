"""E004: the WSGI handler where the ASGI one belongs."""

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.wsgi import get_wsgi_application
from django.urls import path

from checksproj.consumers import EchoConsumer

application = ProtocolTypeRouter(
    {
        "http": get_wsgi_application(),
        "websocket": AllowedHostsOriginValidator(URLRouter([path("ws/echo/", EchoConsumer.as_asgi())])),
    }
)

"""W002: WebSockets reach the consumers without an OriginValidator (auth is not one)."""

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

from checksproj.consumers import EchoConsumer

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": AuthMiddlewareStack(URLRouter([path("ws/echo/", EchoConsumer.as_asgi())])),
    }
)

"""``tests.ecosystem.apps.ecoproj.asgi:application``.

- HTTP ``/graphql``: Strawberry's ``GraphQLHTTPConsumer``; ``/chat/<group>/say/``:
  :class:`~.consumers.SayConsumer`; anything else: Django.
- WebSocket ``/graphql``: Strawberry's ``GraphQLWSConsumer`` (graphql-transport-ws and the
  legacy graphql-ws); ``/ws/chat/<group>/``: :class:`~.consumers.ChatConsumer`.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.ecosystem.apps.ecoproj.settings")
django_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from strawberry.channels import GraphQLHTTPConsumer, GraphQLWSConsumer  # noqa: E402

from .consumers import ChatConsumer, SayConsumer  # noqa: E402
from .schema import schema  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^graphql/?$", GraphQLHTTPConsumer.as_asgi(schema=schema)),
                path("chat/<str:group>/say/", SayConsumer.as_asgi()),
                re_path(r"", django_app),
            ]
        ),
        "websocket": URLRouter(
            [
                path("ws/chat/<str:group>/", ChatConsumer.as_asgi()),
                re_path(r"^graphql/?$", GraphQLWSConsumer.as_asgi(schema=schema)),
            ]
        ),
    }
)

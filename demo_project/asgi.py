"""ASGI entry point of the demo: GraphQL over HTTP and WebSocket, Django for everything else.

Routes:

- HTTP ``/graphql/``: Strawberry's Channels HTTP consumer (without a channel-layer channel
  of its own, see :mod:`demo_project.consumers`): queries and mutations (GET/POST),
  GraphiQL for a browser, and HTTP subscriptions (``Accept: multipart/mixed;subscriptionSpec=1.0``
  or ``Accept: text/event-stream``);
- WebSocket ``/graphql/``: Strawberry's Channels WebSocket consumer, speaking both
  graphql-transport-ws and the legacy graphql-ws (the client's subprotocol picks);
- WebSocket ``/ws/echo/``: a plain Channels echo consumer;
- any other HTTP path: Django (the live page at ``/``, static files under ``/static/``).

WebSocket handshakes pass ``AllowedHostsOriginValidator`` first: a browser page from a host
not in ``ALLOWED_HOSTS`` (or a client sending no ``Origin``) is refused with 403.

The WebSocket consumer class is chosen here and only here (:data:`GraphQLWSConsumer`), so a
subclass is swapped in with one import: here channelserver's drain-aware consumer, which lets
running subscriptions finish before a restart closes the connection with 1012.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
# Django must be set up before anything imports models (the schema does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from strawberry.subscriptions import (  # noqa: E402
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)

from channelserver.strawberry import GraphQLWSConsumer  # noqa: E402
from demo_project.consumers import EchoConsumer, GraphQLHTTPConsumer  # noqa: E402
from demo_project.schema import schema  # noqa: E402

#: WebSocket subprotocols, in the server's order of preference.
WS_PROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)
#: HTTP streaming transports for subscriptions (chosen by the request's Accept header).
HTTP_STREAM_PROTOCOLS = (MULTIPART_SUBSCRIPTION_PROTOCOL, GRAPHQL_SSE_PROTOCOL)

graphql_http = GraphQLHTTPConsumer.as_asgi(schema=schema, subscription_protocols=HTTP_STREAM_PROTOCOLS)
graphql_ws = GraphQLWSConsumer.as_asgi(schema=schema, subscription_protocols=WS_PROTOCOLS)

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^graphql/?$", graphql_http),
                # Static files are served by Django here so every server (channelserver,
                # Daphne, Uvicorn) shows the same page; a deployment would use a CDN or WhiteNoise.
                re_path(r"", ASGIStaticFilesHandler(django_asgi_app)),
            ]
        ),
        "websocket": AllowedHostsOriginValidator(
            URLRouter(
                [
                    re_path(r"^graphql/?$", graphql_ws),
                    path("ws/echo/", EchoConsumer.as_asgi()),
                ]
            )
        ),
    }
)

"""``bench.scaleproject.asgi:application``; see ``bench/scaleproject/__init__.py``."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.scaleproject.settings")

import django

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from strawberry.channels import GraphQLHTTPConsumer, GraphQLWSConsumer  # noqa: E402

from bench.scaleproject.consumers import IdleConsumer, SubscribedConsumer  # noqa: E402
from bench.scaleproject.schema import schema  # noqa: E402


class HTTPConsumer(GraphQLHTTPConsumer):
    """No channel-layer channel per request: the mutation sends through
    ``get_channel_layer()`` (with channels_redis, a request's own channel would keep a
    blocking read on Redis that the request waits out when it ends)."""

    channel_layer_alias = None


async def ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 on any other HTTP path: the harness's readiness check."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter(
    {
        "http": URLRouter([re_path(r"^graphql/?$", HTTPConsumer.as_asgi(schema=schema)), re_path(r"", ok)]),
        "websocket": URLRouter(
            [
                path("ws/idle", IdleConsumer.as_asgi()),
                path("ws/subscribed", SubscribedConsumer.as_asgi()),
                re_path(r"^graphql/?$", GraphQLWSConsumer.as_asgi(schema=schema)),
            ]
        ),
    }
)

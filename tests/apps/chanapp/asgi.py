"""``chanapp.asgi:application``: a Channels ``ProtocolTypeRouter`` behind the records
endpoint. Like every Django and Channels router it rejects lifespan scopes, which is what
``--lifespan auto`` must take quietly."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chanapp.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402
from recorder import PREFIX, record, records_app  # noqa: E402

from chanapp.consumers import BackgroundConsumer, FloodConsumer, StreamConsumer, token_of  # noqa: E402


def returned(inner: Any) -> Any:
    """``inner``, recording ``<token>:returned`` when an instance ends (however it ends)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await inner(scope, receive, send)
        finally:
            record(f"{token_of(scope)}:returned")

    return app


router = ProtocolTypeRouter(
    {
        "http": URLRouter([path("stream/", returned(StreamConsumer.as_asgi())), re_path(r"", django_app)]),
        "websocket": URLRouter(
            [
                path("ws/bg/", returned(BackgroundConsumer.as_asgi())),
                path("ws/flood/", returned(FloodConsumer.as_asgi())),
            ]
        ),
    }
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith(PREFIX):
        await records_app(scope, receive, send, scope["path"][len(PREFIX) :])
    else:
        await router(scope, receive, send)

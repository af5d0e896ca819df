"""The ASGI extensions the server offers, used as an app would (tests/integration/test_extensions.py).

- ``/pathsend?path=P``: starts a response, then ``http.response.pathsend`` of file ``P``;
  records in the response header ``x-offered`` whether the scope named the extension.
- ``/early-hint``: an ``http.response.early_hint`` with two links, then a 200.
- WebSocket ``/ws/hold``: accepts, takes a ``channelserver.drain`` hold, echoes, and lets
  the hold go when it receives ``release``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs


async def hold_until_released(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    hold = scope["extensions"]["channelserver.drain"]["hold"]()
    hold.__enter__()
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            hold.__exit__(None, None, None)
            return
        if message.get("text") == "release":
            hold.__exit__(None, None, None)
        await send({"type": "websocket.send", "text": message.get("text") or ""})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        await hold_until_released(scope, receive, send)
        return
    await receive()
    extensions = scope.get("extensions") or {}
    if scope["path"] == "/pathsend":
        path = parse_qs(scope["query_string"].decode())["path"][0]
        offered = b"yes" if "http.response.pathsend" in extensions else b"no"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-offered", offered)]})
        await send({"type": "http.response.pathsend", "path": path})
    elif scope["path"] == "/early-hint":
        assert "http.response.early_hint" in extensions
        links = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
        await send({"type": "http.response.early_hint", "links": links})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})

"""The one raw ASGI 3 application every benchmarked server runs.

Raw ASGI, no framework, so that what is measured is the server: each server gets the same
app object and the same work per operation.

- ``GET /``: reads the request (as Django's handler does) and answers a 13-byte
  ``Hello, world!`` with a ``content-length``.
- ``POST /upload``: reads the whole body (any size, ``more_body`` parts) and answers its
  length.
- ``GET /stream``: answers 1 MiB in 16 body messages of 64 KiB, with a ``content-length``,
  so the client knows where it ends without parsing chunked encoding.
- WebSocket: accepts and echoes every text or bytes message until the peer leaves.
- lifespan: answers startup and shutdown (Daphne never sends it; the others do).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, world!"
STREAM_CHUNK = b"x" * 65536
STREAM_CHUNKS = 16
STREAM_SIZE = len(STREAM_CHUNK) * STREAM_CHUNKS

_TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


async def _read_body(receive: Receive) -> int:
    """Read the request body to its end; return its length (0 if the peer left)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return size
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    size = await _read_body(receive)
    if path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % STREAM_SIZE)],
            }
        )
        for i in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": i < STREAM_CHUNKS - 1})
        return
    body = b"%d" % size if path == "/upload" else HELLO
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_TEXT_HEADERS, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)
    elif kind == "lifespan":
        await lifespan(scope, receive, send)

"""ASGI apps for the worker-process tests (``tests/integration/test_workers.py``).

Every response names the worker that served it, so a test can tell workers apart:

- ``GET /pid``: the worker's pid as the body.
- ``GET /block?s=1.5``: sends the pid and a newline at once, then blocks the worker's event
  loop for ``s`` seconds (``time.sleep``) before finishing. While it blocks, that worker
  accepts nothing, so the next connection is served by another worker: a way to reach a
  chosen number of workers without relying on how the kernel spreads connections.
- ``GET /stream?s=1``: sends the pid and a newline at once, then ``done`` after ``s``
  seconds of ``asyncio.sleep``: a response in flight, known to have started.
- WebSocket on any path: accepted, then the pid is sent as text. ``block:S`` blocks the
  worker's loop for S seconds after replying ``blocking``; any other text is echoed.

``app`` answers lifespan. ``failing_lifespan`` fails its lifespan startup (run with
``--lifespan on``), as an app that cannot reach its database would. ``broken_in_worker``
imports in the supervising process but not in a worker: the module attribute is looked up
through :func:`__getattr__`, which raises ``ImportError`` inside a worker process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _http(scope: Scope, receive: Any, send: Any) -> None:
    pid = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] in ("/block", "/stream"):
        seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["1"])[0])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": pid + b"\n", "more_body": True})
        if scope["path"] == "/block":
            time.sleep(seconds)  # blocks the whole worker on purpose
        else:
            await asyncio.sleep(seconds)
        await send({"type": "http.response.body", "body": b"done\n"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": pid})


async def _websocket(scope: Scope, receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": str(os.getpid())})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text") or ""
        if text.startswith("block:"):
            await send({"type": "websocket.send", "text": "blocking"})
            time.sleep(float(text.partition(":")[2]))
        else:
            await send({"type": "websocket.send", "text": text})


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    else:
        await _websocket(scope, receive, send)


async def failing_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await app(scope, receive, send)


def __getattr__(name: str) -> Any:
    if name == "broken_in_worker":
        if multiprocessing.parent_process() is not None:
            raise ImportError("workers_app.broken_in_worker cannot be imported in a worker")
        return app
    raise AttributeError(name)

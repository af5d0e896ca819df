"""ASGI applications for the hardening tests (``test_hardening.py``, ``test_tls_proxy.py``).

Served by ``python -m channelserver hardening_apps:app`` with ``tests/integration`` on the
child's ``PYTHONPATH``. Each route does one thing and tells the test what it saw through
:mod:`recorder` (``GET /_records/<key>`` waits for a fact, no sleeping on the test side),
keyed by the ``token`` query parameter so tests sharing a server do not see each other's
facts.

HTTP routes:

- ``/ok`` answers ``ok``: the "normal client" that must keep being served;
- ``/scope`` answers the parts of the scope a proxy or TLS can change, as JSON;
- ``/method`` answers the request method (an unknown method must reach the app);
- ``/body`` reads the whole body, counting and dropping it (the server must not keep it),
  and answers the count; records ``<token>:started`` and, when the server cuts the request
  short, ``<token>:disconnect`` with the bytes seen until then;
- ``/hold`` records ``<token>:started`` and does not read the body until the test posts
  ``<token>:release``; then reads and answers the count like ``/body``;
- ``/memory`` answers, after a full collection, the interpreter's live memory blocks, its
  gc-tracked objects, what the collection freed, and (when the server runs with
  ``PYTHONTRACEMALLOC``) the bytes Python has allocated: a leak shows there to the byte,
  without the steps an allocator adds to RSS;
- ``/sends`` answers how many ``send()`` calls of ``/ws/flood`` with that token completed,
  and for how long the current one has been waiting (see :func:`sends`).

WebSocket routes (each given a token records ``<token>:connect`` when it starts):

- ``/ws/echo`` accepts and echoes; records ``<token>:disconnect`` with the close code;
- ``/ws/never`` never answers the handshake: it waits for its ``websocket.disconnect``
  (the server answers the client 503 after ``ws_handshake_timeout``) and records it;
- ``/ws/hold?n=N`` accepts, records ``<token>:accepted``, and does not receive until the test
  posts ``<token>:release``; then receives, and after the N-th message sends
  ``{"bytes": ..., "messages": N}`` as text;
- ``/ws/flood?n=N&size=S`` accepts, sends N binary messages of S bytes (message i starts
  with i as 4 big-endian bytes), counting the completed ``send()`` calls; records
  ``<token>:ended`` with that count when it ends, however it ends;
- ``/ws/cycle`` accepts and returns when the client leaves: the cheapest full cycle.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import sys
import time
import tracemalloc
from typing import Any
from urllib.parse import parse_qs

from recorder import PREFIX, record, records_app, wait_for  # type: ignore[import-not-found]

__all__ = ["app"]

Scope = dict[str, Any]

#: ``/ws/flood`` progress per token: completed sends, and when the pending send began.
_flood: dict[str, dict[str, Any]] = {}


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_in_use() -> int | None:
    """Bytes the C allocator has handed out and not had back (glibc ``mallinfo2``: heap
    chunks in use plus mmapped chunks): every allocation too large for pymalloc, and the
    C libraries' own (the event loop's, OpenSSL's). None where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


async def _respond(send: Any, body: bytes, status: int = 200, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, value: Any) -> None:
    await _respond(send, json.dumps(value).encode(), content_type=b"application/json")


def _scope_view(scope: Scope) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "scheme": scope["scheme"],
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "method": scope.get("method"),
        "path": scope["path"],
        "http_version": scope["http_version"],
    }


async def _count_body(receive: Any, token: str) -> tuple[int, int, bool]:
    """(bytes, messages, complete): the body read and dropped piece by piece."""
    size = messages = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            record(f"{token}:disconnect", {"bytes": size, "messages": messages})
            return size, messages, False
        messages += 1
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size, messages, True


async def sends(scope: Scope, send: Any, token: str, hold: float, timeout: float) -> None:
    """``/sends?token=T&hold=H&timeout=S``: ``{"completed": n, "waiting": seconds|null}``.

    Answers once the pending ``send()`` of the flood has been waiting for ``hold`` seconds
    (a client that does not read makes it wait), once the flood is done, or after
    ``timeout``. A single timer per pending send, not a polling loop: each wake-up is the
    moment the current send would have waited ``hold``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = _flood.get(token, {"completed": 0, "since": None, "done": False})
        since = state["since"]
        now = time.monotonic()
        if state["done"] or (since is not None and now - since >= hold) or loop.time() >= deadline:
            waiting = None if since is None else round(now - since, 3)
            await _json(send, {"completed": state["completed"], "waiting": waiting, "done": state["done"]})
            return
        wake = hold if since is None else since + hold - now
        await asyncio.sleep(max(0.01, min(wake, deadline - loop.time())))


async def http(scope: Scope, receive: Any, send: Any) -> None:
    path: str = scope["path"]
    query = _query(scope)
    token = query.get("token", "")
    if path.startswith(PREFIX):
        await records_app(scope, receive, send, path[len(PREFIX) :])
    elif path == "/memory":
        collected = gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        malloc = _malloc_in_use()
        await _json(
            send,
            {
                "blocks": sys.getallocatedblocks(),
                "objects": len(gc.get_objects()),
                "collected": collected,
                "traced": traced,
                "malloc": malloc,
            },
        )
    elif path == "/ok":
        await _respond(send, b"ok")
    elif path == "/scope":
        await _json(send, _scope_view(scope))
    elif path == "/method":
        await _respond(send, scope["method"].encode())
    elif path == "/body":
        record(f"{token}:started")
        size, messages, complete = await _count_body(receive, token)
        if complete:
            await _json(send, {"bytes": size, "messages": messages})
    elif path == "/hold":
        record(f"{token}:started")
        await wait_for(f"{token}:release", 1, float(query.get("timeout", "30")))
        size, messages, complete = await _count_body(receive, token)
        if complete:
            await _json(send, {"bytes": size, "messages": messages})
    elif path == "/sends":
        await sends(scope, send, token, float(query.get("hold", "1")), float(query.get("timeout", "10")))
    else:
        await _respond(send, b"not found", status=404)


async def _until_disconnect(receive: Any) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await receive()
        if message["type"] == "websocket.disconnect":
            return message


async def websocket(scope: Scope, receive: Any, send: Any) -> None:
    path: str = scope["path"]
    query = _query(scope)
    token = query.get("token", "")
    connect = await receive()
    assert connect["type"] == "websocket.connect", connect
    if token:  # /ws/cycle comes without one: 20,000 facts would be the app's own growth
        record(f"{token}:connect")
    if path == "/ws/never":
        message = await _until_disconnect(receive)
        record(f"{token}:disconnect", {"code": message.get("code")})
        return
    await send({"type": "websocket.accept"})
    if path == "/ws/cycle":
        await _until_disconnect(receive)
    elif path == "/ws/echo":
        record(f"{token}:scope", _scope_view(scope))
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                record(f"{token}:disconnect", {"code": message.get("code")})
                return
            reply: dict[str, Any] = {"type": "websocket.send"}
            if message.get("text") is not None:
                reply["text"] = message["text"]
            else:
                reply["bytes"] = message.get("bytes") or b""
            await send(reply)
    elif path == "/ws/hold":
        record(f"{token}:accepted")
        await wait_for(f"{token}:release", 1, float(query.get("timeout", "30")))
        size = messages = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            messages += 1
            size += len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
            if messages == int(query.get("n", "0")):
                await send({"type": "websocket.send", "text": json.dumps({"bytes": size, "messages": messages})})
    elif path == "/ws/flood":
        count, size = int(query.get("n", "1")), int(query.get("size", "16"))
        state = _flood[token] = {"completed": 0, "since": None, "done": False}
        padding = b"\0" * max(0, size - 4)
        try:
            for i in range(count):
                state["since"] = time.monotonic()
                await send({"type": "websocket.send", "bytes": i.to_bytes(4, "big") + padding})
                state["completed"] = i + 1
                state["since"] = None
            state["done"] = True
            await _until_disconnect(receive)
        finally:
            record(f"{token}:ended", {"completed": state["completed"]})
    else:
        await send({"type": "websocket.close", "code": 4404})


async def lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)
    else:
        await lifespan(scope, receive, send)

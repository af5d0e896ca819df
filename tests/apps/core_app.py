"""A raw ASGI 3 application with one route per behaviour the core tests check.

Served by ``python -m channelserver core_app:app`` and by Daphne, unchanged. Routes are
matched on ``path`` with ``root_path`` taken off (ASGI: ``path`` includes ``root_path``).
Each route does one thing and records what it saw through :mod:`recorder`, under a key
made from the ``token`` query parameter, so a test can ask afterwards what the app got.

HTTP routes:

- ``/scope/...`` answers the scope as JSON (bytes as latin-1 text);
- ``/body`` reads the whole request and answers each ``http.request`` message's size and
  ``more_body`` flag, and the body; each message is recorded as it comes;
- ``/slow?ms=N`` answers its own path after N ms (pipelining order);
- ``/hello`` answers ``hello world`` (HEAD must strip it);
- ``/wait-disconnect`` reads the request, then waits in ``receive()`` and records what
  comes (``http.disconnect`` when the client leaves);
- ``/stream`` streams 1 KiB chunks and never reads again; records how ``send()`` ended;
- ``/no-response`` returns without a response;
- ``/misuse`` sends a body before the start; records the exception ``send()`` raised.
- ``/start-twice`` sends a start (201, ``x-first: yes``), then another (500,
  ``x-second: yes``), records the exception that one raised, and goes on: sends its body
  ``first body``, or with ``then=return`` returns without one.

WebSocket routes:

- ``/ws/echo`` accepts (choosing subprotocol ``chat.v2`` when offered, adding an
  ``x-accepted: yes`` header), echoes text and bytes (empty too), closes with the code and
  reason the client asks for in ``close:<code>:<reason>``, and records its scope and
  every message;
- ``/ws/reject`` closes before accepting (HTTP 403);
- ``/ws/deny`` answers the handshake with a 401 denial response in two body parts;
- ``/ws/bg`` is the per-message background task pattern: the accept and every reply come
  from tasks it spawns, while the main task is back in ``receive()`` at once;
- ``/ws/close-from-task`` parks the main task in ``receive()`` while another task accepts,
  sends and closes;
- ``/ws/send-after-leave`` keeps sending after the client left, then reads the
  disconnect, then sends again: records what each ``send()`` did;
- ``/ws/misuse`` sends before accepting; ``/ws/misuse-after-accept`` accepts twice;
- ``/ws/no-accept`` returns without answering the handshake.

Every WebSocket instance records ``<token>:returned`` when it ends, so a test can wait
for the end and then count what was recorded before it.

Lifespan: startup puts ``{"lifespan": "started"}`` into ``state``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from recorder import PREFIX, jsonable, record, records_app, wait_for

__all__ = ["app"]

Scope = dict[str, Any]


def _route(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _error_text(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "oserror": isinstance(exc, OSError), "text": str(exc)}


async def _respond(send: Any, body: bytes, status: int = 200, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any, token: str = "") -> tuple[bytes, list[list[Any]]]:
    """The request body, and ``[type, size, more_body]`` of each message; with a token,
    each message is also recorded as it comes (``<token>:part``)."""
    parts: list[bytes] = []
    messages: list[list[Any]] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            messages.append([message["type"], 0, False])
            break
        body = message.get("body", b"")
        parts.append(body)
        messages.append([message["type"], len(body), bool(message.get("more_body", False))])
        if token:
            record(f"{token}:part", messages[-1])
        if not message.get("more_body", False):
            break
    return b"".join(parts), messages


# -- lifespan -----------------------------------------------------------------------------


async def lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if "state" in scope:
                scope["state"]["lifespan"] = "started"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# -- HTTP ---------------------------------------------------------------------------------


async def http(scope: Scope, receive: Any, send: Any) -> None:
    route = _route(scope)
    query = _query(scope)
    token = query.get("token", "")
    if route.startswith(PREFIX):
        await records_app(scope, receive, send, route[len(PREFIX) :])
    elif route.startswith("/scope"):
        await _read_body(receive)
        await _respond(send, json.dumps(jsonable(scope)).encode(), content_type=b"application/json")
    elif route == "/body":
        body, messages = await _read_body(receive, token)
        answer = {"body": body.decode("latin-1"), "messages": messages}
        await _respond(send, json.dumps(answer).encode(), content_type=b"application/json")
    elif route.startswith("/slow"):
        await _read_body(receive)
        await asyncio.sleep(int(query.get("ms", "0")) / 1000)
        await _respond(send, route.encode())
    elif route == "/hello":
        await _read_body(receive)
        await _respond(send, b"hello world")
    elif route == "/wait-disconnect":
        await _read_body(receive)
        record(f"{token}:started")
        message = await receive()
        record(f"{token}:received", message)
    elif route == "/stream":
        await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                await asyncio.sleep(0.005)
        except BaseException as exc:
            record(f"{token}:stopped", _error_text(exc))
            raise
    elif route == "/no-response":
        await _read_body(receive)
    elif route == "/misuse":
        await _read_body(receive)
        try:
            await send({"type": "http.response.body", "body": b"too early"})
        except Exception as exc:
            record(f"{token}:raised", _error_text(exc))
            raise
    elif route == "/start-twice":
        await _read_body(receive)
        headers = [(b"content-type", b"text/plain"), (b"x-first", b"yes")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        try:
            await send({"type": "http.response.start", "status": 500, "headers": [(b"x-second", b"yes")]})
        except Exception as exc:
            record(f"{token}:raised", _error_text(exc))
        if query.get("then") != "return":
            await send({"type": "http.response.body", "body": b"first body"})
    else:
        await _read_body(receive)
        await _respond(send, b"not found\n", status=404)


# -- WebSocket ----------------------------------------------------------------------------


async def ws_echo(scope: Scope, receive: Any, send: Any, token: str) -> None:
    record(f"{token}:scope", scope)
    message = await receive()
    record(f"{token}:messages", message)
    subprotocol = "chat.v2" if "chat.v2" in scope.get("subprotocols", []) else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-accepted", b"yes")]})
    while True:
        message = await receive()
        record(f"{token}:messages", message)
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def ws_bg(scope: Scope, receive: Any, send: Any, token: str) -> None:
    accepted = False
    tasks: set[asyncio.Task[None]] = set()

    async def accept_later() -> None:
        nonlocal accepted
        await asyncio.sleep(0.05)
        accepted = True
        await send({"type": "websocket.accept"})

    async def reply(text: str) -> None:
        await send({"type": "websocket.send", "text": "echo:" + text})

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    while True:
        message = await receive()
        record(f"{token}:received", {"type": message["type"], "accepted": accepted, "text": message.get("text")})
        if message["type"] == "websocket.connect":
            spawn(accept_later())
        elif message["type"] == "websocket.receive":
            spawn(reply(message.get("text") or ""))
        else:
            return


async def ws_close_from_task(scope: Scope, receive: Any, send: Any, token: str) -> None:
    async def other_task() -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "from task"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye from task"})
        record(f"{token}:task-done")

    assert (await receive())["type"] == "websocket.connect"
    task = asyncio.ensure_future(other_task())
    message = await receive()
    record(f"{token}:received", message)
    await task


async def ws_send_after_leave(scope: Scope, receive: Any, send: Any, token: str) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "ready"})
    # The test closes its socket, then records "gone" here through /_records.
    await wait_for(f"{token}:gone", 1, 10.0)
    outcome: dict[str, Any] = {}
    try:
        for _ in range(5):
            await send({"type": "websocket.send", "text": "after the client left"})
        outcome["sends_before_disconnect"] = "ok"
    except Exception as exc:
        outcome["sends_before_disconnect"] = _error_text(exc)
    message = await receive()
    outcome["received"] = message
    try:
        await send({"type": "websocket.send", "text": "after websocket.disconnect"})
        outcome["send_after_disconnect"] = "ok"
    except Exception as exc:
        outcome["send_after_disconnect"] = _error_text(exc)
    record(f"{token}:outcome", outcome)


async def ws_misuse(scope: Scope, receive: Any, send: Any, token: str, after_accept: bool) -> None:
    assert (await receive())["type"] == "websocket.connect"
    if after_accept:
        await send({"type": "websocket.accept"})
    try:
        if after_accept:
            await send({"type": "websocket.accept"})
        else:
            await send({"type": "websocket.send", "text": "too early"})
    except Exception as exc:
        record(f"{token}:raised", _error_text(exc))
        raise


async def websocket(scope: Scope, receive: Any, send: Any) -> None:
    token = _query(scope).get("token", "")
    try:
        await _websocket(scope, receive, send, token)
    finally:
        record(f"{token}:returned")


async def _websocket(scope: Scope, receive: Any, send: Any, token: str) -> None:
    route = _route(scope)
    if route == "/ws/echo":
        await ws_echo(scope, receive, send, token)
    elif route == "/ws/reject":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.close"})
        record(f"{token}:closed")
    elif route == "/ws/deny":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-denied", b"because")]})
        await send({"type": "websocket.http.response.body", "body": b"denied, ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"go away"})
        record(f"{token}:denied")
    elif route == "/ws/bg":
        await ws_bg(scope, receive, send, token)
    elif route == "/ws/close-from-task":
        await ws_close_from_task(scope, receive, send, token)
    elif route == "/ws/send-after-leave":
        await ws_send_after_leave(scope, receive, send, token)
    elif route == "/ws/misuse":
        await ws_misuse(scope, receive, send, token, after_accept=False)
    elif route == "/ws/misuse-after-accept":
        await ws_misuse(scope, receive, send, token, after_accept=True)
    elif route == "/ws/no-accept":
        assert (await receive())["type"] == "websocket.connect"
    else:
        await receive()
        await send({"type": "websocket.close", "code": 4404})


async def app(scope: Scope, receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(scope, receive, send)
    elif kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)

"""``tests.ecosystem.apps.first_step:app``: asyncio and anyio APIs from an app's first line.

A raw ASGI app (HTTP and WebSocket) that, before anything else, enters the construct named
by its path around a real suspension:

- ``/timeout``: ``async with asyncio.timeout(5)`` (Python 3.11+);
- ``/wait_for``: ``await asyncio.wait_for(...)``;
- ``/task_group``: ``async with anyio.create_task_group()`` with a child task;
- ``/fail_after``: ``with anyio.fail_after(5)`` (an anyio cancel scope);
- ``/plain``: nothing, the control.

All of them need the running asyncio Task: ``asyncio.timeout()`` raises "Timeout should
be used inside a task" without one, anyio cannot find its host task. The app also takes
``id(asyncio.current_task())`` at its first line and after every step, and reports the ids
in the response (HTTP) or in its messages (WebSocket), and in one log line just before it
returns::

    first-step returning {"token": ..., "first": ..., "last": ...}

The WebSocket app uses the construct for ``receive()`` of ``websocket.connect`` (before
``websocket.accept``), for the client's message after it, and for the disconnect.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

import anyio


def task_id() -> int | None:
    task = asyncio.current_task()
    return None if task is None else id(task)


async def using(kind: str, receive: Any) -> dict[str, Any]:
    """``receive()`` inside ``kind``; each way also suspends at least once inside it."""
    if kind == "timeout":
        async with asyncio.timeout(5):  # type: ignore[attr-defined]
            message = await receive()
            await asyncio.sleep(0)
    elif kind == "wait_for":
        message = await asyncio.wait_for(receive(), 5)
        await asyncio.wait_for(asyncio.sleep(0), 5)
    elif kind == "task_group":
        children: list[int | None] = []

        async def child() -> None:
            await anyio.sleep(0)
            children.append(task_id())

        async with anyio.create_task_group() as group:
            group.start_soon(child)
            message = await receive()
        assert len(children) == 1 and children[0] not in (None, task_id()), children
    elif kind == "fail_after":
        with anyio.fail_after(5):
            message = await receive()
            await anyio.sleep(0)
    elif kind == "plain":
        message = await receive()
    else:
        raise ValueError(kind)
    return dict(message)


def returning(token: str, first: int | None) -> None:
    line = json.dumps({"token": token, "first": first, "last": task_id()})
    print(f"first-step returning {line}", flush=True)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    first = task_id()
    if scope["type"] == "lifespan":
        return  # no lifespan: --lifespan auto goes on without it
    kind = scope["path"].strip("/")
    token = parse_qs(scope["query_string"].decode()).get("token", [""])[0]
    if scope["type"] == "http":
        ids = [first]
        message = await using(kind, receive)
        ids.append(task_id())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        ids.append(task_id())
        body = {"kind": kind, "received": message["type"], "ids": ids}
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
        returning(token, first)
    elif scope["type"] == "websocket":
        connect = await using(kind, receive)
        before_accept = task_id()
        await send({"type": "websocket.accept"})
        after_accept = task_id()
        message = await using(kind, receive)
        reply = {
            "kind": kind,
            "received": [connect["type"], message["type"], message.get("text")],
            "ids": [first, before_accept, after_accept, task_id()],
        }
        await send({"type": "websocket.send", "text": json.dumps(reply)})
        disconnect = await using(kind, receive)
        assert disconnect["type"] == "websocket.disconnect", disconnect
        returning(token, first)

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

    first-step returning {"token": ..., "first": ..., "last": ..., "same": ...}

The answers also name the event loop (``loop``), so a test knows which one it ran on.
``same`` (and the ``same`` list beside the ids) says whether ``asyncio.current_task()`` is
the very Task object of the first line, which the app holds, so an id reused by a later
Task cannot pass for it.

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


def loop_name() -> str:
    """ "uvloop" or "asyncio": whose event loop runs the app."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def returning(token: str, first: int | None, same: bool) -> None:
    line = json.dumps({"token": token, "first": first, "last": task_id(), "same": same})
    print(f"first-step returning {line}", flush=True)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    first_task = asyncio.current_task()
    first = task_id()
    if scope["type"] == "lifespan":
        return  # no lifespan: --lifespan auto goes on without it

    def same() -> bool:
        """The very Task object of the first line (an id alone could be reused)."""
        return first_task is not None and asyncio.current_task() is first_task

    kind = scope["path"].strip("/")
    token = parse_qs(scope["query_string"].decode()).get("token", [""])[0]
    if scope["type"] == "http":
        ids, checks = [first], [same()]
        message = await using(kind, receive)
        ids.append(task_id())
        checks.append(same())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        ids.append(task_id())
        checks.append(same())
        body = {"kind": kind, "loop": loop_name(), "received": message["type"], "ids": ids, "same": checks}
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})
        returning(token, first, same())
    elif scope["type"] == "websocket":
        ids, checks = [first], [same()]
        connect = await using(kind, receive)
        ids.append(task_id())  # before accept
        checks.append(same())
        await send({"type": "websocket.accept"})
        ids.append(task_id())  # after accept
        checks.append(same())
        message = await using(kind, receive)
        ids.append(task_id())  # after the client's message
        checks.append(same())
        reply = {
            "kind": kind,
            "loop": loop_name(),
            "received": [connect["type"], message["type"], message.get("text")],
            "ids": ids,
        }
        reply["same"] = checks
        await send({"type": "websocket.send", "text": json.dumps(reply)})
        disconnect = await using(kind, receive)
        assert disconnect["type"] == "websocket.disconnect", disconnect
        returning(token, first, same())

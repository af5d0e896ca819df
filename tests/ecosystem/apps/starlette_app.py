"""``tests.ecosystem.apps.starlette_app:app``: a Starlette app behind ``BaseHTTPMiddleware``.

``BaseHTTPMiddleware`` runs the route in an anyio task group of its own and streams the
response back through a memory object stream, all from the request's first step.

- ``/echo`` (GET, POST): the body back, with what the route saw: the Task's id (the route
  runs in a child task of the middleware's group) and the id the middleware saw, which the
  middleware takes at the top of ``dispatch``; the middleware adds ``x-middleware``.
- WebSocket ``/ws``: accepts, answers each text message with ``echo:<text>`` until the
  client leaves.

``watch_app`` (no middleware) serves ``/watch``: a streaming response whose app has two
tasks in ``receive()`` at once, as apps that watch for the disconnect do: a watcher task
awaiting ``http.disconnect``, and the body's generator asking
``Request.is_disconnected()`` (a ``receive()`` in an already-cancelled anyio scope) before
each part. Each prints what it saw; the response ends once either saw the client leave.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def task_id() -> int | None:
    task = asyncio.current_task()
    return None if task is None else id(task)


class Stamp(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request.state.middleware_task = task_id()
        response = await call_next(request)
        response.headers["x-middleware"] = str(request.state.middleware_task)
        response.headers["x-middleware-after"] = str(task_id())
        return response


async def echo(request: Request) -> Response:
    body = await request.body()
    result: dict[str, Any] = {
        "method": request.method,
        "body": body.decode(),
        "route_task": task_id(),
        "middleware_task": request.state.middleware_task,
    }
    return JSONResponse(result)


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"echo:{text}")
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[Route("/echo", echo, methods=["GET", "POST"]), WebSocketRoute("/ws", ws_echo)],
    middleware=[Middleware(Stamp)],
)


async def watch(request: Request) -> Response:
    parked = asyncio.Event()
    gone = asyncio.Event()

    async def watcher() -> None:
        message = await request.receive()  # the (empty) request body
        parked.set()  # no await between this and the receive() below: it parks at once
        while message["type"] != "http.disconnect":
            message = await request.receive()
        print("watcher saw http.disconnect", flush=True)
        gone.set()

    task = asyncio.get_running_loop().create_task(watcher())

    async def parts() -> Any:
        try:
            yield b"first\n"
            await parked.wait()
            probes = 0
            while not gone.is_set() and probes < 400:
                if await request.is_disconnected():
                    print("probe saw http.disconnect", flush=True)
                    break
                probes += 1
                if probes == 1:
                    print("probed while the watcher waits", flush=True)
                await asyncio.sleep(0.02)
            # the test asks whether the watcher was woken: wait for it, bounded
            await asyncio.wait({task}, timeout=5)
        finally:
            task.cancel()

    return StreamingResponse(parts(), media_type="text/plain")


watch_app = Starlette(routes=[Route("/watch", watch)])

"""Facts the test applications record, and an HTTP endpoint tests wait on for them.

The applications run in a server subprocess, so a test cannot look at their variables. An
app calls :func:`record` (``record("t1:disconnect", {"code": 1006})``); the test asks
``GET /_records/t1:disconnect?count=1&timeout=5`` and the answer comes as soon as that
many facts were recorded under the key (or the timeout passed): the test waits on an
event, never on a sleep. Keys carry a per-test token, so tests sharing a server do not see
each other's facts.

One process, one event loop: the apps and this endpoint run on the same loop under
channelserver and under Daphne (its Twisted reactor runs on asyncio).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

__all__ = ["PREFIX", "jsonable", "record", "records_app", "wait_for"]

PREFIX = "/_records/"

_facts: defaultdict[str, list[Any]] = defaultdict(list)
_waiters: defaultdict[str, list[asyncio.Future[None]]] = defaultdict(list)


def jsonable(value: Any) -> Any:
    """``value`` with bytes as latin-1 text and tuples as lists, so JSON can carry it."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def record(key: str, value: Any = True) -> None:
    """Append ``value`` under ``key`` and wake its waiters."""
    _facts[key].append(jsonable(value))
    for waiter in _waiters.pop(key, []):
        if not waiter.done():
            waiter.set_result(None)


async def wait_for(key: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
    """The facts under ``key`` once there are ``count`` of them, or after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(_facts[key]) < count:
        left = deadline - loop.time()
        if left <= 0:
            break
        waiter = loop.create_future()
        _waiters[key].append(waiter)
        try:
            await asyncio.wait_for(waiter, left)
        except asyncio.TimeoutError:
            break
    return list(_facts[key])


async def records_app(scope: dict[str, Any], receive: Any, send: Any, key: str) -> None:
    """``GET /_records/<key>?count=N&timeout=T``: a JSON list of the facts under ``key``.

    ``POST /_records/<key>`` records ``True`` under ``key`` (a test telling the app
    something, such as "my socket is closed now") and answers the list too."""
    if scope.get("method") == "POST":
        record(key)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    count = int(query.get("count", ["1"])[0])
    timeout = float(query.get("timeout", ["5"])[0])
    facts = await wait_for(key, count, timeout)
    body = json.dumps(facts).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})

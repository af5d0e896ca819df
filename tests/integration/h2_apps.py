"""A small raw ASGI app for the HTTP/2 client tests (test_http2_clients.py,
test_http2_browser.py): routes that prove streams run *at once*, not one after another.

Requests are counted per ``group`` (a query parameter a test makes up), in this process:
run it with ``--workers 1``. Every request of a group is recorded with the scope's
``http_version`` and the client's port, so a test can tell how many connections carried
them and over which HTTP version.

- ``/hello`` answers ``hello world``;
- ``/barrier?group=G&wait=N`` holds its answer until N requests of the group are in the
  app at once (or the group was released), then answers ``200 released``; after
  ``timeout`` seconds (default 15) without that it answers ``503`` with how many it saw:
  N answers of 200 prove N streams were open together;
- ``/sse?group=G&i=I&events=E&wait=N`` is a server-sent-events stream: headers at once, a
  comment, then the same wait as ``/barrier``, then E events ``data: I:k`` 20 ms apart and
  a last ``event: done``; a stream whose wait timed out gets ``event: stalled`` instead;
- ``/release?group=G`` lets every waiting and later request of the group through;
- ``/stats?group=G`` answers the group as JSON: ``open`` (in the app now, not yet at
  their last message), ``peak`` (most open at once), ``requests`` (``path``,
  ``http_version``, ``port``, ``scheme`` of each request to /hello, /barrier, /sse and
  /page, in order of arrival);
- ``/page?group=G&streams=S&events=E&wait=N`` is an HTML page whose script opens S
  EventSource streams to ``/sse`` at once and sets ``#status[data-state=all-done]``
  once every stream got its E events and its ``done`` (``data-state=stalled`` if any
  stalled); ``window.results`` holds what each stream got.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

__all__ = ["app"]

Scope = dict[str, Any]


@dataclass
class Group:
    open: int = 0
    peak: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    wait: int = 0
    #: Set when ``wait`` requests were open at once, or on /release.
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self, wait: int) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.wait = max(self.wait, wait)
        if self.wait and self.open >= self.wait:
            self.released.set()

    def leave(self) -> None:
        self.open -= 1


GROUPS: dict[str, Group] = {}


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _group(query: dict[str, str]) -> Group:
    return GROUPS.setdefault(query.get("group", ""), Group())


async def _respond(send: Any, body: bytes, status: int = 200, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _released(group: Group, query: dict[str, str]) -> bool:
    try:
        await asyncio.wait_for(group.released.wait(), float(query.get("timeout", "15")))
    except asyncio.TimeoutError:
        return False
    return True


async def barrier(scope: Scope, send: Any, query: dict[str, str], group: Group) -> None:
    group.enter(int(query.get("wait", "0")))
    try:
        released = await _released(group, query)
        seen = b"%d open, %d wanted" % (group.open, group.wait)
    finally:
        group.leave()  # before the answer: the client may reuse its slot once it has it
    await _respond(send, b"released" if released else seen, status=200 if released else 503)


async def sse(scope: Scope, send: Any, query: dict[str, str], group: Group) -> None:
    i, events = query.get("i", "0"), int(query.get("events", "5"))
    group.enter(int(query.get("wait", "0")))
    left = False
    try:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        if not await _released(group, query):
            body = b"event: stalled\ndata: %d open, %d wanted\n\n" % (group.open, group.wait)
            group.leave()
            left = True
            await send({"type": "http.response.body", "body": body})
            return
        for k in range(events):
            await asyncio.sleep(0.02)
            await send({"type": "http.response.body", "body": f"data: {i}:{k}\n\n".encode(), "more_body": True})
        group.leave()  # before the last message: the client may reuse its slot once it has it
        left = True
        await send({"type": "http.response.body", "body": b"event: done\ndata: \n\n"})
    finally:
        if not left:
            group.leave()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>HTTP/2 server-sent events</title></head>
<body><p id="status" data-state="running" data-done="0">running</p>
<script>
const params = new URLSearchParams(location.search);
const group = params.get("group"), streams = Number(params.get("streams"));
const events = params.get("events"), wait = params.get("wait") || "0";
const status = document.getElementById("status");
window.results = {};
window.errors = [];
let done = 0;
function finish(state) {
  status.dataset.state = state;
  status.textContent = state;
}
for (let i = 0; i < streams; i++) {
  window.results[i] = [];
  const source = new EventSource(`/sse?group=${group}&i=${i}&events=${events}&wait=${wait}`);
  source.onmessage = (event) => window.results[i].push(event.data);
  source.addEventListener("done", () => {
    source.close();
    done += 1;
    status.dataset.done = String(done);
    if (done === streams) finish("all-done");
  });
  source.addEventListener("stalled", (event) => {
    source.close();
    window.errors.push(`stream ${i} stalled: ${event.data}`);
    finish("stalled");
  });
  source.onerror = () => window.errors.push(`stream ${i}: error event, readyState ${source.readyState}`);
}
</script></body></html>
"""


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    path: str = scope["path"]
    query = _query(scope)
    group = _group(query)
    if path in ("/hello", "/barrier", "/sse", "/page"):
        client = scope.get("client") or ("", 0)
        group.requests.append(
            {"path": path, "http_version": scope["http_version"], "port": client[1], "scheme": scope["scheme"]}
        )
    if path == "/hello":
        await _respond(send, b"hello world")
    elif path == "/barrier":
        await barrier(scope, send, query, group)
    elif path == "/sse":
        await sse(scope, send, query, group)
    elif path == "/release":
        group.released.set()
        await _respond(send, b"released")
    elif path == "/stats":
        stats = {"open": group.open, "peak": group.peak, "requests": group.requests}
        await _respond(send, json.dumps(stats).encode(), content_type=b"application/json")
    elif path == "/page":
        await _respond(send, PAGE.encode(), content_type=b"text/html; charset=utf-8")
    else:
        await _respond(send, b"not found", status=404)

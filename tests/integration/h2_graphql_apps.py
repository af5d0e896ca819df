"""The demo project (demo_project.asgi) with the event-stream routes of h2_apps and a page
that opens both kinds of stream at once, for test_http2_graphql_browser.py.

Run it with ``--workers 1`` (the counts live in the process) and ``DEMO_DB`` naming a
migrated database (demo_project.asgi sets the demo's settings).

Routes:

- ``/sse``, ``/release``, ``/stats``: tests/integration/h2_apps.py's app (server-sent events
  held until their group is released);
- ``/page?group=G&streams=N&room=R&text=T&events=E&drive=0|1``: the page (below);
- ``/requests?group=G``: what this module recorded of the group's requests (JSON: ``requests``
  in order of arrival, each with ``kind``, ``method``, ``path``, ``i``, ``http_version``,
  ``port``, ``scheme`` and ``streams_open``, the streams of the group in the app when it
  arrived; ``open`` and ``peak`` of those streams); not recorded itself;
- everything else: the demo (``/graphql``: Strawberry's Channels HTTP consumer, with
  multipart subscriptions; Django behind it).

A request belongs to a group by its ``group`` query parameter (the page puts it on every
URL it asks for; the demo's routes ignore the query string). A *stream* is an ``/sse``
request or a ``POST /graphql`` that accepts ``multipart/mixed`` (a subscription); it is open
from its arrival until its app returns.

The page opens N EventSource streams to ``/sse`` (held until the group is released) and N
GraphQL subscriptions ``messages(room: R)`` over HTTP at once: each a ``fetch`` POST with
``Accept: multipart/mixed;subscriptionSpec=1.0, application/json`` whose response body it
reads as it comes. A subscription is done when it got a message with text T (then the page
aborts it); an event stream when it got its E events and ``done``. With ``drive=1`` the
page triggers the events itself once everything is open: it asks the demo's ``awaitStats``
to wait (inside the server) until N ``messages`` subscriptions are live, waits until its N
event streams have opened, then posts T with the ``postMessage`` mutation and releases the
group. ``#status[data-state]`` becomes ``all-done`` (or ``failed``); ``window.results`` holds
what each stream got, ``window.opened`` how many of each kind have their response head,
``window.errors`` what went wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from demo_project.asgi import application as demo
from tests.integration.h2_apps import app as event_streams

__all__ = ["app"]

Scope = dict[str, Any]

#: The routes of h2_apps mounted here.
EVENT_STREAM_PATHS = ("/sse", "/release", "/stats")


@dataclass
class Recorder:
    requests: list[dict[str, Any]] = field(default_factory=list)
    open: int = 0
    peak: int = 0


RECORDERS: dict[str, Recorder] = {}


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _kind(scope: Scope) -> str:
    path: str = scope["path"]
    if path == "/sse":
        return "sse"
    if path.rstrip("/") == "/graphql":
        accept = b",".join(value for name, value in scope["headers"] if name == b"accept")
        if scope["method"] == "POST" and b"multipart/mixed" in accept:
            return "subscription"
        return "graphql"
    return path.lstrip("/") or "root"


async def _respond(send: Any, body: bytes, status: int, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _recorded(scope: Scope, receive: Any, send: Any, inner: Any, recorder: Recorder) -> None:
    kind = _kind(scope)
    client = scope.get("client") or ("", 0)
    recorder.requests.append(
        {
            "kind": kind,
            "method": scope["method"],
            "path": scope["path"],
            "i": _query(scope).get("i"),
            "http_version": scope["http_version"],
            "port": client[1],
            "scheme": scope["scheme"],
            "streams_open": recorder.open,
        }
    )
    stream = kind in ("sse", "subscription")
    if stream:
        recorder.open += 1
        recorder.peak = max(recorder.peak, recorder.open)
    try:
        await inner(scope, receive, send)
    finally:
        if stream:
            recorder.open -= 1


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # the demo's router has no lifespan of its own
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        await demo(scope, receive, send)
        return
    path: str = scope["path"]
    group = _query(scope).get("group")
    if path == "/requests":
        recorder = RECORDERS.get(group or "", Recorder())
        body = json.dumps({"requests": recorder.requests, "open": recorder.open, "peak": recorder.peak})
        await _respond(send, body.encode(), 200, b"application/json")
        return
    inner: Any = event_streams if path in EVENT_STREAM_PATHS else page if path == "/page" else demo
    if group is None:
        await inner(scope, receive, send)
    else:
        await _recorded(scope, receive, send, inner, RECORDERS.setdefault(group, Recorder()))


async def page(scope: Scope, receive: Any, send: Any) -> None:
    await _respond(send, PAGE.encode(), 200, b"text/html; charset=utf-8")


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>HTTP/2: event streams and GraphQL subscriptions</title>
<link rel="icon" href="data:,"></head>
<body><p id="status" data-state="running">running</p>
<script>
const params = new URLSearchParams(location.search);
const group = params.get("group"), streams = Number(params.get("streams"));
const room = params.get("room"), text = params.get("text");
const events = Number(params.get("events")), drive = params.get("drive") === "1";
const status = document.getElementById("status");
const SUBSCRIPTION = "subscription ($room: String!) { messages(room: $room) { id room text } }";
const ACCEPT = "multipart/mixed;subscriptionSpec=1.0, application/json";
const BOUNDARY = "\\r\\n--graphql";
window.results = {sse: {}, subscriptions: {}};
window.opened = {sse: 0, subscriptions: 0};
window.errors = [];
let done = 0;
function fail(message) {
  window.errors.push(message);
  status.dataset.state = "failed";
}
function finished() {
  done += 1;
  if (done === 2 * streams && status.dataset.state === "running") status.dataset.state = "all-done";
}
function waitFor(check) {
  return new Promise((resolve) => {
    const poll = () => (check() ? resolve() : setTimeout(poll, 10));
    poll();
  });
}
async function graphql(query, variables) {
  const response = await fetch(`/graphql?group=${group}`, {
    method: "POST",
    headers: {"content-type": "application/json", accept: "application/json"},
    body: JSON.stringify({query, variables}),
  });
  const result = await response.json();
  if (!response.ok || result.errors) throw new Error(`${response.status} ${JSON.stringify(result)}`);
  return result.data;
}

function openEventStream(i) {
  window.results.sse[i] = [];
  const source = new EventSource(`/sse?group=${group}&i=${i}&events=${events}&wait=0&timeout=60`);
  source.onopen = () => { window.opened.sse += 1; };
  source.onmessage = (event) => window.results.sse[i].push(event.data);
  source.addEventListener("done", () => { source.close(); finished(); });
  source.addEventListener("stalled", (event) => { source.close(); fail(`event stream ${i} stalled: ${event.data}`); });
  source.onerror = () => fail(`event stream ${i}: error event, readyState ${source.readyState}`);
}

async function subscribe(i) {
  window.results.subscriptions[i] = [];
  const controller = new AbortController();
  let ended = false;
  try {
    const response = await fetch(`/graphql?group=${group}&i=${i}`, {
      method: "POST",
      headers: {"content-type": "application/json", accept: ACCEPT},
      body: JSON.stringify({query: SUBSCRIPTION, variables: {room}}),
      signal: controller.signal,
    });
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.startsWith("multipart/mixed")) {
      throw new Error(`status ${response.status}, content-type ${type}: ${await response.text()}`);
    }
    window.opened.subscriptions += 1;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    while (!ended) {
      const {value, done: eof} = await reader.read();
      if (eof) throw new Error("the response ended before the message came");
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while (!ended && (cut = buffer.indexOf(BOUNDARY)) !== -1) {
        const part = buffer.slice(0, cut);
        buffer = buffer.slice(cut + BOUNDARY.length);
        const start = part.indexOf("\\r\\n\\r\\n");
        if (start === -1) continue;  // the opening boundary
        const body = JSON.parse(part.slice(start + 4));
        if (!body.payload) continue;  // a heartbeat: {}
        if (body.payload.errors) throw new Error(JSON.stringify(body.payload.errors));
        const message = body.payload.data.messages;
        window.results.subscriptions[i].push(message.text);
        if (message.text === text) ended = true;
      }
    }
    controller.abort();  // the subscription is endless: the page ends it (a reset stream)
    finished();
  } catch (error) {
    if (!ended) fail(`subscription ${i}: ${error}`);
  }
}

async function trigger() {
  const until = {field: "messages", activeAtLeast: streams};
  await graphql("query ($until: StatsCondition!) { awaitStats(until: $until, timeoutMs: 30000) { pid } }", {until});
  await waitFor(() => window.opened.sse === streams && window.opened.subscriptions === streams);
  await graphql(
    "mutation ($room: String!, $text: String!) { postMessage(room: $room, text: $text) { id } }",
    {room, text},
  );
  const released = await fetch(`/release?group=${group}`);
  if (!released.ok) throw new Error(`release: ${released.status}`);
}

for (let i = 0; i < streams; i++) {
  openEventStream(i);
  subscribe(i);
}
if (drive) trigger().catch((error) => fail(`trigger: ${error}`));
</script></body></html>
"""

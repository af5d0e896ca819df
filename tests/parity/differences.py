"""Where Daphne is meant to behave differently from channelserver: the one list.

Every parity scenario observes something (a status, the frames that came, what the app
was handed) and states what is correct. Both servers must show the correct observation,
except for the scenarios listed here: for those, Daphne must show exactly the observation
given, for the reason given. The check is an equality in both directions, so when Daphne
changes (fixes one of these, or breaks something else) the suite fails and this list is
brought up to date. A listed difference that equals the correct observation is an error
too: it would hide nothing.

Observed with Daphne 4.2 on Twisted 26; run with ``--application-close-timeout 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DIFFERENCES", "Difference"]


@dataclass(frozen=True)
class Difference:
    #: What the scenario observes on Daphne.
    daphne: Any
    #: Why it differs: what Daphne lacks or gets wrong.
    why: str


DIFFERENCES: dict[str, Difference] = {
    # -- HTTP ----------------------------------------------------------------------------
    "http.scope.path": Difference(
        daphne="/scope/café/a b",
        why="path lacks the root_path prefix (ASGI: path includes root_path; Django and Channels strip it)",
    ),
    "http.scope.asgi": Difference(
        daphne={"version": "3.0"},
        why="no spec_version in the scope, so apps must assume spec 2.0",
    ),
    "http.lifespan_state": Difference(
        daphne=None,
        why="no lifespan protocol, so no lifespan state in the scope",
    ),
    "http.body_streamed": Difference(
        daphne={"first_part_before_the_rest": [], "messages": [["http.request", 11, False]], "body": "hello world"},
        why="buffers the whole request body before it starts the app",
    ),
    "http.send_after_client_left": Difference(
        daphne={"type": "CancelledError", "oserror": False},
        why="send() after the client left is dropped silently (no ClientDisconnected); a streaming app "
        "runs on until application_close_timeout cancels it",
    ),
    "http.no_response": Difference(
        daphne=None,
        why="an app that returns without a response leaves the request hanging, no 500, no log line",
    ),
    "http.misuse": Difference(
        daphne={"status": 500, "raised": "ValueError"},
        why="misuse raises a bare ValueError naming neither the allowed messages nor the state",
    ),
    # -- WebSocket -----------------------------------------------------------------------
    "ws.accept_headers": Difference(
        daphne=None,
        why="headers in websocket.accept are ignored",
    ),
    "ws.permessage_deflate": Difference(
        daphne=False,
        why="permessage-deflate is not offered",
    ),
    "ws.app_to_client": Difference(
        daphne=["hi", b"\x00\x01\xff", "end"],
        why="empty text and bytes messages from the app are dropped silently",
    ),
    "ws.close_from_app": Difference(
        daphne=[4001, ""],
        why="the close reason from the app is dropped",
    ),
    "ws.close_from_client": Difference(
        daphne={"type": "websocket.disconnect", "code": 4002},
        why="websocket.disconnect carries no reason",
    ),
    "ws.close_from_task": Difference(
        daphne={"frames": [[1, "from task"], [8, 4001, ""]], "disconnect_code": 4001},
        why="the close reason from the app is dropped",
    ),
    "ws.denial": Difference(
        daphne={"status": None, "x-denied": None, "body": None},
        why="no websocket.http.response extension: the denial is ignored, the handshake hangs until "
        "websocket_connect_timeout resets the connection",
    ),
    "ws.send_after_leave": Difference(
        daphne={"sends_before_disconnect": "ok", "received_code": 1006, "send_after_disconnect": "ok"},
        why="send() after websocket.disconnect is dropped silently forever; the app cannot tell",
    ),
    "ws.no_accept": Difference(
        daphne=None,
        why="an app that returns without answering the handshake leaves it hanging until "
        "websocket_connect_timeout resets the connection; no 500, no log line",
    ),
    # -- Channels ------------------------------------------------------------------------
    "channels.streaming_consumer": Difference(
        daphne={"stopped": [{"type": "CancelledError", "oserror": False}], "disconnect_ran": [True]},
        why="no ClientDisconnected: the streaming consumer runs until application_close_timeout cancels it",
    ),
}

"""The ASGI lifespan cycle: what the app may send, and when.

One cycle per server process. Every transition is in :data:`TRANSITIONS`:

    NEW       --lifespan.startup  (server)-------->  STARTUP
    STARTUP   --lifespan.startup.complete--------->  STARTED
    STARTUP   --lifespan.startup.failed----------->  FAILED
    STARTUP   --returned-------------------------->  UNSUPPORTED
    STARTUP   --raised---------------------------->  UNSUPPORTED  (``--lifespan on`` refuses to start)
    STARTUP   --raised after a refused message---->  FAILED
    STARTED   --lifespan.shutdown (server)-------->  SHUTDOWN
    STARTED   --returned-------------------------->  DONE         (nothing to run at shutdown)
    STARTED   --raised---------------------------->  FAILED
    SHUTDOWN  --lifespan.shutdown.complete-------->  DONE
    SHUTDOWN  --lifespan.shutdown.failed---------->  FAILED
    SHUTDOWN  --returned-------------------------->  DONE
    SHUTDOWN  --raised---------------------------->  FAILED
    DONE      --returned, raised------------------>  DONE
    FAILED    --returned, raised------------------>  FAILED

Three kinds of input, all rows of the one table: the messages the server sends the app
(``lifespan.startup``, ``lifespan.shutdown``; :meth:`LifespanCycle.send_startup` and
:meth:`~LifespanCycle.send_shutdown`), the messages the app sends (:data:`APP_MESSAGES`,
:meth:`~LifespanCycle.app_sent`), and the app's end (``returned``, ``raised``;
:meth:`~LifespanCycle.app_ended`; "raised" above is either ``raised`` or
``raised#misuse``, which differ in STARTUP only). An app that raises while startup is unanswered does
not support lifespan (ASGI lifespan spec: the server goes on without it), unless it raised
after the server refused one of its messages: then it speaks lifespan, wrongly, and the
startup failed.

An app message not in the table raises :class:`ASGIProtocolError` with the text made by
:func:`table.misuse`, naming the messages the app may send in that state, for example
``lifespan.startup.complete not allowed in state STARTED; expected no further message
(lifespan)``. A refused message has no effect on the state.
"""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ASGIProtocolError
from .table import Table, bad_field, misuse, not_a_message

__all__ = ["APP_ENDS", "APP_MESSAGES", "SERVER_MESSAGES", "TRANSITIONS", "LifespanCycle", "State"]


class State(enum.Enum):
    __hash__ = object.__hash__  # identity, as in asgi_http.State

    NEW = "NEW"
    STARTUP = "STARTUP"
    STARTED = "STARTED"
    SHUTDOWN = "SHUTDOWN"
    DONE = "DONE"
    FAILED = "FAILED"
    UNSUPPORTED = "UNSUPPORTED"


#: The messages the server sends, which are inputs of the cycle too.
STARTUP, SHUTDOWN = SERVER_MESSAGES = ("lifespan.startup", "lifespan.shutdown")
#: The app's end: it returned, raised, or raised after one of its messages was refused.
RETURNED, RAISED, RAISED_AFTER_MISUSE = APP_ENDS = ("returned", "raised", "raised#misuse")

TRANSITIONS: Table = {
    (State.NEW, STARTUP): State.STARTUP,
    (State.STARTUP, "lifespan.startup.complete"): State.STARTED,
    (State.STARTUP, "lifespan.startup.failed"): State.FAILED,
    (State.STARTUP, RETURNED): State.UNSUPPORTED,
    (State.STARTUP, RAISED): State.UNSUPPORTED,
    (State.STARTUP, RAISED_AFTER_MISUSE): State.FAILED,
    (State.STARTED, SHUTDOWN): State.SHUTDOWN,
    (State.STARTED, RETURNED): State.DONE,
    (State.STARTED, RAISED): State.FAILED,
    (State.STARTED, RAISED_AFTER_MISUSE): State.FAILED,
    (State.SHUTDOWN, "lifespan.shutdown.complete"): State.DONE,
    (State.SHUTDOWN, "lifespan.shutdown.failed"): State.FAILED,
    (State.SHUTDOWN, RETURNED): State.DONE,
    (State.SHUTDOWN, RAISED): State.FAILED,
    (State.SHUTDOWN, RAISED_AFTER_MISUSE): State.FAILED,
    (State.DONE, RETURNED): State.DONE,
    (State.DONE, RAISED): State.DONE,
    (State.DONE, RAISED_AFTER_MISUSE): State.DONE,
    (State.FAILED, RETURNED): State.FAILED,
    (State.FAILED, RAISED): State.FAILED,
    (State.FAILED, RAISED_AFTER_MISUSE): State.FAILED,
}

#: The messages an app may send, in the order of the spec.
APP_MESSAGES = (
    "lifespan.startup.complete",
    "lifespan.startup.failed",
    "lifespan.shutdown.complete",
    "lifespan.shutdown.failed",
)

#: The app's view of :data:`TRANSITIONS`: what a misuse error says is allowed.
_APP_TABLE: Table = {key: new for key, new in TRANSITIONS.items() if key[1] in APP_MESSAGES}


class LifespanCycle:
    """State of the lifespan exchange with the app."""

    __slots__ = ("failure", "refused", "state")

    #: Names the cycle in error messages, where HTTP and WebSocket name the request.
    where = "lifespan"

    def __init__(self) -> None:
        self.state = State.NEW
        #: The ``message`` of a ``lifespan.*.failed`` (its type when it has none), or the
        #: exception the app raised, as ``"ValueError: text"``.
        self.failure: str | None = None
        #: The last error raised by :meth:`app_sent`: the caller logs it once, and does
        #: not log it again if the app lets it end the cycle.
        self.refused: ASGIProtocolError | None = None

    def _move(self, kind: str) -> None:
        """A move the server drives; one not in the table is the server's own bug."""
        new = TRANSITIONS.get((self.state, kind))
        if new is None:
            raise RuntimeError(f"{kind} is not a move of lifespan state {self.state.value}")
        self.state = new

    def send_startup(self) -> dict[str, Any]:
        """The server sends ``lifespan.startup``: the message to put on ``receive()``."""
        self._move(STARTUP)
        return {"type": STARTUP}

    def send_shutdown(self) -> dict[str, Any]:
        """The server sends ``lifespan.shutdown`` (only once startup completed)."""
        self._move(SHUTDOWN)
        return {"type": SHUTDOWN}

    def app_sent(self, message: Any) -> State:
        """Check a message of the app's ``send()`` against the table and apply it; the new
        state. Raises :class:`ASGIProtocolError` (and keeps it in :attr:`refused`) on misuse."""
        try:
            return self._apply(message)
        except ASGIProtocolError as exc:
            self.refused = exc
            raise

    def _apply(self, message: Any) -> State:
        try:
            mtype = message["type"]
        except (TypeError, KeyError):
            raise not_a_message(message, self.where) from None
        new: State | None = _APP_TABLE.get((self.state, mtype))
        if new is None:
            raise misuse(_APP_TABLE, self.state, mtype, self.where)
        if new is State.FAILED:
            text = message.get("message", "")
            if not isinstance(text, str):
                raise bad_field(mtype, "message", "a str", text, self.where)
            self.failure = text or mtype
        self.state = new
        return new

    def app_ended(self, error: str | None) -> State:
        """The app returned (``error`` None) or raised ``error`` (``"ValueError: text"``;
        not for a cancellation, which the server asked for). The new state."""
        if error is None:
            kind = RETURNED
        else:
            kind = RAISED if self.refused is None else RAISED_AFTER_MISUSE
        self._move(kind)
        if error is not None and self.state in (State.FAILED, State.UNSUPPORTED):
            self.failure = error
        return self.state

"""Every (state, input) pair of the lifespan table (``asgi_lifespan.TRANSITIONS``).

Three kinds of input: the app's messages (and a bogus one, and the server's own message
types sent back by the app), the server's messages, and the app's end. Each pair either
moves the cycle to the state the table names, or is refused: an app message with
``ASGIProtocolError`` and the exact text, a server move or an end with ``RuntimeError``
(the server's own bug). A refused input never moves the cycle.

Separately, the table is checked against a copy written out by hand from the ASGI
lifespan spec, so that it cannot silently lose (or gain) a row.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from channelserver.errors import ASGIProtocolError
from channelserver.protocol import asgi_lifespan
from channelserver.protocol.asgi_lifespan import APP_ENDS, APP_MESSAGES, SERVER_MESSAGES, LifespanCycle

S = asgi_lifespan.State
BOGUS = "lifespan.bogus"
ERROR = "ValueError: boom"

#: What the misuse text says the app may send, per state, written out by hand.
EXPECTED = {
    S.NEW: "expected no further message",
    S.STARTUP: "expected lifespan.startup.complete or lifespan.startup.failed",
    S.STARTED: "expected no further message",
    S.SHUTDOWN: "expected lifespan.shutdown.complete or lifespan.shutdown.failed",
    S.DONE: "expected no further message",
    S.FAILED: "expected no further message",
    S.UNSUPPORTED: "expected no further message",
}

#: The lifespan spec's rows, by hand: what the app may send, and where it leads.
SPEC_APP = {
    (S.STARTUP, "lifespan.startup.complete"): S.STARTED,
    (S.STARTUP, "lifespan.startup.failed"): S.FAILED,
    (S.SHUTDOWN, "lifespan.shutdown.complete"): S.DONE,
    (S.SHUTDOWN, "lifespan.shutdown.failed"): S.FAILED,
}
#: What the server sends, and when.
SPEC_SERVER = {
    (S.NEW, "lifespan.startup"): S.STARTUP,
    (S.STARTED, "lifespan.shutdown"): S.SHUTDOWN,
}
#: The app's end. Raising before startup is answered means "no lifespan here" (the spec:
#: the server goes on without it), unless the app raised after a refused message.
SPEC_ENDS = {
    (S.STARTUP, "returned"): S.UNSUPPORTED,
    (S.STARTUP, "raised"): S.UNSUPPORTED,
    (S.STARTUP, "raised#misuse"): S.FAILED,
    **{(S.STARTED, kind): S.FAILED for kind in ("raised", "raised#misuse")},
    (S.STARTED, "returned"): S.DONE,
    **{(S.SHUTDOWN, kind): S.FAILED for kind in ("raised", "raised#misuse")},
    (S.SHUTDOWN, "returned"): S.DONE,
    **{(S.DONE, kind): S.DONE for kind in APP_ENDS},
    **{(S.FAILED, kind): S.FAILED for kind in APP_ENDS},
}


def cycle_in(state: asgi_lifespan.State) -> LifespanCycle:
    """A cycle in ``state``, reached the way the server and an app get there."""
    cycle = LifespanCycle()
    if state is S.NEW:
        return cycle
    assert cycle.send_startup() == {"type": "lifespan.startup"}
    if state is S.FAILED:
        cycle.app_sent({"type": "lifespan.startup.failed", "message": "db down"})
    elif state is S.UNSUPPORTED:
        cycle.app_ended(None)
    elif state is not S.STARTUP:
        cycle.app_sent({"type": "lifespan.startup.complete"})
        if state is not S.STARTED:
            assert cycle.send_shutdown() == {"type": "lifespan.shutdown"}
            if state is S.DONE:
                cycle.app_sent({"type": "lifespan.shutdown.complete"})
    assert cycle.state is state
    return cycle


def test_the_table_is_the_spec() -> None:
    assert dict(asgi_lifespan.TRANSITIONS) == {**SPEC_SERVER, **SPEC_APP, **SPEC_ENDS}
    assert set(SERVER_MESSAGES) | set(APP_MESSAGES) | set(APP_ENDS) == {k for _, k in asgi_lifespan.TRANSITIONS}


def test_every_state_is_reachable_from_new() -> None:
    reached = {S.NEW}
    for _ in S:
        reached |= {new for (state, _), new in asgi_lifespan.TRANSITIONS.items() if state in reached}
    assert reached == set(S)


# -- the app's messages -------------------------------------------------------------------

APP_KINDS = [*APP_MESSAGES, *SERVER_MESSAGES, BOGUS]
APP_PAIRS = list(itertools.product(list(S), APP_KINDS))


@pytest.mark.parametrize(("state", "kind"), APP_PAIRS, ids=[f"{s.value}-{k}" for s, k in APP_PAIRS])
def test_app_message(state: asgi_lifespan.State, kind: str) -> None:
    cycle = cycle_in(state)
    target = SPEC_APP.get((state, kind))
    if target is not None:
        assert cycle.app_sent({"type": kind}) is target
        assert cycle.state is target
        assert cycle.refused is None
        return
    failure = cycle.failure
    with pytest.raises(ASGIProtocolError) as info:
        cycle.app_sent({"type": kind})
    assert str(info.value) == f"{kind} not allowed in state {state.value}; {EXPECTED[state]} (lifespan)"
    assert cycle.state is state, "a refused message must not move the cycle"
    assert cycle.failure == failure
    assert cycle.refused is info.value


def test_misuse_text_verbatim() -> None:
    with pytest.raises(ASGIProtocolError) as info:
        cycle_in(S.STARTUP).app_sent({"type": "lifespan.shutdown.complete"})
    assert str(info.value) == (
        "lifespan.shutdown.complete not allowed in state STARTUP; "
        "expected lifespan.startup.complete or lifespan.startup.failed (lifespan)"
    )
    with pytest.raises(ASGIProtocolError) as info:
        cycle_in(S.STARTED).app_sent({"type": "lifespan.startup.complete"})
    assert str(info.value) == (
        "lifespan.startup.complete not allowed in state STARTED; expected no further message (lifespan)"
    )


@pytest.mark.parametrize(
    ("message", "shown"),
    [(None, "None"), ("lifespan.startup.complete", "'lifespan.startup.complete'"), ({"typ": "x"}, "{'typ': 'x'}")],
)
def test_a_message_without_a_type_is_refused(message: Any, shown: str) -> None:
    cycle = cycle_in(S.STARTUP)
    with pytest.raises(ASGIProtocolError) as info:
        cycle.app_sent(message)
    assert str(info.value) == f"ASGI message must be a dict with a 'type' key, got {shown} (lifespan)"
    assert cycle.state is S.STARTUP
    assert cycle.refused is info.value


@pytest.mark.parametrize(
    ("state", "mtype"), [(S.STARTUP, "lifespan.startup.failed"), (S.SHUTDOWN, "lifespan.shutdown.failed")]
)
def test_failed_keeps_its_message_or_its_type(state: asgi_lifespan.State, mtype: str) -> None:
    cycle = cycle_in(state)
    cycle.app_sent({"type": mtype, "message": "database unreachable"})
    assert (cycle.state, cycle.failure) == (S.FAILED, "database unreachable")
    for message in ({"type": mtype}, {"type": mtype, "message": ""}):
        cycle = cycle_in(state)
        cycle.app_sent(message)
        assert (cycle.state, cycle.failure) == (S.FAILED, mtype)


def test_failed_with_a_message_that_is_not_a_str_is_refused() -> None:
    cycle = cycle_in(S.STARTUP)
    with pytest.raises(ASGIProtocolError) as info:
        cycle.app_sent({"type": "lifespan.startup.failed", "message": 42})
    assert str(info.value) == "lifespan.startup.failed 'message' must be a str, got int 42 (lifespan)"
    assert (cycle.state, cycle.failure) == (S.STARTUP, None)


# -- the server's messages ------------------------------------------------------------------

SERVER_PAIRS = list(itertools.product(list(S), SERVER_MESSAGES))


@pytest.mark.parametrize(("state", "kind"), SERVER_PAIRS, ids=[f"{s.value}-{k}" for s, k in SERVER_PAIRS])
def test_server_message(state: asgi_lifespan.State, kind: str) -> None:
    cycle = cycle_in(state)
    send = cycle.send_startup if kind == "lifespan.startup" else cycle.send_shutdown
    target = SPEC_SERVER.get((state, kind))
    if target is not None:
        assert send() == {"type": kind}
        assert cycle.state is target
        return
    with pytest.raises(RuntimeError) as info:
        send()
    assert not isinstance(info.value, ASGIProtocolError), "the server's own bug is not the app's misuse"
    assert str(info.value) == f"{kind} is not a move of lifespan state {state.value}"
    assert cycle.state is state


# -- the app's end ------------------------------------------------------------------------

END_PAIRS = list(itertools.product(list(S), APP_ENDS))


@pytest.mark.parametrize(("state", "kind"), END_PAIRS, ids=[f"{s.value}-{k}" for s, k in END_PAIRS])
def test_app_end(state: asgi_lifespan.State, kind: str) -> None:
    cycle = cycle_in(state)
    if kind == "raised#misuse":
        with pytest.raises(ASGIProtocolError):
            cycle.app_sent({"type": BOGUS})
    failure = cycle.failure
    error = None if kind == "returned" else ERROR
    target = SPEC_ENDS.get((state, kind))
    if target is None:
        with pytest.raises(RuntimeError) as info:
            cycle.app_ended(error)
        assert str(info.value) == f"{kind} is not a move of lifespan state {state.value}"
        assert cycle.state is state
        return
    assert cycle.app_ended(error) is target
    assert cycle.state is target
    if error is not None and target in (S.FAILED, S.UNSUPPORTED):
        assert cycle.failure == ERROR, "the exception names the failure"
    else:
        assert cycle.failure == failure

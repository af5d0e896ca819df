"""The shape shared by the ASGI cycle machines: one transition table per machine.

A table maps ``(state, message kind) -> next state``. A message kind is the message's
``type``, except where the table needs to tell two variants apart (a final body part from
one with ``more_body``): :func:`misuse` turns a missing entry into the exact error text.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from ..errors import ASGIProtocolError

Table = Mapping[tuple[Any, str], Any]


def allowed(table: Table, state: enum.Enum) -> list[str]:
    kinds: list[str] = []
    for (from_state, kind), _ in table.items():
        name = kind.split("#", 1)[0]
        if from_state is state and name not in kinds:
            kinds.append(name)
    return kinds


def join_or(names: list[str]) -> str:
    if not names:
        return "no further message"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def misuse(table: Table, state: enum.Enum, message_type: object, where: str) -> ASGIProtocolError:
    """``websocket.send not allowed in state CONNECTING; expected websocket.accept,
    websocket.close or websocket.http.response.start (GET /ws/ from 127.0.0.1:53122)``"""
    return ASGIProtocolError(
        f"{message_type} not allowed in state {state.value}; expected {join_or(allowed(table, state))} ({where})"
    )


def not_a_message(message: object, where: str) -> ASGIProtocolError:
    """What ``send()`` raises for something that is not an ASGI message (the callers keep
    the ``message["type"]`` lookup inline: it is on every message's path)."""
    return ASGIProtocolError(f"ASGI message must be a dict with a 'type' key, got {message!r:.80} ({where})")


def bad_field(message_type: str, key: str, expected: str, value: object, where: str) -> ASGIProtocolError:
    return ASGIProtocolError(
        f"{message_type} '{key}' must be {expected}, got {type(value).__name__} {value!r:.80} ({where})"
    )


def check_headers(message_type: str, headers: object, cycle: Any) -> list[tuple[bytes, bytes]]:
    """ASGI headers: an iterable of [name, value] byte-string pairs. ``cycle.where`` names
    the connection in the error; it is only read when there is one."""
    if type(headers) is list:  # the common case, checked without copying
        for item in headers:
            if type(item) is not tuple or len(item) != 2 or type(item[0]) is not bytes or type(item[1]) is not bytes:
                break
        else:
            return headers
    result: list[tuple[bytes, bytes]] = []
    where: str = cycle.where
    try:
        items = list(headers)  # type: ignore[call-overload]
    except TypeError:
        raise bad_field(message_type, "headers", "an iterable of [name, value] pairs", headers, where) from None
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise bad_field(message_type, "headers", "[name, value] pairs", item, where) from None
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise bad_field(message_type, "headers", "pairs of bytes", item, where)
        result.append((name, value))
    return result

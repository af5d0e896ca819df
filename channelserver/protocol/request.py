"""Reading a request head: from h11's ``Request`` event, or directly when it is plain.

h11 parses requests. One kind of request is read here without it, because it is most of
what a server sees and h11's general machinery costs more than the rest of the request:
a read that is exactly one whole request head, with no body, nothing after it, and none
of the headers that ask h11 for more than parsing. :func:`read_plain_head` reads that kind
with h11's own grammar (its ABNF regexes) and h11's rules for the fields it checks, and
returns ``None`` for anything else, which then goes to h11 as it always did:

- not exactly one whole head (a partial head, a body or a pipelined request after it),
  bare ``LF`` line ends, obsolete line folding, a leading empty line, anything h11's
  grammar refuses: h11 reads it and raises its own error;
- ``transfer-encoding``, a content-length other than zero or given twice: the body is
  h11's to read; ``upgrade``, but for a plain WebSocket handshake (``GET``, one
  ``upgrade: websocket``, ``connection: upgrade``), which is handed over as an
  :class:`UpgradeRequest` with the fields h11's event would have;
- a missing (HTTP/1.1) or repeated ``host``: h11's error answers it;
- a control character in a header value: h11's grammar lets it through; the connection
  refuses the head before h11 reads it (``headcheck.HeadCheck``), so no app ever
  sees one.

A plain head has no body, so the request ends with it: ``expect: 100-continue`` asks for
nothing, and a ``CONNECT`` proposes no switch that h11 would act on; both are read here.

``tests/unit/protocol/test_request.py`` holds the proof: for any bytes, an
:class:`~.http11.HTTPConnection` gives the same actions (scope, messages, answers, log
lines) with this reader as with h11 alone.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, NamedTuple

import h11

__all__ = ["REQUEST_LINE", "Head", "UpgradeRequest", "h11_internals", "read_head", "read_plain_head"]

#: The pieces of h11's private modules this reader uses, and what each must be. h11 is
#: pinned below its next minor version (pyproject.toml); this check makes a mismatch one
#: clear error at import time instead of a subtle difference in what is accepted.
H11_INTERNALS: dict[str, dict[str, type]] = {
    "h11._abnf": {"header_field": str, "request_line": str},
    "h11._headers": {"CONTENT_LENGTH_MAX_DIGITS": int},
}


def h11_internals(load: Any = importlib.import_module) -> dict[str, Any]:
    """h11's grammar and limits, so that this reader accepts exactly the heads h11's
    reader accepts; ImportError naming what is missing if this h11 lacks them."""
    found: dict[str, Any] = {}
    for module, names in H11_INTERNALS.items():
        try:
            loaded = load(module)
        except ImportError:
            loaded = None
        for name, kind in names.items():
            value = getattr(loaded, name, None)
            if not isinstance(value, kind):
                raise ImportError(
                    f"channelserver reads request heads with h11's own grammar and needs {module}.{name} "
                    f"(a {kind.__name__}), which h11 {getattr(h11, '__version__', '?')} does not have; "
                    "install the h11 version pyproject.toml names (0.16.x)"
                )
            found[name] = value
    return found


_h11 = h11_internals()
header_field: str = _h11["header_field"]
request_line: str = _h11["request_line"]
CONTENT_LENGTH_MAX_DIGITS: int = _h11["CONTENT_LENGTH_MAX_DIGITS"]

#: h11's request line, for a first line read before the rest of its head.
REQUEST_LINE = re.compile(request_line.encode("ascii")).fullmatch


class Head(NamedTuple):
    """What one pass over a request head tells."""

    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]  #: the ASGI header list, names lowercased
    websocket: bool  #: an upgrade to WebSocket
    size: int  #: bytes of the head, as sent
    content_length: bytes | None
    chunked: bool
    close: bool  #: ``connection: close``
    #: The ``upgrade`` header of a request h11 read (an upgrade other than a plain
    #: WebSocket handshake is always h11's: h2c, say), else None.
    upgrade: bytes | None = None


class UpgradeRequest(NamedTuple):
    """A WebSocket handshake request read by :func:`read_plain_head`: the fields of h11's
    ``Request`` the WebSocket machine reads."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]  #: names lowercased, as h11's
    http_version: bytes


#: The request headers read_head looks at.
_FRAMING = {b"content-length": 1, b"transfer-encoding": 2, b"upgrade": 3, b"connection": 4}


def _tokens(value: bytes) -> list[bytes]:
    """The tokens of a ``connection`` header, as h11 splits them."""
    return [token.strip() for token in value.lower().split(b",")]


def read_head(request: h11.Request) -> Head:
    """The head of a request h11 parsed."""
    full = getattr(request.headers, "_full_items", None)  # (raw name, name, value), no copy
    if full is None:
        full = [(name, name, value) for name, value in request.headers]
    items: list[tuple[bytes, bytes]] = []
    append = items.append
    size = len(request.method) + len(request.target) + 12
    upgrade = connection = chunked = close = False
    upgrade_value: bytes | None = None
    content_length: bytes | None = None
    framing = _FRAMING.get
    for _, name, value in full:
        append((name, value))
        size += len(name) + len(value) + 4
        kind = framing(name)
        if kind is None:
            continue
        if kind == 1:
            content_length = value
        elif kind == 2:
            chunked = True
        elif kind == 3:
            upgrade = value.lower() == b"websocket"
            upgrade_value = value
        else:
            tokens = _tokens(value)
            connection = connection or b"upgrade" in tokens
            close = close or b"close" in tokens
    return Head(
        request.method,
        request.target,
        request.http_version,
        items,
        upgrade and connection,
        size,
        content_length,
        chunked,
        close,
        upgrade_value,
    )


#: One whole head and nothing after it: h11's request line and header fields, each line
#: ended by CRLF, then the empty line. The fields' classes exclude CR and LF, so a match
#: has no bare LF and ends at the head's first empty line, as h11's reader does.
#: h11's header field, but with no control character in the value (h11's grammar lets all
#: but NUL, CR and LF through): such a head is refused, on the way to h11.
_STRICT_FIELD = header_field.replace(r"[^\x00\s]", r"[^\x00-\x20\x7f]")
if header_field == _STRICT_FIELD:  # pragma: no cover - h11's grammar changed
    raise ImportError("h11's header field grammar changed: update request._STRICT_FIELD")
_WHOLE_HEAD = re.compile(rf"{request_line}\r\n(?P<fields>(?:{_STRICT_FIELD}\r\n)*)\r\n".encode("ascii"))
#: Name and value (with its trailing OWS, stripped after) of each field of a matched head.
#: Greedy and with no lazy part, so linear however long a run of whitespace is.
_FIELD = re.compile(rb"([^:]+):[ \t]*([^\r]*)\r\n")

_LENGTH, _H11, _CONNECTION, _HOST, _UPGRADE = 1, 2, 3, 4, 5
#: The fields read_plain_head looks at; _H11: the request is h11's to read.
_NOTED = {
    b"content-length": _LENGTH,
    b"transfer-encoding": _H11,
    b"upgrade": _UPGRADE,
    b"connection": _CONNECTION,
    b"host": _HOST,
}


def read_plain_head(data: bytes) -> Head | None:
    """``data`` read as one whole bodiless request head, or None: h11 reads it."""
    match = _WHOLE_HEAD.fullmatch(data)
    if match is None:
        return None
    method, target, version, fields = match.group("method", "target", "http_version", "fields")
    headers: list[tuple[bytes, bytes]] = []
    append = headers.append
    size = len(method) + len(target) + 12
    hosts = 0
    close = connection_upgrade = False
    upgrade: bytes | None = None
    length: bytes | None = None
    noted = _NOTED.get
    for name, value in _FIELD.findall(fields):
        name = name.lower()
        value = value.rstrip(b" \t")
        append((name, value))
        size += len(name) + len(value) + 4
        kind = noted(name)
        if kind is None:
            continue
        if kind == _LENGTH:
            # h11 merges repeated lengths and reads bodies: only one zero is read here.
            if length is not None or not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS or int(value):
                return None
            length = value
        elif kind == _CONNECTION:
            tokens = _tokens(value)
            close = close or b"close" in tokens
            connection_upgrade = connection_upgrade or b"upgrade" in tokens
        elif kind == _HOST:
            hosts += 1
        elif kind == _UPGRADE and upgrade is None:
            upgrade = value
        else:
            return None
    # h11's Request: HTTP/1.1 needs exactly one host, any version at most one.
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        return None
    if upgrade is not None:
        # h11 proposes a switch for any upgrade; only a WebSocket handshake is read here.
        if method != b"GET" or upgrade.lower() != b"websocket" or not connection_upgrade:
            return None
        return Head(method, target, version, headers, True, size, length, False, close)
    return Head(method, target, version, headers, False, size, length, False, close)

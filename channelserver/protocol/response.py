"""Writing an HTTP/1.1 response: its head, then its body in the framing the head chose.

h11 parses the requests; responses are serialized here, once per head, following the
rules h11's ``Connection.send`` applies for a server (RFC 9112 sections 6 and 9), so
the bytes are the ones h11 would write:

- header names must be tokens and values field-values (no NUL, CR, LF, no leading or
  trailing whitespace); ``content-length`` must be digits (repeated values must agree),
  ``transfer-encoding`` may only be ``chunked``;
- framing: 204, 304 and responses to HEAD have no body; ``transfer-encoding: chunked``
  beats ``content-length``; with neither, an HTTP/1.1 client gets chunked encoding and an
  HTTP/1.0 client a body that ends when the connection closes;
- keep-alive ends when the request or the response says ``connection: close``, the
  client speaks HTTP/1.0, or the body is delimited by the close; the head then carries
  ``Connection: close``;
- the body must match a declared ``content-length``: more is refused at once, less when
  the response ends.

A violation raises :class:`ResponseError` with h11's wording; the caller turns it into
the ASGI error naming the message.
"""

from __future__ import annotations

import re
from http import HTTPStatus

__all__ = ["FIELD_VALUE", "PHRASES", "REASONS", "TOKEN", "BodyWriter", "ResponseError", "plain_response", "write_head"]

#: h11's header name (a token) and header value (a field value), as it checks them on send.
TOKEN = _TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+").fullmatch
FIELD_VALUE = _FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?").fullmatch

#: Header names already validated, mapped to their lowercase form, and status lines
#: already written (both bounded).
_NAMES: dict[bytes, bytes] = {}
_NAMES_MAX = 512
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
#: Values already validated of headers that repeat from response to response and carry
#: nothing private (bounded; cookies, locations and the like are validated every time).
_VALUES: set[bytes] = set()
_REPEATING = frozenset(
    {
        b"content-type",
        b"cache-control",
        b"vary",
        b"content-encoding",
        b"content-language",
        b"x-content-type-options",
        b"x-frame-options",
        b"referrer-policy",
        b"cross-origin-opener-policy",
        b"access-control-allow-origin",
    }
)
#: The headers that decide framing and keep-alive.
_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION = 1, 2, 3
_SPECIAL = {b"content-length": _CONTENT_LENGTH, b"transfer-encoding": _TRANSFER_ENCODING, b"connection": _CONNECTION}


class ResponseError(Exception):
    """The app's response cannot be written as it stands."""


class BodyWriter:
    """Frames the body of one response. ``length``: bytes still owed for a declared
    ``content-length`` (None: chunked, or delimited by the close)."""

    __slots__ = ("chunked", "length")

    def __init__(self, length: int | None, chunked: bool) -> None:
        self.length = length
        self.chunked = chunked

    def data(self, body: bytes) -> bytes:
        """A body part with more to come. Raises, changing nothing, if it is more than the
        declared length leaves room for."""
        length = self.length
        if length is not None:
            if len(body) > length:
                raise ResponseError("Too much data for declared Content-Length")
            self.length = length - len(body)
            return body
        if self.chunked:
            return b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        return body

    def last(self, body: bytes) -> bytes:
        """The final body part and the end of the body. Raises, changing nothing, if the
        body would not end at the declared length."""
        length = self.length
        if length is not None:
            if len(body) != length:
                if len(body) > length:
                    raise ResponseError("Too much data for declared Content-Length")
                raise ResponseError("Too little data for declared Content-Length")
            self.length = 0
            return body
        if self.chunked:
            return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        return body


def _name(raw: bytes) -> bytes:
    name = _NAMES.get(raw)
    if name is None:
        if _TOKEN(raw) is None:
            raise ResponseError(f"Illegal header name {raw!r}")
        name = raw.lower()
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[raw] = name
    return name


def write_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    method: bytes,
    http10: bool,
    keep_alive: bool,
    server_headers: bytes = b"",
    whole_length: int | None = None,
) -> tuple[bytes, BodyWriter | None, bool]:
    """Serialize a final response (``status`` 200-999) to a request with ``method``.

    ``keep_alive``: the request allows it. ``server_headers``: already serialized header
    lines (``server``, ``date``) that go right after the status line. ``whole_length``:
    the length of the whole body when it is already known; it becomes the
    ``content-length`` if the app set neither that nor ``transfer-encoding``. Returns the head,
    the body writer (None: the response has no body, as for HEAD, 204 and 304) and
    whether the connection stays open after the response."""
    status_line = _STATUS_LINES.get((status, reason))
    if status_line is None:
        status_line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_STATUS_LINES) < _NAMES_MAX:
            _STATUS_LINES[status, reason] = status_line
    lines = [status_line, server_headers]
    append = lines.append
    content_length: bytes | None = None
    chunked = False
    connection: list[bytes] | None = None
    names = _NAMES.get
    special = _SPECIAL.get
    values = _VALUES
    for raw, value in headers:
        name = names(raw) or _name(raw)
        if value.isdigit() and len(value) <= 20:
            pass  # digits are a valid field value (content-length, mostly)
        elif value not in values:
            if _FIELD_VALUE(value) is None:
                raise ResponseError(f"Illegal header value {value!r}")
            if name in _REPEATING and len(values) < _NAMES_MAX and len(value) <= 256:
                values.add(value)
        kind = special(name)
        if kind is None:
            append(b"%s: %s\r\n" % (raw, value))
            continue
        if kind == _CONTENT_LENGTH:
            if b"," in value:
                values = {part.strip() for part in value.split(b",")}
                if len(values) != 1:
                    raise ResponseError("conflicting Content-Length headers")
                value = values.pop()
            else:
                value = value.strip()
            if not value.isdigit() or len(value) > 20:  # bytes.isdigit: ASCII 0-9 only
                raise ResponseError("bad Content-Length")
            if content_length is not None:
                if value != content_length:
                    raise ResponseError("conflicting Content-Length headers")
                continue  # an equal repeat is written once
            content_length = value
        elif kind == _TRANSFER_ENCODING:
            if chunked:
                raise ResponseError("multiple Transfer-Encoding headers")
            if value.lower() != b"chunked":
                raise ResponseError("Only Transfer-Encoding: chunked is supported")
            chunked = True
            value = b"chunked"
        else:
            if connection is None:
                connection = []
            connection.extend(token for token in (part.strip() for part in value.lower().split(b",")) if token)
        append(b"%s: %s\r\n" % (raw, value))

    # Framing (RFC 9112 6.3). A HEAD response carries the headers a GET would get.
    bodiless = status == 204 or status == 304 or (method == b"CONNECT" and status < 300)
    if whole_length is not None and content_length is None and not chunked and not bodiless:
        content_length = b"%d" % whole_length
        append(b"content-length: %s\r\n" % content_length)
    if not bodiless and (chunked or content_length is None):
        if chunked:  # rewritten below; transfer-encoding beats content-length
            lines = [
                line
                for line in lines
                if line[:15].lower() != b"content-length:" and line[:18].lower() != b"transfer-encoding:"
            ]
            append = lines.append
            content_length = None
        if http10:
            chunked = False
            if method != b"HEAD":
                keep_alive = False  # the body ends when the connection closes
        else:
            chunked = True
            append(b"Transfer-Encoding: chunked\r\n")
    else:  # framed by content-length, or (204, 304, CONNECT 2xx) no body whatever the headers say
        chunked = False
    if not keep_alive:  # the request or the framing ends the connection: say so
        if connection is not None:
            lines = [line for line in lines if line[:11].lower() != b"connection:"]
            append = lines.append
        tokens = {token for token in connection or () if token != b"keep-alive"}
        tokens.add(b"close")
        for token in sorted(tokens):
            append(b"Connection: %s\r\n" % token)
    elif connection is not None and b"close" in connection:
        keep_alive = False  # the app said so itself
    append(b"\r\n")
    head = b"".join(lines)
    if bodiless or method == b"HEAD":
        return head, BodyWriter(0, False) if method != b"HEAD" else None, keep_alive
    return head, BodyWriter(int(content_length) if content_length is not None else None, chunked), keep_alive


#: Reason phrases by status, as text and as the bytes of a status line.
PHRASES = {status.value: status.phrase for status in HTTPStatus}
REASONS = {status: phrase.encode() for status, phrase in PHRASES.items()}


def plain_response(status: int, text: str) -> bytes:
    """A short text answer from the server itself; the connection closes after it."""
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
    head, _, _ = write_head(status, REASONS.get(status, b""), headers, method=b"GET", http10=False, keep_alive=False)
    return head + body

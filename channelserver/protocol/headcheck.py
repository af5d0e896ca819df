"""Request heads refused before h11 reads them, as soon as the bytes say so.

h11 reads request heads (or :func:`.request.read_plain_head` does, with h11's grammar),
but lets through a few things RFC 9112 and RFC 9110 do not, and waits for the end of a
head that can never become one. :class:`HeadCheck` looks at each read of a head first
and names what is wrong; :func:`error_class` is what the 400 answer says of an error,
without the request bytes its message may quote.
"""

from __future__ import annotations

import re

import h11

from .request import REQUEST_LINE

__all__ = ["BARE_CR", "CONTROL", "ERROR_CLASSES", "OBS_FOLD", "HeadCheck", "error_class"]

#: What no request head h11 reads can hold: a CR not followed by LF (no line ends there,
#: and h11 waits for one), or a control character, which h11's grammar lets through in
#: header values (RFC 9110 section 5.5 does not: visible characters, obs-text, spaces and
#: tabs) and refuses anywhere else.
#: (Two searches: one with both alternatives would cost twice as much.)
_BARE_CR = re.compile(rb"\r[^\n]").search
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]").search

OBS_FOLD = "obsolete line folding in headers"
BARE_CR = "CR without LF in request head"
CONTROL = "control character in request head"
#: What the answer to a request that could not be read says of the error: its class, from
#: h11's messages and ours. Several of those messages go on to quote the request bytes that
#: broke the rule; the quote goes to the log line only, never back to the client. Any other
#: message is answered as "malformed request".
ERROR_CLASSES = (
    "illegal request line",
    "illegal header line",
    "illegal chunk header",
    "malformed chunk footer",
    "no request line received",
    "continuation line at start of headers",
    "Missing mandatory Host: header",
    "Found multiple Host: headers",
    "bad Content-Length",
    "conflicting Content-Length headers",
    "multiple Transfer-Encoding headers",
    "Only Transfer-Encoding: chunked is supported",
    "Receive buffer too long",
    OBS_FOLD,
    BARE_CR,
    CONTROL,
)


def error_class(message: str) -> str:
    """The class of a request error, without the request bytes the message may quote."""
    for name in ERROR_CLASSES:
        if message.startswith(name):
            return name
    return "malformed request"


class HeadCheck:
    """The checks of one connection's request heads. ``tail`` holds the last bytes of a
    head not yet complete (to find what is split across reads) and ``line_read`` whether
    its first line was checked; :meth:`reset` starts afresh with the next head."""

    __slots__ = ("line_read", "tail")

    def __init__(self) -> None:
        self.tail = b""
        self.line_read = False

    def reset(self) -> None:
        self.tail = b""
        self.line_read = False

    def error(self, data: bytes, h11conn: h11.Connection | None) -> h11.RemoteProtocolError | None:
        """What makes the request head that ``data`` starts or goes on with one that is
        refused before h11 reads it, as soon as the bytes say so:

        - obsolete line folding (RFC 9112 section 5.2): h11 would unfold it;
        - a control character (but tab): h11 lets them through in header values, to the app.

        And, while the head is not complete (h11 waits for its end, so a client that sends
        no more would wait for a timeout), what can never become a head h11 reads:

        - a CR that is not the first half of a CRLF, as in a head with CR-only line ends;
        - a first line that is not a request line, as an HTTP/0.9 ``GET /``.

        A head still arriving, split anywhere, passes: a CR at the end of a read may be
        followed by its LF. The last bytes of a head not yet complete are kept to find what
        is split across reads. Only the head is searched (up to its first empty line, as h11
        ends it): a scan of a large body after it would cost more than the head."""
        probe = self.tail + data if self.tail else data
        # The head ends at its first empty line, as h11 ends it: LF, then LF or CRLF.
        end = probe.find(b"\n\r\n")
        lf = probe.find(b"\n\n", 0, end + 2 if end >= 0 else len(probe))
        if lf >= 0:
            end = lf - 1
        if end < 0:
            head = probe
            self.tail = probe[-3:]
        else:
            head = probe[: end + 3]  # never the body after it, which may be large
            self.tail = b""
        if b"\n " in head or b"\n\t" in head:  # after CRLF or a bare LF, as h11 splits lines
            return h11.RemoteProtocolError(OBS_FOLD, error_status_hint=400)
        refused = _CONTROL(head)
        if refused is None and end < 0:
            refused = _BARE_CR(head)
            if refused is None and not self.line_read:
                return self._request_line_error(data, h11conn)
        if refused is None:
            return None
        at = refused.start()
        start = head.rfind(b"\n", 0, at) + 1
        stop = head.find(b"\n", at)
        line = head[start : stop if stop >= 0 else len(head)]  # for the log line
        if line.endswith(b"\r"):
            line = line[:-1]
        line = line[:200]
        what = BARE_CR if head[at] == 13 else CONTROL
        return h11.RemoteProtocolError(f"{what}: {line!r}", error_status_hint=400)

    def _request_line_error(self, data: bytes, h11conn: h11.Connection | None) -> h11.RemoteProtocolError | None:
        """The first line of a head not yet complete, once it ends in ``data``, must be a
        request line."""
        newline = data.find(b"\n")
        if newline < 0:
            return None
        self.line_read = True
        line = data[:newline]
        buffered = h11conn.trailing_data[0] if h11conn is not None else b""
        if buffered:  # the line began in an earlier read, which h11 holds
            line = buffered + line
        if line.endswith(b"\r"):
            line = line[:-1]
        # An empty line is h11's to refuse ("no request line received"), at once.
        if line and REQUEST_LINE(line) is None:
            return h11.RemoteProtocolError(f"illegal request line: {line!r}", error_status_hint=400)
        return None

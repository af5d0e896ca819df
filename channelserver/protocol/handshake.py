"""The WebSocket opening handshake, read and answered without a second HTTP parser.

wsproto's ``H11Handshake`` reads an upgrade request by writing it out again with an h11
client and parsing it with an h11 server of its own, and writes its answer through that
server: two more h11 connections for every handshake, after the connection's own h11
has read the request. This module does what wsproto does with the request the
connection already read:

- :func:`read_offer` makes wsproto's checks of the request (RFC 6455 section 4.2.1:
  ``GET``, ``Host``, ``Upgrade: websocket``, ``Connection: upgrade``, version 13, a key)
  and reads what the client offers (subprotocols, extensions);
- :func:`accept_response` writes the ``101 Switching Protocols`` wsproto writes for an
  ``AcceptConnection``: the accept token, the chosen subprotocol, the extensions agreed
  by wsproto's own ``server_extensions_handshake``, then the extra headers, serialized as
  h11 serializes an informational response.

:func:`check_version` and :func:`check_key` are what wsproto leaves unchecked of RFC
6455: the request is HTTP/1.1, with one well-formed key; they raise wsproto's
``RemoteProtocolError`` so that the refusal is written as wsproto writes its own.

:func:`read_offer` and :func:`accept_response` each return None for what they do not
handle exactly as wsproto does (a request wsproto refuses, or would read differently; an
extra header h11 would refuse or rewrite): the caller then hands that handshake to
wsproto, which answers as it always did. Every refusal is written by wsproto. ``tests/unit/protocol/test_handshake.py`` proves the same offer and
the same bytes as wsproto for any request and any accept.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

import h11
from wsproto.events import RejectConnection
from wsproto.extensions import Extension
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import RemoteProtocolError, generate_accept_token, split_comma_header

from .request import UpgradeRequest
from .response import FIELD_VALUE, TOKEN

__all__ = ["Offer", "accept_response", "check_key", "check_version", "read_offer"]


class Offer(NamedTuple):
    """What a valid handshake request offers."""

    key: bytes
    subprotocols: list[str]
    extensions: list[str]


def read_offer(request: h11.Request | UpgradeRequest) -> Offer | None:
    """The offer of a handshake wsproto accepts, read as wsproto reads it; None for any
    other request (wsproto reads it, and refuses it or not, itself)."""
    if request.method != b"GET":
        return None
    connection: list[str] | None = None
    extensions: list[str] = []
    subprotocols: list[str] = []
    host = key = version = None
    upgrade = b""
    try:
        for name, value in request.headers:  # names come lowercased from h11
            if name == b"connection":
                connection = split_comma_header(value)
            elif name == b"host":
                host = value
            elif name == b"sec-websocket-extensions":
                extensions.extend(split_comma_header(value))
            elif name == b"sec-websocket-key":
                if key is not None:
                    return None  # wsproto keeps the last; refused after it (see websocket.py)
                key = value
            elif name == b"sec-websocket-protocol":
                subprotocols.extend(split_comma_header(value))
            elif name == b"sec-websocket-version":
                version = value
            elif name == b"upgrade":
                upgrade = value
            elif name == b"content-length" or name == b"transfer-encoding":
                return None  # a body: wsproto's own h11 would wait for it
    except UnicodeError:
        return None  # wsproto's split_comma_header fails the same way, in wsproto
    if (
        connection is None
        or not any(token.lower() == "upgrade" for token in connection)
        or version != b"13"
        or key is None
        or upgrade.lower() != b"websocket"
        or host is None
    ):
        return None
    try:
        host.decode("idna")  # as wsproto does; it fails there too
    except UnicodeError:
        return None
    return Offer(key, subprotocols, extensions)


def accept_response(
    offer: Offer,
    subprotocol: str | None,
    extensions: list[Extension],
    extra_headers: list[tuple[bytes, bytes]],
) -> bytes | None:
    """wsproto's ``101 Switching Protocols`` for ``offer``; None when an extra header is
    one h11 would refuse or rewrite (framing headers, names that are no token, values
    that are no field value): wsproto then writes (or refuses) it itself. ``subprotocol``
    must be one of ``offer.subprotocols`` (the caller checked). ``extensions`` are fresh
    server extensions; those the client offered are agreed on here, as wsproto does."""
    head = [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        generate_accept_token(offer.key),
        b"\r\n",
    ]
    if subprotocol is not None:
        if not subprotocol.isascii():
            return None
        head += [b"Sec-WebSocket-Protocol: ", subprotocol.encode("ascii"), b"\r\n"]
    if extensions:
        accepts = server_extensions_handshake(offer.extensions, extensions)
        if accepts:
            if FIELD_VALUE(accepts) is None:
                return None
            head += [b"Sec-WebSocket-Extensions: ", accepts, b"\r\n"]
    for name, value in extra_headers:
        if TOKEN(name) is None or FIELD_VALUE(value) is None:
            return None
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            return None
        head += [name, b": ", value, b"\r\n"]
    head.append(b"\r\n")
    return b"".join(head)


def check_version(request: h11.Request | UpgradeRequest) -> None:
    """RFC 6455 section 4.2.1, first of all: the request is HTTP/1.1 (h11 reads no later
    version). wsproto does not check it."""
    if request.http_version != b"1.1":
        version = request.http_version.decode("ascii", "replace")
        raise RemoteProtocolError(
            f"a WebSocket handshake must be HTTP/1.1, not HTTP/{version}", event_hint=RejectConnection()
        )


def check_key(request: h11.Request | UpgradeRequest) -> None:
    """What wsproto leaves unchecked of the key: there is one Sec-WebSocket-Key (RFC 6455
    section 11.3.1: it "MUST NOT appear more than once"; wsproto reads the last of
    several), the base64 of 16 bytes (wsproto only checks that it is there)."""
    keys = [value for name, value in request.headers if name == b"sec-websocket-key"]
    if len(keys) > 1:
        raise RemoteProtocolError(
            f"Sec-WebSocket-Key is given {len(keys)} times; a handshake has one", event_hint=RejectConnection()
        )
    for value in keys:
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 16:
            raise RemoteProtocolError("Sec-WebSocket-Key is not the base64 of 16 bytes", event_hint=RejectConnection())

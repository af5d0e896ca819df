"""permessage-deflate (RFC 7692) with the memory of a socket bounded.

wsproto's :class:`PerMessageDeflate` keeps a zlib context per direction for the life of a
connection, with zlib's default 32 KiB window and memory level 8: about 300 KiB for a
socket that has sent and received one message. A subscription server holds thousands of
sockets that receive a small message now and then; :class:`Deflate` changes only how
much memory the contexts take and how long they live, never the bytes on the wire's
meaning:

* the compressor uses ``window_bits`` and ``mem_level`` (a window smaller than the
  negotiated one is always valid: the peer's decompressor reads any stream made with
  a window up to its own);
* when the client offers ``client_max_window_bits`` it is answered with at most
  ``window_bits``, which bounds the decompressor too;
* ``keep=False``: no context outlives a message. The response says
  ``server_no_context_takeover`` (each message is compressed on its own, which is what
  this compressor does) and ``client_no_context_takeover`` (RFC 7692 section 7.1.1.2 lets
  a server ask it), so the client's messages can be decompressed on their own too;
* ``keep=True``: contexts are taken over from message to message, as negotiated;
  :meth:`drop_idle` drops the compressor of a connection that sent nothing since the
  last call (the next message starts a fresh stream, which the peer reads with the
  window it has).

Contexts are made on first use, as wsproto does.
"""

from __future__ import annotations

import zlib
from typing import Any

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import Opcode, RsvBits

__all__ = ["Deflate"]

_COMPRESSIBLE = (Opcode.TEXT, Opcode.BINARY)
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION)


class Deflate(PerMessageDeflate):
    def __init__(self, window_bits: int = 12, mem_level: int = 5, keep: bool = False) -> None:
        super().__init__()
        self.window_bits = window_bits
        self.mem_level = mem_level
        self.keep = keep
        #: Messages sent since the last drop_idle().
        self.sent = 0

    def accept(self, offer: str) -> bool | str | None:
        client_bits, server_bits = self._parse_params(offer)  # sets the no_context_takeover flags offered
        if not self.keep:
            self.client_no_context_takeover = True
            self.server_no_context_takeover = True
        parameters = []
        if self.client_no_context_takeover:
            parameters.append("client_no_context_takeover")
        if self.server_no_context_takeover:
            parameters.append("server_no_context_takeover")
        try:
            if client_bits is not None:  # offered, with or without a value: ours bounds it
                self.client_max_window_bits = bits = min(client_bits, self.window_bits)
                parameters.append(f"client_max_window_bits={bits}")
            if server_bits is not None:
                self.server_max_window_bits = server_bits
                parameters.append(f"server_max_window_bits={server_bits}")
        except ValueError:  # a window outside 9-15: declined, as wsproto does
            return None
        self._enabled = True
        return "; ".join(parameters)

    def frame_outbound(self, proto: Any, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool) -> tuple[RsvBits, bytes]:
        if self._compressor is None and opcode in _COMPRESSIBLE:
            bits = min(self.server_max_window_bits, self.window_bits)
            self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, self.mem_level)
        if fin and opcode in _DATA:
            self.sent += 1
        return super().frame_outbound(proto, opcode, rsv, data, fin)

    def drop_idle(self) -> bool:
        """Drop the compressor if nothing was sent since the last call; True if one was."""
        dropped = self.sent == 0 and self._compressor is not None
        if dropped:
            self._compressor = None
        self.sent = 0
        return dropped

    @property
    def contexts(self) -> int:
        """zlib contexts held now (0 to 2)."""
        return (self._compressor is not None) + (self._decompressor is not None)

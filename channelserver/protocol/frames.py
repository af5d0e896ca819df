"""Plain WebSocket frames read and written without wsproto, where that is proven equal.

wsproto reads and writes every frame; its general machinery (a buffer, a generator, an
incremental UTF-8 decoder, events) costs more than the message itself for what clients
send nearly always: one whole, final, masked text or binary frame per message. While no
extension is in use, :class:`FrameReader` reads that kind of frame itself and hands
every other byte to wsproto, at frame boundaries, so that wsproto sees exactly the frames
it would have seen; :func:`plain_frame` writes a whole message as one final unmasked
frame (RFC 6455 5.2), the bytes wsproto writes for it.

A frame is read here only when all of these hold; any other frame goes to wsproto, which
reads it (and names the error, if it is one) as it always did:

- its first byte is FIN with the text or binary opcode (so no reserved bit); it is masked;
- it does not arrive inside a fragmented message (wsproto fails such a frame);
- its length is written in the shortest form (RFC 6455 5.2: "the minimal number of
  bytes MUST be used"; wsproto fails a longer one) and is at most ``FAST_MAX`` and at
  most the connection's message size limit (a bigger one may close with 1009);
- it is whole in what has arrived; a binary frame of at most ``WAIT_MAX`` bytes is waited
  for, a text frame arriving in pieces streams through wsproto, whose UTF-8 decoder
  fails an invalid one as soon as the bad byte arrives, naming its position in the piece;
- a text payload is UTF-8 (else wsproto closes with 1007 and says why);
- the connection takes it now (its ``frame_message`` says: after a close has begun,
  wsproto reads it, and drops it or fails the connection as it would have).

A whole masked close frame is handed to the owner's ``frame_close``, which reads it as wsproto
would (its code and reason) or declines it (a code or reason wsproto fails, a close the
connection did not expect now): wsproto then reads it. A whole masked ping or pong frame
outside a fragmented message (a client's keepalive, the answer to the server's) is handed
to its ``frame_control`` in the same way: it acts as on wsproto's ``Ping``/``Pong``
event, or declines.

wsproto fails an unknown opcode and a control frame longer than 125 bytes on its first
two bytes, before any length bytes: those are handed over at once, with all that follows
(wsproto fails the connection); any other frame is handed over once its length
is known, when wsproto too has read enough of it to fail or read it.

``tests/unit/protocol/test_frames.py`` holds the proof: for any byte stream split
anywhere, with app sends, timers and closes in between, a connection gives the same
actions with this reader and writer as with wsproto alone (``fast_frames=False``).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FAST_MAX", "WAIT_MAX", "FrameOwner", "FrameReader", "plain_frame", "unmask"]

#: Largest payload a whole frame may have to be read here (its length then fits the
#: 16-bit form); a bigger one streams through wsproto.
FAST_MAX = 65535
#: Largest binary frame whose first bytes are held until the rest comes; a bigger one that
#: arrives in pieces streams through wsproto (holding it would copy it again with every piece).
WAIT_MAX = 4096

#: The first byte of a whole text, binary and close frame: FIN and the opcode.
TEXT = 0x81
BINARY = 0x82
CLOSE = 0x88
PING = 0x89
PONG = 0x8A

#: Opcodes RFC 6455 defines: continuation, text, binary, close, ping, pong.
_OPCODES = frozenset((0x0, 0x1, 0x2, 0x8, 0x9, 0xA))


def plain_frame(first_byte: int, payload: bytes) -> bytes:
    """One final, unmasked frame: FIN and opcode in ``first_byte``, then the length in its
    shortest form (as wsproto writes it)."""
    n = len(payload)
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 65536:
        return bytes((first_byte, 126, n >> 8, n & 0xFF)) + payload
    return bytes((first_byte, 127)) + n.to_bytes(8, "big") + payload


#: ``int.from_bytes`` looked up once: on the path of every frame read here.
_from_bytes = int.from_bytes


def unmask(key: bytes, payload: bytes) -> bytes:
    """RFC 6455 5.3: XOR with the 4-byte key repeated, as one big-integer operation (the
    key is repeated to a multiple of 4 bytes; what it has beyond the payload is cut off)."""
    n = len(payload)
    mask = _from_bytes(key * ((n + 3) >> 2), "little")
    return (_from_bytes(payload, "little") ^ mask).to_bytes((n + 3) & ~3, "little")[:n]


class FrameOwner(Protocol):
    """The connection a :class:`FrameReader` reads for (one object, not four callbacks:
    a subscription server holds thousands of readers)."""

    def frame_message(self, payload: str | bytes) -> bool:
        """The ``str`` or ``bytes`` of a whole frame read here; False when the connection
        cannot take it now (the frame then goes to wsproto)."""
        ...

    def frame_close(self, payload: bytes) -> bool:
        """The unmasked payload of a whole close frame; True once the connection closed
        (else the frame goes to wsproto)."""
        ...

    def frame_control(self, first: int, payload: bytes) -> bool:
        """A whole ping (``first`` 0x89) or pong (0x8A) and its unmasked payload; False to
        decline (the frame then goes to wsproto)."""
        ...

    def frame_to_wsproto(self, data: bytes) -> bool:
        """Bytes for wsproto: act on its events; True once the connection is closed
        (nothing more is read)."""
        ...


class FrameReader:
    """Reads a client's bytes frame by frame (see the module's rules), for ``owner``."""

    __slots__ = ("fragmented", "limit", "owed", "owner", "partial")

    def __init__(self, limit: int, owner: FrameOwner) -> None:
        #: Largest payload read here: the message size limit, at most FAST_MAX.
        self.limit = min(limit, FAST_MAX)
        self.owner = owner
        #: Bytes wsproto still needs for the frame it is reading (0: at a frame boundary).
        self.owed = 0
        #: A fragmented message is open in wsproto.
        self.fragmented = False
        #: The start of a frame not yet complete.
        self.partial = b""

    def feed(self, data: bytes) -> None:
        owner = self.owner
        if self.partial:
            data = self.partial + data
            self.partial = b""
        end = len(data)
        i = 0
        while i < end:
            owed = self.owed
            if owed:  # the rest of a frame wsproto is reading
                chunk = data[i : i + owed]
                self.owed = owed - len(chunk)
                i += len(chunk)
                if owner.frame_to_wsproto(chunk):
                    return
                continue
            if end - i < 2:
                self.partial = data[i:]
                return
            first = data[i]
            second = data[i + 1]
            opcode = first & 0x0F
            length = second & 0x7F
            if opcode not in _OPCODES or (opcode & 0x08 and length > 125):
                # wsproto fails these on two bytes, before the length bytes it would wait
                # for, and closes: nothing more is read.
                owner.frame_to_wsproto(data[i:])
                return
            plain = second & 0x80  # masked
            start = i + 2
            if length == 126:
                start = i + 4
                if end < start:
                    self.partial = data[i:]
                    return
                length = (data[i + 2] << 8) | data[i + 3]
                if length < 126:
                    plain = 0  # 2 length bytes where 1 would do: wsproto fails it
            elif length == 127:
                start = i + 10
                if end < start:
                    self.partial = data[i:]
                    return
                length = int.from_bytes(data[i + 2 : start], "big")
                plain = 0  # over FAST_MAX; or 8 length bytes where 2 would do, which wsproto fails
            start += 4  # the masking key (wsproto fails an unmasked frame on its length)
            total = start - i + length
            if plain and TEXT <= first <= BINARY and not self.fragmented and length <= self.limit:
                if end - i >= total:
                    payload = unmask(data[start - 4 : start], data[start : i + total])
                    if first == BINARY:
                        taken = owner.frame_message(payload)
                    else:
                        try:
                            text = payload.decode()
                        except UnicodeDecodeError:
                            taken = False  # wsproto fails the connection with 1007 and says why
                        else:
                            taken = owner.frame_message(text)
                    if taken:
                        i += total
                        continue
                elif first == BINARY and total <= WAIT_MAX:
                    self.partial = data[i:]  # wait for the rest of this small frame
                    return
            elif first == CLOSE and plain and end - i >= total:  # a whole close frame (<= 125 bytes)
                if owner.frame_close(unmask(data[start - 4 : start], data[start : i + total])):
                    return  # closed: nothing more is read
            elif (
                first in (PONG, PING) and plain and end - i >= total and not self.fragmented
            ):  # a whole ping or pong (<= 125 bytes)
                if owner.frame_control(first, unmask(data[start - 4 : start], data[start : i + total])):
                    i += total
                    continue
            elif opcode < 0x8:  # data frames open or close a fragmented message
                self.fragmented = not first & 0x80
            # This frame, or what has come of it, goes to wsproto; the rest is owed.
            chunk = data[i : i + total]
            self.owed = total - len(chunk)
            i += len(chunk)
            if owner.frame_to_wsproto(chunk):
                return

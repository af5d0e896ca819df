"""The floor: what sockets and the event loop alone cost per operation.

``python -m bench.floor [--loop auto|asyncio|uvloop]`` serves 127.0.0.1 port 0 with one
``asyncio.Protocol`` that parses nothing and runs no app: it answers each request head
(``\\r\\n\\r\\n``) with channelserver's exact response bytes, answers a WebSocket upgrade
with a canned 101, then answers every masked client frame of the load generator's size with
the canned echo. Only the ``http`` and ``ws`` workloads of ``bench/load.py``.

Its server CPU per operation is the part of every server's figure that no parser or
server code can remove: the recv and send system calls, epoll and the loop's callbacks.
``bench/run.py`` subtracts it to show what the parser and the server itself add.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from email.utils import formatdate

from bench.apps import HELLO
from bench.load import WS_ECHO, WS_FRAME

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nserver: channelserver\r\ndate: "
    + formatdate(usegmt=True).encode()
    + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n" % len(HELLO)
    + HELLO
)
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


class Floor(asyncio.Protocol):
    """Canned answers: the least a server can do per request or message."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.websocket = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buf = self.buf + data if self.buf else data
        if self.websocket:
            frames, rest = divmod(len(buf), len(WS_FRAME))
            self.buf = buf[len(buf) - rest :] if rest else b""
            if frames:
                self.transport.write(WS_ECHO * frames)
            return
        heads = buf.count(b"\r\n\r\n")
        if not heads:
            self.buf = buf
            return
        self.buf = buf[buf.rindex(b"\r\n\r\n") + 4 :]
        if b"\r\nUpgrade: websocket" in buf:
            self.websocket = True
            self.transport.write(SWITCH)
            return
        self.transport.write(RESPONSE * heads)


async def serve(loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = await loop.create_server(Floor, sock=sock, backlog=1024)
    stop: asyncio.Future[None] = loop.create_future()

    def stopping() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping)
    print(f"Listening on http://127.0.0.1:{sock.getsockname()[1]} ({loop_name})", file=sys.stderr, flush=True)
    async with server:
        await stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Canned answers: the cost of sockets and the loop alone.")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args(argv)
    name, new_loop = "asyncio", asyncio.new_event_loop
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                raise
        else:
            name, new_loop = "uvloop", uvloop.new_event_loop
    loop = new_loop()
    try:
        loop.run_until_complete(serve(name))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

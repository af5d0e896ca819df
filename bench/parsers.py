"""The parsers' own cost: the floor any server built on h11 and wsproto stands on.

No sockets, no event loop: an h11 client and an h11 server ``Connection`` (or a wsproto
client and server) in one process, handing each other the same bytes the load generator
and the servers exchange. Per operation:

- ``h11``: the client serializes the request the load generator sends, the server parses
  it (events until ``NEED_DATA``, as a server's loop does), serializes the response channelserver sends (``server``,
  ``date``, ``content-type``, ``content-length``, 13-byte body), the client parses it,
  both start the next cycle. This is "h11's own parse-and-serialize work per request".
- ``h11-server``: only the server's half of that (parse the request bytes, serialize the
  response): what a server cannot avoid paying.
- ``wsproto``: the client sends the 32-byte text message, the server parses it and sends
  the echo, the client parses the echo. "wsproto's own work per echoed message".
- ``wsproto-server``: only the server's half (parse the masked frame, build the echo).

Measured as CPU time of this process (``time.process_time``) over batches until
``--seconds`` of wall time passed, after a warm-up. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from email.utils import formatdate

import h11
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from bench.apps import HELLO
from bench.load import HTTP_GET, WS_FRAME, WS_MESSAGE

WHAT = ("h11", "h11-server", "wsproto", "wsproto-server")

REQUEST_HEADERS = [(b"Host", b"127.0.0.1"), (b"User-Agent", b"bench"), (b"Accept", b"*/*")]


def response_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"server", b"channelserver"),
        (b"date", formatdate(time.time(), usegmt=True).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(HELLO)),
    ]


def h11_pair() -> Callable[[int], None]:
    client = h11.Connection(h11.CLIENT)
    server = h11.Connection(h11.SERVER)
    headers = response_headers()
    first = client.send(h11.Request(method=b"GET", target=b"/", headers=REQUEST_HEADERS))
    if first != HTTP_GET:
        raise AssertionError(f"h11 serializes the request differently from the load generator: {first!r}")
    client = h11.Connection(h11.CLIENT)

    def ops(n: int) -> None:
        for _ in range(n):
            data = client.send(h11.Request(method=b"GET", target=b"/", headers=REQUEST_HEADERS))
            data += client.send(h11.EndOfMessage())
            server.receive_data(data)
            event = server.next_event()
            while event is not h11.NEED_DATA and event is not h11.PAUSED:
                event = server.next_event()
            out = server.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
            out += server.send(h11.Data(data=HELLO))
            out += server.send(h11.EndOfMessage())
            client.receive_data(out)
            while type(client.next_event()) is not h11.EndOfMessage:
                pass
            client.start_next_cycle()
            server.start_next_cycle()

    return ops


def h11_server() -> Callable[[int], None]:
    server = h11.Connection(h11.SERVER)
    headers = response_headers()

    def ops(n: int) -> None:
        for _ in range(n):
            server.receive_data(HTTP_GET)
            event = server.next_event()
            while event is not h11.NEED_DATA and event is not h11.PAUSED:
                event = server.next_event()
            out = server.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
            out += server.send(h11.Data(data=HELLO))
            out += server.send(h11.EndOfMessage())
            server.start_next_cycle()

    return ops


def wsproto_pair() -> Callable[[int], None]:
    client = Connection(ConnectionType.CLIENT)
    server = Connection(ConnectionType.SERVER)

    def ops(n: int) -> None:
        for _ in range(n):
            server.receive_data(client.send(TextMessage(data=WS_MESSAGE)))
            for event in server.events():
                client.receive_data(server.send(TextMessage(data=event.data)))  # type: ignore[attr-defined]
            for event in client.events():
                if event.data != WS_MESSAGE:  # type: ignore[attr-defined]
                    raise AssertionError(event)

    return ops


def wsproto_server() -> Callable[[int], None]:
    server = Connection(ConnectionType.SERVER)

    def ops(n: int) -> None:
        for _ in range(n):
            server.receive_data(WS_FRAME)
            for event in server.events():
                server.send(TextMessage(data=event.data))  # type: ignore[attr-defined]

    return ops


FACTORIES = {"h11": h11_pair, "h11-server": h11_server, "wsproto": wsproto_pair, "wsproto-server": wsproto_server}


def measure(what: str, seconds: float, warmup: int = 1000, batch: int = 500) -> dict[str, float | int | str]:
    """Run batches for ``seconds`` of wall time (bounded like the load generator's timed
    phase, however busy the machine); report the CPU time they took."""
    ops = FACTORIES[what]()
    ops(warmup)
    perf_counter = time.perf_counter
    done = 0
    start_wall = perf_counter()
    start = time.process_time()
    deadline = start_wall + seconds
    while True:
        ops(batch)
        done += batch
        if perf_counter() >= deadline:
            break
    cpu = time.process_time() - start
    return {"what": what, "ops": done, "cpu": cpu, "wall": perf_counter() - start_wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU time of h11's and wsproto's own work per operation.")
    parser.add_argument("--what", choices=WHAT, required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.what, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

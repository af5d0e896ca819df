"""One line per event, appended to the file named by ``LIFECYCLE_EVENTS``.

The test apps record what the tests must count (a consumer's ``websocket_disconnect``, a
resolver's ``finally``) here rather than on stdout, so the count cannot be confused with
the server's own log. Each line is one ``write()`` on an ``O_APPEND`` descriptor opened and
closed per event, so lines never interleave and no descriptor stays open.

``announce=True`` also prints ``event: <line>`` on stdout, for the few events a test waits
for in the server's output (the moment a request is in flight) rather than counts.
"""

from __future__ import annotations

import os


def record(line: str, *, announce: bool = False) -> None:
    if announce:
        print(f"event: {line}", flush=True)
    path = os.environ.get("LIFECYCLE_EVENTS")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)

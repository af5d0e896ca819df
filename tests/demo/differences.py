"""Where the demo behaves differently under channelserver and under Daphne: the one list.

Every scenario of tests/demo that takes the ``demo_server`` fixture runs against both
servers with the same assertions, except where it looks a behaviour up here; each entry is
asserted explicitly for both servers (the test fails if Daphne starts behaving like
channelserver, so this list stays true).
"""

from __future__ import annotations

#: When an HTTP client goes away in the middle of a streamed response (an HTTP
#: subscription, multipart or SSE), does the subscription resolver's ``finally`` run?
#:
#: Strawberry's Channels HTTP consumer streams from inside ``handle()``; while it streams,
#: Channels does not read ``receive()``, so ``http.disconnect`` is never seen. The only
#: way the resolver learns that the client left is its next ``send()`` failing.
#: channelserver raises ``ClientDisconnected`` (an ``OSError``) from ``send()`` once the
#: peer is gone, as the ASGI spec allows; the exception unwinds the generator within one
#: interval. Daphne drops the data silently, so the resolver runs until the server stops.
HTTP_STREAM_CLEANUP_ON_DISCONNECT = {"channelserver": True, "daphne": False}

#: How long, at most, a resolver may keep running after its HTTP client left, where it is
#: stopped at all (the interval of the subscription under test is well below this).
HTTP_STREAM_CLEANUP_WITHIN_MS = 1000

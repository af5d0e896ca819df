"""channels_redis, both layers, with a real redis-server, under two server processes.

``ChatConsumer`` (``apps/ecoproj/consumers.py``) is Channels' ``AsyncWebsocketConsumer`` as
a chat app writes it. Each connection makes the consumer open a channel in the instance's
first step (``new_channel()``: with ``RedisPubSubChannelLayer`` a Redis SUBSCRIBE; the
first in a process opens the connection, under ``asyncio.timeout()``) and ``group_add``
it; a message is
``group_send`` to members on both servers; a member that leaves is ``group_discard``-ed,
and later messages reach only the members still there. An ``AsyncHttpConsumer`` (its own
channel opened in the request's first step as well) speaks to the group from the server
whose members all left.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.apps.wire import token
from tests.servers import ServerProcess

from .conftest import ECOPROJ, ECOPROJ_SETTINGS, serving

pytestmark = pytest.mark.ecosystem

LAYERS = ["core", "pubsub"]


def recv(ws: ClientConnection) -> dict[str, str]:
    return json.loads(ws.recv(timeout=10))  # type: ignore[no-any-return]


def join(server: ServerProcess, group: str, stack: ExitStack) -> tuple[ClientConnection, str]:
    """A client in ``group`` on ``server``, once the consumer's group_add returned."""
    ws = stack.enter_context(connect(f"{server.ws_url}/ws/chat/{group}/", open_timeout=10))
    joined = recv(ws)
    assert joined["type"] == "joined", joined
    return ws, joined["channel"]


def discarded(server: ServerProcess, channel: str, group: str) -> None:
    server.wait_for(re.compile(re.escape(f"discarded {channel} from {group}").encode()), 10)


def say(server: ServerProcess, group: str, text: str) -> None:
    """``group_send`` from the server's ``SayConsumer``, an HTTP request."""
    said = httpx.post(f"{server.url}/chat/{group}/say/", content=text.encode(), timeout=10)
    assert (said.status_code, said.text) == (200, "sent")


@pytest.fixture(params=LAYERS)
def two_servers(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {"ECOSYSTEM_LAYER": request.param, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": ECOPROJ_SETTINGS}
    # With RedisChannelLayer, a consumer's cancelled receive() now and then does not end
    # (seen under uvicorn as well): its instance lingers until the server cancels it,
    # app_close_timeout after its disconnect, with a WARNING. Keep that wait short.
    flags = ("--app-close-timeout", "2")
    with serving(ECOPROJ, *flags, env=env) as first, serving(ECOPROJ, *flags, env=env) as second:
        yield first, second


def test_group_fan_out_across_two_servers_and_discard(two_servers: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_servers
    group = f"chat-{token()}"
    # The first use of the layer in each process is an HTTP request's: with the pub/sub
    # layer, its new_channel() connects to Redis (under asyncio.timeout()) in the first step.
    for server in (a, b):
        say(server, group, "nobody hears this")
    with ExitStack() as stack:
        a1, a1_channel = join(a, group, stack)
        b1, b1_channel = join(b, group, stack)
        b2, b2_channel = join(b, group, stack)
        assert len({a1_channel, b1_channel, b2_channel}) == 3

        a1.send("one")
        for ws in (a1, b1, b2):
            assert recv(ws) == {"type": "message", "text": "one", "sender": a1_channel}

        b2.close()
        discarded(b, b2_channel, group)

        b1.send("two")
        for ws in (a1, b1):
            assert recv(ws) == {"type": "message", "text": "two", "sender": b1_channel}

        a1.close()
        discarded(a, a1_channel, group)
        # an HTTP consumer on the server that has no member left speaks to the group
        say(a, group, "three")
        assert recv(b1) == {"type": "message", "text": "three", "sender": "http"}
    discarded(b, b1_channel, group)

    # what each server's consumers forwarded: nothing for a member once it left
    delivered = [line for server in (a, b) for line in server.text.splitlines() if line.startswith("chat.message")]
    assert sorted(delivered) == sorted(
        [f"chat.message one to {channel}" for channel in (a1_channel, b1_channel, b2_channel)]
        + [f"chat.message two to {channel}" for channel in (a1_channel, b1_channel)]
        + [f"chat.message three to {b1_channel}"]
    )

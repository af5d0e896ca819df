"""The asyncio adapter: ``ConnectionProtocol`` with a fake transport and a real event loop.

What only the adapter can get wrong: a parked ``receive()`` woken at once by
``connection_lost``; ``accept``/``send``/``close`` from another task while one task waits
in ``receive()``; ``send()`` waiting while the transport has paused writing; reading
paused while an app leaves a large body unread and resumed when it reads; and the lazy
timers (one handle per name, re-armed) firing the machine's ``timer_fired`` when due, on
a fake clock the test moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import h11
import pytest
import wsproto
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from .fakes import FakeClockLoop, MockTransport, connect, run, turns

TIMEOUT = 2.0


class App:
    """Wraps a test's ASGI app: records what it raised, and when it finished."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.error: BaseException | None = None
        self.finished = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.body(scope, receive, send)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.finished.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.finished.wait(), TIMEOUT)
        if self.error is not None:
            raise self.error


def ws_handshake(protocol: Any) -> wsproto.WSConnection:
    client = wsproto.WSConnection(ConnectionType.CLIENT)
    protocol.data_received(client.send(Request(host="example.com", target="/ws/")))
    return client


def client_events(client: wsproto.WSConnection, transport: MockTransport) -> list[Any]:
    data = transport.take()
    if data:  # b"" would tell the client the connection closed
        client.receive_data(data)
    return list(client.events())


def http_request(method: str = "GET", body_length: int | None = None) -> tuple[h11.Connection, bytes]:
    client = h11.Connection(h11.CLIENT)
    headers = [("Host", "example.com")]
    if body_length is not None:
        headers.append(("Content-Length", str(body_length)))
    return client, client.send(h11.Request(method=method, target="/", headers=headers)) or b""


def responses(client: h11.Connection, data: bytes) -> list[Any]:
    client.receive_data(data)
    events = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return events
        events.append(event)


# -- apps that wait ----------------------------------------------------------------------------


def test_http_app_that_waits_after_its_first_step_is_resumed() -> None:
    """An HTTP app starts inside ``data_received`` (eagerly); when it then awaits
    something, it must be resumed like any Task, with the awaited result."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        later: asyncio.Future[bytes] = loop.create_future()

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            data = await later
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": data})

        app = App(body)
        protocol, transport = connect(app)
        client, head = http_request()
        protocol.data_received(head)
        loop.call_soon(later.set_result, b"worth the wait")
        await app.wait()
        events = responses(client, transport.take())
        assert [e.status_code for e in events if type(e) is h11.Response] == [200]
        assert b"".join(e.data for e in events if type(e) is h11.Data) == b"worth the wait"

    run(scenario())


def test_a_streaming_response_head_goes_out_before_the_first_body_part() -> None:
    """The head of a response is held back to go out with the first body part; an app
    that starts a stream (SSE) and then waits for its first event must not keep the
    client waiting for the headers."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first_event: asyncio.Future[bytes] = loop.create_future()

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            data = await first_event
            await send({"type": "http.response.body", "body": data})

        app = App(body)
        protocol, transport = connect(app)
        client, head = http_request()
        protocol.data_received(head)
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        events = responses(client, transport.take())
        assert [type(e) for e in events] == [h11.Response]
        assert (b"transfer-encoding", b"chunked") in events[0].headers
        first_event.set_result(b"data: 1\n\n")
        await app.wait()
        events = responses(client, transport.take())
        assert b"".join(e.data for e in events if type(e) is h11.Data) == b"data: 1\n\n"

    run(scenario())


def test_a_streaming_head_goes_out_when_the_app_waits_after_resuming() -> None:
    """The same from an app already carried by a Task (it waited before starting the
    response): the head goes out on the next loop turn."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        first_event: asyncio.Future[bytes] = loop.create_future()

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await ready
            await send({"type": "http.response.start", "status": 200})
            data = await first_event
            await send({"type": "http.response.body", "body": data})

        app = App(body)
        protocol, transport = connect(app)
        client, head = http_request()
        protocol.data_received(head)
        ready.set_result(None)
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        events = responses(client, transport.take())
        assert [type(e) for e in events] == [h11.Response]
        first_event.set_result(b"late")
        await app.wait()
        events = responses(client, transport.take())
        assert b"".join(e.data for e in events if type(e) is h11.Data) == b"late"

    run(scenario())


@pytest.mark.parametrize("second_start", [False, True], ids=["alone", "after a caught refusal"])
def test_an_invalid_head_flushed_while_the_app_waits_is_answered_500(caplog: Any, second_start: bool) -> None:
    """A head that cannot be written is found when it is flushed, not only when a body
    part follows: the client gets a 500 at once and the error names the header. Also when
    the app caught the refusal of a second start before that: every refusal goes to the
    machine, not only the first, and each is logged once."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        never: asyncio.Future[None] = loop.create_future()

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"bad name", b"x")]})
            if second_start:
                with contextlib.suppress(RuntimeError):
                    await send({"type": "http.response.start", "status": 200})  # refused
            await never

        app = App(body)
        protocol, transport = connect(app)
        client, head = http_request()
        protocol.data_received(head)
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        events = responses(client, transport.take())
        assert [e.status_code for e in events if type(e) is h11.Response] == [500]
        never.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app.wait()

    with caplog.at_level(logging.ERROR, logger="channelserver.error"):
        run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.name == "channelserver.error"]
    assert len(errors) == (2 if second_start else 1), errors
    assert errors[-1] == (
        "ASGI protocol error: http.response.start: Illegal header name b'bad name' (GET / from 127.0.0.1:53122)"
    )


# -- a peer that leaves ------------------------------------------------------------------


def test_parked_websocket_receive_returns_disconnect_when_the_connection_is_lost() -> None:
    async def scenario() -> None:
        parked = asyncio.Event()
        got: list[dict[str, Any]] = []

        async def body(scope: Any, receive: Any, send: Any) -> None:
            assert await receive() == {"type": "websocket.connect"}
            await send({"type": "websocket.accept"})
            parked.set()
            got.append(await receive())

        app = App(body)
        protocol, transport = connect(app)
        client = ws_handshake(protocol)
        await asyncio.wait_for(parked.wait(), TIMEOUT)
        assert [type(e) for e in client_events(client, transport)] == [AcceptConnection]
        assert got == [], "receive() is parked"
        protocol.connection_lost(None)
        await app.wait()
        assert got == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
        assert protocol.state.instances == set()

    run(scenario())


def test_parked_http_receive_returns_disconnect_when_the_connection_is_lost() -> None:
    async def scenario() -> None:
        parked = asyncio.Event()
        got: list[dict[str, Any]] = []

        async def body(scope: Any, receive: Any, send: Any) -> None:
            got.append(await receive())
            parked.set()
            got.append(await receive())

        app = App(body)
        protocol, _transport = connect(app)
        _, head = http_request("POST", body_length=10)
        protocol.data_received(head + b"12345")
        await asyncio.wait_for(parked.wait(), TIMEOUT)
        protocol.connection_lost(None)
        await app.wait()
        assert got == [
            {"type": "http.request", "body": b"12345", "more_body": True},
            {"type": "http.disconnect"},
        ]

    run(scenario())


# -- sends from other tasks --------------------------------------------------------------------


def test_accept_send_and_close_from_another_task_while_receive_is_parked() -> None:
    async def scenario() -> None:
        answered = asyncio.Event()
        got: list[dict[str, Any]] = []

        async def body(scope: Any, receive: Any, send: Any) -> None:
            assert await receive() == {"type": "websocket.connect"}

            async def answer() -> None:
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": "from another task"})
                await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
                answered.set()

            task = asyncio.create_task(answer())
            # Parked before the answer: it must wait, not return connect again.
            got.append(await receive())
            await task

        app = App(body)
        protocol, transport = connect(app)
        client = ws_handshake(protocol)
        await asyncio.wait_for(answered.wait(), TIMEOUT)
        events = client_events(client, transport)
        assert [type(e) for e in events] == [AcceptConnection, TextMessage, CloseConnection]
        assert events[1].data == "from another task"
        assert (events[2].code, events[2].reason) == (4000, "bye")
        assert got == [], "the close frame went out while receive() was still parked"
        protocol.data_received(client.send(events[2].response()))
        await app.wait()
        assert got == [{"type": "websocket.disconnect", "code": 4000, "reason": "bye"}]
        assert transport.closed

    run(scenario())


def test_messages_arrive_in_order_to_a_parked_receive() -> None:
    async def scenario() -> None:
        got: list[Any] = []
        done = asyncio.Event()

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                got.append(message.get("text", message["type"]))
                if message["type"] == "websocket.disconnect":
                    done.set()
                    return

        app = App(body)
        protocol, transport = connect(app)
        client = ws_handshake(protocol)
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        assert [type(e) for e in client_events(client, transport)] == [AcceptConnection]
        protocol.data_received(b"".join(client.send(TextMessage(data=str(n))) for n in range(5)))
        protocol.data_received(client.send(Ping(payload=b"x")))
        protocol.data_received(client.send(CloseConnection(code=1000)))
        await app.wait()
        assert got == ["0", "1", "2", "3", "4", "websocket.disconnect"]

    run(scenario())


# -- backpressure ------------------------------------------------------------------------------


def test_send_waits_while_writing_is_paused() -> None:
    async def scenario() -> None:
        step = asyncio.Event()
        sent: list[bytes] = []

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            sent.append(b"first")
            await step.wait()
            await send({"type": "http.response.body", "body": b"second", "more_body": True})
            sent.append(b"second")
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        app = App(body)
        protocol, transport = connect(app)
        client, head = http_request()
        protocol.data_received(head)
        await asyncio.wait_for(transport.wrote.wait(), TIMEOUT)
        assert sent == [b"first"]
        protocol.pause_writing()  # the client stopped reading
        step.set()
        await turns()
        assert b"second" in transport.buffer, "the bytes are handed to the transport"
        assert sent == [b"first"], "but send() waits until the transport drains"
        protocol.resume_writing()
        await app.wait()
        assert sent == [b"first", b"second"]
        events = responses(client, transport.take())
        assert b"".join(e.data for e in events if type(e) is h11.Data) == b"firstsecond"
        assert type(events[-1]) is h11.EndOfMessage

    run(scenario())


def test_send_waiting_for_drain_is_released_when_the_connection_is_lost() -> None:
    async def scenario() -> None:
        outcome: list[str] = []

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            try:
                await send({"type": "http.response.start", "status": 200})
                outcome.append("start returned")
                await send({"type": "http.response.body", "body": b"a", "more_body": True})
                outcome.append("body returned")
            except OSError as exc:
                outcome.append(type(exc).__name__)

        app = App(body)
        protocol, _transport = connect(app)
        _, head = http_request()
        protocol.pause_writing()
        protocol.data_received(head)
        await turns()
        assert outcome == [], "send() waits while writing is paused"
        protocol.connection_lost(None)
        await app.wait()
        assert outcome == ["start returned", "ClientDisconnected"]

    run(scenario())


def test_reading_pauses_while_a_large_body_is_not_consumed_and_resumes_when_it_is() -> None:
    async def scenario() -> None:
        go = asyncio.Event()
        received = bytearray()
        size = 1024 * 1024
        chunk = 64 * 1024

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await go.wait()
            while True:
                message = await receive()
                received.extend(message["body"])
                if not message["more_body"]:
                    break
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"%d" % len(received)})

        app = App(body)
        protocol, transport = connect(app)
        client, head = http_request("POST", body_length=size)
        protocol.data_received(head)
        fed = 0
        while not transport.reading_paused:
            assert fed < size, "reading never paused"
            protocol.data_received(b"x" * chunk)
            fed += chunk
        assert transport.reading_calls == ["pause"]
        assert fed <= 512 * 1024, f"{fed} bytes buffered before reading paused"
        go.set()
        await asyncio.wait_for(transport.reading_resumed.wait(), TIMEOUT)
        assert transport.reading_calls == ["pause", "resume"]
        while fed < size:
            if transport.reading_paused:
                transport.reading_resumed.clear()
                await asyncio.wait_for(transport.reading_resumed.wait(), TIMEOUT)
            protocol.data_received(b"x" * chunk)
            fed += chunk
        await app.wait()
        assert len(received) == size
        events = responses(client, transport.take())
        assert [e.status_code for e in events if type(e) is h11.Response] == [200]
        assert b"".join(e.data for e in events if type(e) is h11.Data) == b"%d" % size

    run(scenario())


# -- timers ----------------------------------------------------------------------------------


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"ok"})


def test_keep_alive_timer_fires_when_due_on_the_fake_clock() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        start = loop.time()
        _, transport = connect(ok_app, keep_alive_timeout=5.0)
        loop.advance(4.99)
        await turns()
        assert not transport.closed
        loop.advance(0.01)
        await turns()
        assert transport.closed
        assert transport.closed_at == start + 5.0

    run(scenario(), loop)


def test_keep_alive_timer_is_re_armed_lazily_after_a_request() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        start = loop.time()
        protocol, transport = connect(App(ok_app), keep_alive_timeout=5.0)
        loop.advance(3.0)
        _, head = http_request()
        protocol.data_received(head)  # answered at once: the idle timeout starts again
        await turns()
        assert b"200 OK" in transport.take()
        loop.advance(2.0)  # the first handle fires at start+5 and re-arms for start+8
        await turns()
        assert not transport.closed
        loop.advance(2.99)
        await turns()
        assert not transport.closed
        loop.advance(0.01)
        await turns()
        assert transport.closed_at == start + 8.0

    run(scenario(), loop)


def test_keep_alive_timer_does_not_close_during_a_slow_request() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        release = asyncio.Event()

        async def slow(scope: Any, receive: Any, send: Any) -> None:
            await release.wait()
            await ok_app(scope, receive, send)

        start = loop.time()
        protocol, transport = connect(App(slow), keep_alive_timeout=5.0)
        _, head = http_request()
        protocol.data_received(head)
        loop.advance(20.0)
        await turns()
        assert not transport.closed
        release.set()
        await turns()
        assert b"200 OK" in transport.take()
        loop.advance(4.99)
        await turns()
        assert not transport.closed
        loop.advance(0.01)
        await turns()
        assert transport.closed_at == start + 25.0

    run(scenario(), loop)


def test_websocket_keepalive_pings_then_closes_1011_on_the_fake_clock() -> None:
    loop = FakeClockLoop()

    async def scenario() -> None:
        got: list[dict[str, Any]] = []

        async def body(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            got.append(await receive())

        app = App(body)
        protocol, transport = connect(app, ws_ping_interval=1.0, ws_ping_timeout=1.0)
        client = ws_handshake(protocol)
        await turns()
        assert [type(e) for e in client_events(client, transport)] == [AcceptConnection]
        loop.advance(1.0)
        await turns()
        assert [type(e) for e in client_events(client, transport)] == [Ping]
        assert got == []
        loop.advance(1.0)  # no pong
        await turns()
        events = client_events(client, transport)
        assert [(type(e), e.code) for e in events] == [(CloseConnection, 1011)]
        await app.wait()
        assert got == [{"type": "websocket.disconnect", "code": 1011, "reason": "keepalive ping timeout"}]
        await turns()
        assert transport.closed

    run(scenario(), loop)


def test_keep_alive_timer_on_the_real_loop_clock() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        _, transport = connect(ok_app, keep_alive_timeout=0.02)
        await asyncio.wait_for(transport.closed_event.wait(), TIMEOUT)
        assert transport.closed_at is not None
        assert transport.closed_at - start >= 0.02

    run(scenario())

"""The access log in-process: what a handler of ``channelserver.access`` receives, text and
JSON, and the server's formatter writing what ``logging.Formatter`` writes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import h11
import pytest

from channelserver.server.log import ACCESS, SecondFormatter

from .fakes import connect, run, turns


class Collect(logging.Handler):
    """A user's own handler: keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def handler() -> Iterator[Collect]:
    logger = logging.getLogger(ACCESS)
    collect = Collect()
    level = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        yield collect
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201})
    await send({"type": "http.response.body", "body": b"ok"})


def one_request(target: str, **config: Any) -> None:
    async def scenario() -> None:
        protocol, transport = connect(ok_app, **config)
        client = h11.Connection(h11.CLIENT)
        protocol.data_received(client.send(h11.Request(method="GET", target=target, headers=[("Host", "a")])) or b"")
        for _ in range(20):
            await turns()
            if transport.buffer:
                break
        await asyncio.sleep(0)

    run(scenario())


def test_a_json_line_reaches_a_custom_handler_with_its_fields_as_extra(handler: Collect) -> None:
    one_request("/items/7?secret=hunter2", access_log_format="json")
    [record] = handler.records
    fields = record.access  # type: ignore[attr-defined]
    assert json.loads(record.getMessage()) == fields
    assert "hunter2" not in record.getMessage()
    assert fields["time"].endswith("Z") and fields["time"][10] == "T"
    del fields["time"], fields["duration_ms"]
    assert fields == {
        "pid": record.process,
        "type": "http",
        "client": "127.0.0.1:53122",
        "method": "GET",
        "path": "/items/7",
        "has_query": True,
        "http_version": "1.1",
        "status": 201,
    }
    assert record.status_code == 201  # type: ignore[attr-defined]
    assert (record.levelno, record.name, record.funcName) == (logging.INFO, ACCESS, "access_line")
    assert record.pathname.endswith("log.py")


def test_a_text_line_is_the_same_record_as_before(handler: Collect) -> None:
    one_request("/items/7?x=1")
    [record] = handler.records
    assert record.getMessage().startswith('127.0.0.1:53122 - "GET /items/7?x=1 HTTP/1.1" 201 ')
    assert record.getMessage().endswith("ms")
    assert record.status_code == 201  # type: ignore[attr-defined]
    assert not hasattr(record, "access")


@pytest.mark.parametrize("datefmt", [None, "%d/%b/%Y %H:%M:%S"])
def test_the_servers_formatter_writes_what_logging_formatter_writes(datefmt: str | None) -> None:
    fmt = "%(asctime)s [%(process)d] %(levelname)s %(message)s"
    ours, stdlib = SecondFormatter(fmt, datefmt), logging.Formatter(fmt, datefmt)
    for created in (1_800_000_000.0, 1_800_000_000.25, 1_800_000_000.999, 1_800_000_001.5, 1_700_000_000.0):
        record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "line %s", ("x",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == stdlib.format(record)


def test_the_servers_formatter_writes_a_json_line_bare() -> None:
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, '{"a":1}', (), None)
    record.access = {"a": 1}
    assert SecondFormatter("%(asctime)s %(levelname)s %(message)s").format(record) == '{"a":1}'

"""ASGI scope builders for HTTP and WebSocket connections (ASGI spec 2.4)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

__all__ = ["SPEC_VERSION", "http_scope", "peer", "websocket_scope"]

SPEC_VERSION = "2.4"

Address = tuple[str, int] | None


def peer(client: tuple[str, int] | list[Any] | None) -> str | None:
    """The client as ``ip:port`` for log lines and error texts; None when unknown."""
    return f"{client[0]}:{client[1]}" if client else None


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    raw_path, _, query = target.partition(b"?")
    if raw_path[:1] != b"/":
        # absolute-form (GET http://host/path) or asterisk-form (OPTIONS *)
        if raw_path == b"*":
            return raw_path, query
        scheme_end = raw_path.find(b"://")
        if scheme_end != -1:
            slash = raw_path.find(b"/", scheme_end + 3)
            raw_path = raw_path[slash:] if slash != -1 else b"/"
    return raw_path, query


def _path(raw_path: bytes, root_path: str) -> str:
    text = raw_path.decode("ascii")
    if "%" in text:
        text = unquote(text)
    return root_path + text if root_path else text


def http_scope(
    *,
    method: bytes,
    target: bytes,
    http_version: bytes,
    headers: list[tuple[bytes, bytes]],
    scheme: str,
    server: Address,
    client: Address,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    raw_path, query = _split_target(target)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "http_version": http_version.decode("ascii"),
        "method": method.decode("ascii"),
        "scheme": scheme,
        "path": _path(raw_path, root_path),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "extensions": extensions if extensions is not None else {},
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


def websocket_scope(
    *,
    target: bytes,
    http_version: bytes,
    headers: list[tuple[bytes, bytes]],
    scheme: str,
    server: Address,
    client: Address,
    root_path: str,
    subprotocols: list[str],
    state: dict[str, Any] | None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    raw_path, query = _split_target(target)
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "http_version": http_version.decode("ascii"),
        "scheme": "wss" if scheme == "https" else "ws",
        "path": _path(raw_path, root_path),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "subprotocols": subprotocols,
        "extensions": {"websocket.http.response": {}, **(extensions or {})},
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope

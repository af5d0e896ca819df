"""Every server setting, defined once.

``Config`` is one frozen dataclass. Each field carries its type, default, unit, help text
and command-line flag in its metadata (see :func:`option`). The ``python -m channelserver``
parser, the ``runchannelserver`` options, the ``settings.CHANNELSERVER`` keys and
``docs/settings.md`` are all generated from these fields, so a setting is added in exactly
one place. Unknown keys are errors that name the key and the closest valid one.

Stdlib only: this module is imported by every layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args, get_type_hints

from .errors import ConfigError

__all__ = ["Config", "Option", "add_arguments", "config_from_args", "options"]


def metrics_address(address: str) -> tuple[str, int] | str:
    """``--metrics``: ``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port), or
    ``unix:/path`` as the path. Raises ConfigError with the forms it takes."""
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ConfigError(f"metrics={address!r}: give a socket path after unix:")
        return path
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics={address!r}: expected HOST:PORT (e.g. 127.0.0.1:9100) or unix:/path")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class Option:
    """What the generators need to know about one Config field."""

    name: str
    type: Any
    default: Any
    help: str
    unit: str
    flag: str
    choices: tuple[str, ...] | None
    #: Shown in docs and --help only; settings and flags still accept it.
    group: str

    @property
    def is_bool(self) -> bool:
        return self.type is bool

    @property
    def default_text(self) -> str:
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, tuple):
            return ",".join(self.default) or "none"
        if self.default == "":
            return ""
        return str(self.default)


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    unit: str = "",
    group: str = "server",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """One setting: its default (or a factory computing it, never both) and its help."""
    if (default is dataclasses.MISSING) == (default_factory is dataclasses.MISSING) or not help:
        raise TypeError("option() takes a default or a default_factory, and a help text")
    metadata = {"help": help, "unit": unit, "group": group}
    return field(default=default, default_factory=default_factory, metadata=metadata)


def _default_workers() -> int:
    value = os.environ.get("WEB_CONCURRENCY", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


@dataclass(frozen=True)
class Config:
    """All settings of one channelserver run. Frozen: build a new one with ``replace``."""

    # -- where to listen -------------------------------------------------------------
    host: str = option("127.0.0.1", "Interface to bind.", group="socket")
    port: int = option(8000, "Port to bind; 0 picks a free port (the log names it).", group="socket")
    uds: str | None = option(None, "Bind to this Unix domain socket path instead.", group="socket")
    fd: int | None = option(None, "Serve on this already-bound socket file descriptor.", group="socket")
    backlog: int = option(2048, "Listen queue length.", unit="connections", group="socket")

    # -- the application ------------------------------------------------------------
    root_path: str = option("", "ASGI root_path: the mount point when served under a path prefix.", group="app")
    lifespan: Literal["auto", "on", "off"] = option(
        "auto",
        "Lifespan protocol: 'auto' uses it when the app supports it and goes on quietly "
        "when it does not (Django and Channels routers); 'on' makes a failure fatal.",
        group="app",
    )
    loop: Literal["auto", "asyncio", "uvloop"] = option(
        "auto", "Event loop: 'auto' uses uvloop when it is installed.", group="app"
    )
    app_close_timeout: float = option(
        10.0,
        "How long an app instance may take to return after it was handed its disconnect; "
        "then it is cancelled and logged.",
        unit="seconds",
        group="app",
    )

    # -- logging ---------------------------------------------------------------------
    log_level: Literal["critical", "error", "warning", "info", "debug"] = option(
        "info", "Log level of the channelserver loggers.", group="logging"
    )
    access_log: bool = option(True, "Write one access-log line per request and WebSocket.", group="logging")
    access_log_format: Literal["text", "json"] = option(
        "text",
        "Access-log lines: 'text' (as runserver writes them) or 'json' (one JSON object a line, "
        "its fields also on the log record as its 'access' attribute).",
        group="logging",
    )
    metrics: str | None = option(
        None,
        "Serve Prometheus metrics (GET /metrics) and the app-instance report (GET /instances) "
        "on this address of their own, HOST:PORT or unix:/path, never on the app's port; with "
        "workers, the parent serves every worker's numbers. Needs prometheus_client "
        "(channelserver[metrics]). Unset turns it off.",
        group="logging",
    )
    stuck_after: float = option(
        5.0,
        "An app instance still running this long after its disconnect counts as stuck in "
        "the metrics (channelserver_app_instances_stuck).",
        unit="seconds",
        group="logging",
    )

    # -- HTTP --------------------------------------------------------------------------
    http: Literal["auto", "1", "2"] = option(
        "auto",
        "HTTP versions served: 'auto' (HTTP/2 where the client asks for it: ALPN h2 under TLS, "
        "the HTTP/2 connection preface in cleartext, h2c by prior knowledge; HTTP/1.1 "
        "otherwise), '1' (HTTP/1.1 only) or '2' (HTTP/2 only: ALPN offers h2 alone, and a "
        "cleartext connection that does not open with the preface gets 505).",
        group="http",
    )
    h2_max_concurrent_streams: int = option(
        100,
        "HTTP/2: streams a client may have open at once on one connection (advertised in "
        "SETTINGS; the common default of h2, nghttp2 and browsers' servers).",
        unit="streams",
        group="http",
    )
    h2_max_header_list_size: int = option(
        65536,
        "HTTP/2: decoded header bytes per request; a larger header block (an HPACK bomb) "
        "ends the connection with ENHANCE_YOUR_CALM.",
        unit="bytes",
        group="http",
    )
    h2_initial_window_size: int = option(
        1 << 20,
        "HTTP/2: the flow-control window of each stream's request body: what one stream may "
        "hold unread by its app. Above the protocol's 65,535 so that an upload is not held to "
        "one small window per round trip (655 KB/s at 100 ms).",
        unit="bytes",
        group="http",
    )
    h2_ping_interval: float | None = option(
        20.0,
        "HTTP/2: send a PING after this long without a byte from the client (a connection "
        "carrying only long streams, server-sent events say, is otherwise silent); unset "
        "turns it off.",
        unit="seconds",
        group="http",
    )
    h2_ping_timeout: float | None = option(
        20.0,
        "HTTP/2: close the connection (GOAWAY, every stream's app told) when a PING's ACK "
        "does not come within this long.",
        unit="seconds",
        group="http",
    )
    h2_stall_timeout: float | None = option(
        30.0,
        "HTTP/2: a stream whose response has waited this long for the client's flow-control "
        "window, with not a byte sent, is reset and its app's send() raises "
        "ClientDisconnected: a client that answers PINGs but never opens its window holds "
        "no app forever. Unset turns it off.",
        unit="seconds",
        group="http",
    )
    keep_alive_timeout: float = option(
        5.0, "Close an idle keep-alive connection after this long.", unit="seconds", group="http"
    )
    h11_max_incomplete_event_size: int = option(
        16384,
        "Largest request line plus headers accepted; larger gets 431.",
        unit="bytes",
        group="http",
    )
    body_read_timeout: float = option(
        30.0,
        "Close a request whose body stops arriving for this long (408 if nothing was answered yet).",
        unit="seconds",
        group="http",
    )
    max_headers: int = option(100, "Most request header fields accepted; more gets 431.", unit="headers", group="http")
    max_body_size: int | None = option(
        100 * 1024 * 1024,
        "Largest request body accepted, counted as it streams (chunked too); larger gets 413. Unset for no limit.",
        unit="bytes",
        group="http",
    )
    max_connections: int | None = option(
        20000,
        "Open connections per worker, HTTP and WebSocket together; a connection beyond it "
        "gets 503 and is closed. Keep it below the process's file descriptor limit.",
        unit="connections",
        group="http",
    )
    limit_concurrency: int | None = option(
        None,
        "HTTP requests in flight per worker; a request beyond it gets 503 with Retry-After "
        "and never reaches the app. The health path is always answered. Unset for no limit.",
        unit="requests",
        group="http",
    )
    server_header: bool = option(True, "Send a 'server: channelserver' header.", group="http")
    date_header: bool = option(True, "Send a 'date' header.", group="http")

    # -- WebSocket -------------------------------------------------------------------
    ws_max_size: int = option(
        1024 * 1024,
        "Largest WebSocket message accepted; larger closes with 1009. GraphQL and Channels "
        "messages are far smaller; raise it for file transfer.",
        unit="bytes",
        group="websocket",
    )
    ws_ping_interval: float | None = option(
        20.0,
        "Send a ping after this long without traffic from the peer; unset turns it off.",
        unit="seconds",
        group="websocket",
    )
    ws_ping_timeout: float | None = option(
        20.0,
        "Close with 1011 when the pong does not come within this long.",
        unit="seconds",
        group="websocket",
    )
    ws_per_message_deflate: bool = option(
        True, "Accept permessage-deflate compression (RFC 7692) when the client offers it.", group="websocket"
    )
    ws_deflate_window_bits: int = option(
        12,
        "Window of this server's permessage-deflate compressor, and the most it lets a client "
        "use when the client offers client_max_window_bits (9 to 15). Memory per socket grows "
        "as 2**bits.",
        unit="bits",
        group="websocket",
    )
    ws_deflate_mem_level: int = option(
        5,
        "Memory level of the zlib compressor (1 to 9): its hash table costs 2**(level+9) bytes.",
        group="websocket",
    )
    ws_deflate_idle: float | None = option(
        0.0,
        "How long a connection's compression context outlives its last message. 0 (the "
        "default): none does, both directions agree on no context takeover, and an idle "
        "socket holds no zlib memory, at some cost in ratio on repeated messages; a number "
        "of seconds: contexts are taken over and the compressor is dropped after one to two "
        "such periods without a message sent; unset: kept for the connection's life.",
        unit="seconds",
        group="websocket",
    )
    ws_max_connections: int | None = option(
        15000,
        "WebSocket connections per worker; a handshake beyond it gets 503 with Retry-After "
        "before the upgrade and never reaches the app. Unset for no limit.",
        unit="connections",
        group="websocket",
    )
    ws_accept_rate: float | None = option(
        None,
        "WebSocket handshakes per second per worker, with ws_accept_burst; a handshake over "
        "it gets 503 with Retry-After before the upgrade, so a reconnection storm becomes "
        "retries spread over seconds. Unset for no limit.",
        unit="handshakes/s",
        group="websocket",
    )
    ws_accept_burst: int = option(
        50,
        "Handshakes accepted at once above ws_accept_rate before it applies.",
        unit="handshakes",
        group="websocket",
    )
    ws_max_queue: int = option(
        64,
        "Messages queued for an app that does not receive; beyond it the socket stops being read.",
        unit="messages",
        group="websocket",
    )
    ws_handshake_timeout: float = option(
        10.0,
        "How long the app may take to accept or reject a WebSocket; then 503.",
        unit="seconds",
        group="websocket",
    )
    ws_close_timeout: float = option(
        5.0,
        "After sending a close frame, wait this long for the peer's before dropping the socket.",
        unit="seconds",
        group="websocket",
    )

    # -- lifecycle -------------------------------------------------------------------
    graceful_timeout: float = option(
        30.0,
        "On shutdown, how long in-flight requests and busy WebSockets may take to finish.",
        unit="seconds",
        group="lifecycle",
    )
    health_path: str | None = option(
        None,
        "Answer GET and HEAD on this path from the server itself, never the app: 200 while "
        "serving, 503 from the moment a drain begins (shutdown, reload, recycling). For a "
        "load balancer's or Kubernetes' readiness check. Unset turns it off.",
        group="lifecycle",
    )
    liveness_path: str | None = option(
        None,
        "Answer GET and HEAD on this path from the server itself with 200 while the process "
        "serves, draining or not. For a liveness check. Unset turns it off.",
        group="lifecycle",
    )
    drain_delay: float = option(
        0.0,
        "When a drain begins, keep serving this long with the health path answering 503, "
        "so the load balancer stops sending new connections before any socket closes.",
        unit="seconds",
        group="lifecycle",
    )
    drain_spread: float = option(
        0.0,
        "Close idle WebSockets with 1012 at moments spread evenly at random over this window "
        "instead of all at once, so clients reconnect to the other instances as a slope. "
        "0 closes them at once.",
        unit="seconds",
        group="lifecycle",
    )
    workers: int = option(
        help="Worker processes sharing the listening socket (default: $WEB_CONCURRENCY, else 1).",
        group="lifecycle",
        default_factory=_default_workers,
    )
    max_requests: int | None = option(
        None,
        "Replace a worker after it served this many HTTP requests and WebSocket connections.",
        unit="requests",
        group="lifecycle",
    )
    max_requests_jitter: int = option(
        0,
        "Add up to this many to max_requests, per worker, so workers do not restart together.",
        unit="requests",
        group="lifecycle",
    )

    max_worker_memory: int | None = option(
        None,
        "Replace a worker whose resident memory (RSS) grows past this many MiB (read from /proc: Linux).",
        unit="MiB",
        group="lifecycle",
    )
    max_worker_age: float | None = option(
        None,
        "Replace a worker this long after it was started.",
        unit="seconds",
        group="lifecycle",
    )
    max_worker_age_jitter: float = option(
        0.0,
        "Add up to this many seconds to max_worker_age, per worker, so workers do not restart together.",
        unit="seconds",
        group="lifecycle",
    )

    # -- proxies -----------------------------------------------------------------------
    proxy_headers: bool = option(
        False,
        "Trust X-Forwarded-For/-Proto/-Host and Forwarded from forwarded_allow_ips.",
        group="proxy",
    )
    forwarded_allow_ips: tuple[str, ...] = option(
        ("127.0.0.1", "::1"),
        "Peers whose proxy headers are trusted: addresses or networks, comma-separated; '*' trusts all.",
        group="proxy",
    )

    # -- TLS ----------------------------------------------------------------------------
    ssl_certfile: str | None = option(None, "TLS certificate chain file (PEM); turns TLS on.", group="tls")
    ssl_keyfile: str | None = option(None, "TLS private key file (PEM).", group="tls")
    ssl_keyfile_password: str | None = option(None, "Password of the private key.", group="tls")
    ssl_ca_certs: str | None = option(None, "CA certificates to verify client certificates with.", group="tls")
    ssl_cert_reqs: Literal["none", "optional", "required"] = option(
        "none", "Client certificates: not asked for, verified when sent, or required.", group="tls"
    )
    ssl_min_version: Literal["TLSv1.2", "TLSv1.3"] = option("TLSv1.2", "Oldest TLS version accepted.", group="tls")

    def __post_init__(self) -> None:
        for opt in options():
            value = getattr(self, opt.name)
            if opt.choices is not None and value not in opt.choices:
                raise ConfigError(f"{opt.name}={value!r} is not one of: {', '.join(opt.choices)}")
        for opt in options():
            value = getattr(self, opt.name)
            if opt.type in (int, float) and value is not None and value < 0:
                raise ConfigError(f"{opt.name}={value!r} must not be negative")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port={self.port!r} is not between 0 and 65535")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers!r} must be at least 1")
        if not 9 <= self.ws_deflate_window_bits <= 15:
            raise ConfigError(f"ws_deflate_window_bits={self.ws_deflate_window_bits!r} is not between 9 and 15")
        if not 1 <= self.ws_deflate_mem_level <= 9:
            raise ConfigError(f"ws_deflate_mem_level={self.ws_deflate_mem_level!r} is not between 1 and 9")
        if self.metrics is not None:
            metrics_address(self.metrics)
        for name in ("health_path", "liveness_path"):
            path = getattr(self, name)
            if path is not None and not path.startswith("/"):
                raise ConfigError(f"{name}={path!r} must start with '/'")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("ssl_keyfile is set but ssl_certfile is not")

    @property
    def supervised(self) -> bool:
        """Served by the supervisor and its worker processes: more than one worker, or
        a worker that is to be replaced (by requests, memory or age)."""
        return self.workers > 1 or bool(self.max_requests or self.max_worker_memory or self.max_worker_age)

    # -- building -----------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "settings") -> Config:
        """Build from a mapping of field names (``settings.CHANNELSERVER``, say).

        An unknown key is a :class:`ConfigError` naming it and the closest valid key.
        """
        known = {opt.name: opt for opt in options()}
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(unknown_key_message(key, source))
            converted[key] = coerce(known[key], value)
        return cls(**converted)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def unknown_key_message(key: str, source: str) -> str:
    names = [opt.name for opt in options()]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
    return f"unknown key {key!r} in {source}{hint}"


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(base type, optional) of a field annotation."""
    args = get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def options() -> Iterator[Option]:
    """The settings, in definition order."""
    hints = get_type_hints(Config)
    for f in fields(Config):
        base, _ = _unwrap(hints[f.name])
        choices = tuple(get_args(base)) if getattr(base, "__origin__", None) is Literal else None
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[operator]
        yield Option(
            name=f.name,
            type=str if choices else base,
            default=default,
            help=f.metadata["help"],
            unit=f.metadata["unit"],
            flag="--" + f.name.replace("_", "-"),
            choices=choices,
            group=f.metadata["group"],
        )


def coerce(opt: Option, value: Any) -> Any:
    """Turn a settings value or a flag string into the field's type, or raise ConfigError."""
    hints = get_type_hints(Config)
    _, optional = _unwrap(hints[opt.name])
    if value is None or (optional and isinstance(value, str) and value.lower() in {"", "none"}):
        if optional:
            return None
        raise ConfigError(f"{opt.name} may not be None")
    try:
        if opt.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
                return True
            if isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError
        if opt.type is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if opt.type is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if opt.name == "forwarded_allow_ips":
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(str(v) for v in value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        kind = {bool: "a boolean", int: "an integer", float: "a number"}.get(opt.type, "a string")
        raise ConfigError(f"{opt.name}={value!r} is not {kind}") from None


# -- command line generation ---------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
    """Add one flag per Config field. Defaults are left unset (None) so a caller can tell
    "given on the command line" from "not given" and layer settings underneath."""
    groups: dict[str, Any] = {}
    for opt in options():
        if opt.name in skip:
            continue
        group = groups.get(opt.group)
        if group is None:
            group = groups[opt.group] = parser.add_argument_group(f"{opt.group} options")
        text = opt.help + (f" [{opt.unit}]" if opt.unit else "") + f" (default: {opt.default_text})"
        if opt.is_bool:
            group.add_argument(
                opt.flag,
                dest=opt.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        else:
            group.add_argument(
                opt.flag,
                dest=opt.name,
                default=None,
                metavar=opt.name.upper(),
                choices=opt.choices,
                help=text,
            )


def values_from_args(namespace: argparse.Namespace) -> dict[str, Any]:
    """The Config values given on a command line (flags not given are left out)."""
    given: dict[str, Any] = {}
    for opt in options():
        value = getattr(namespace, opt.name, None)
        if value is not None:
            given[opt.name] = coerce(opt, value)
    return given


def config_from_args(namespace: argparse.Namespace, base: Mapping[str, Any] | None = None) -> Config:
    """Settings ``base`` (already validated names) overridden by the flags given."""
    values: dict[str, Any] = dict(base or {})
    values.update(values_from_args(namespace))
    return Config.from_mapping(values, source="command line")

"""Proxy headers: ``X-Forwarded-For/-Proto/-Host/-Port`` and RFC 7239 ``Forwarded``.

Applied to the scope only when the direct peer is trusted (``forwarded_allow_ips``). The
client is the right-most address of the forwarding chain that is not itself a trusted
proxy, so a client cannot spoof its address by sending a header of its own: the trusted
proxy appends the address it saw, and everything left of that is ignored. ``scheme``
becomes ``https``/``wss`` when the proxy says so; ``server`` takes the forwarded host and
port. Headers from an untrusted peer are left as they are and change nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

__all__ = ["TrustedProxies", "apply_proxy_headers"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, allow: Iterable[str]) -> None:
        self.all = False
        self.networks: list[Network] = []
        self.names: set[str] = set()
        for item in allow:
            item = item.strip()
            if not item:
                continue
            if item == "*":
                self.all = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.names.add(item)  # a unix socket path or a literal name

    def __contains__(self, host: object) -> bool:
        if self.all:
            return True
        if not isinstance(host, str):
            return False
        if host in self.names:
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in headers if key == name]
    return ",".join(values) if values else None


def _forwarded_elements(value: str) -> list[dict[str, str]]:
    """RFC 7239: ``for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"``."""
    elements = []
    for element in value.split(","):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            key, sep, val = pair.strip().partition("=")
            if sep:
                pairs[key.strip().lower()] = val.strip().strip('"')
        elements.append(pairs)
    return elements


def _split_host_port(node: str) -> tuple[str, int | None]:
    node = node.strip()
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    else:
        host, port = node, ""
    return host, int(port) if port.isdigit() else None


def apply_proxy_headers(scope: dict[str, Any], trusted: TrustedProxies) -> None:
    client = scope.get("client")
    server = scope.get("server")
    if client:
        peer = client[0]
    elif server and server[1] is None:
        peer = server[0]  # a unix socket: the socket's path stands for the peer
    else:
        peer = None
    if peer not in trusted:
        return
    headers = scope["headers"]
    forwarded = _header(headers, b"forwarded")
    chain: list[str]
    proto = host = None
    port: int | None = None
    if forwarded is not None:
        elements = _forwarded_elements(forwarded)
        chain = [e["for"] for e in elements if "for" in e]
        last = elements[-1] if elements else {}
        proto = last.get("proto")
        if "host" in last:
            host, port = _split_host_port(last["host"])
    else:
        xff = _header(headers, b"x-forwarded-for")
        chain = [part.strip() for part in xff.split(",")] if xff else []
        proto = _header(headers, b"x-forwarded-proto")
        xfh = _header(headers, b"x-forwarded-host")
        if xfh:
            host, port = _split_host_port(xfh.split(",")[-1])
        xfp = _header(headers, b"x-forwarded-port")
        if xfp and xfp.split(",")[-1].strip().isdigit():
            port = int(xfp.split(",")[-1].strip())
    # The client: right-most hop that is not a trusted proxy.
    for hop in reversed(chain):
        hop_host, hop_port = _split_host_port(hop)
        if (hop_host and hop_host not in trusted) or hop is chain[0]:
            if hop_host and hop_host.lower() != "unknown":
                scope["client"] = (hop_host, hop_port or 0)
            break
    if proto:
        proto = proto.split(",")[-1].strip().lower()
        secure = proto in ("https", "wss")
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        elif proto in ("http", "https"):
            scope["scheme"] = proto
    if host:
        default = 443 if scope["scheme"] in ("https", "wss") else 80
        scope["server"] = (host, port or default)

"""TLS and proxy headers against a real ``python -m channelserver`` (issue 6, items 5-6).

TLS: the test makes its own certificate authority and certificates (with the
``cryptography`` package when it is installed, else ``openssl`` on the command line; under
``CI=true`` having neither is a failure, not a skip), then serves HTTPS and WSS with them:
the scope says ``https`` / ``wss``; client certificates are verified when asked
(``--ssl-cert-reqs required``: no certificate, or one from another authority, is refused;
one the CA signed is served); ``--ssl-min-version TLSv1.3`` refuses a client that speaks
TLS 1.2 at most; an encrypted key opens with ``--ssl-keyfile-password``. A refused
handshake harms no one else and leaves no traceback in the log.

Proxy headers: ``X-Forwarded-For/-Proto/-Host/-Port`` and RFC 7239 ``Forwarded`` change
``client``, ``scheme`` and ``server`` only when the direct peer is trusted
(``--forwarded-allow-ips``, default loopback); from an untrusted peer they change nothing;
and behind a trusted proxy the client is the address the proxy saw, not whatever a client
put at the left of the chain.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from bench.hardening import server_env
from tests.apps.wire import ERROR_LINE, RawConnection
from tests.servers import ServerProcess, channelserver, tls_channelserver

APP = "hardening_apps:app"
PASSWORD = "correct horse battery staple"


def assert_no_traceback(text: str) -> None:
    bad = [line for line in text.splitlines() if ERROR_LINE.search(line)]
    assert not bad, "\n".join(bad[:20])


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    """Files of a test certificate authority and the certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    #: The server key again, encrypted with :data:`PASSWORD`.
    server_key_encrypted: Path
    client_cert: Path
    client_key: Path
    #: A client certificate signed by another authority, which the server does not trust.
    rogue_cert: Path
    rogue_key: Path


def _pki_with_cryptography(dest: Path) -> PKI:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path, password: str | None = None) -> Path:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
        )
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def authority(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def leaf(
        ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common: str, server: bool
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = authority("channelserver test CA")
    server_key, server_cert = leaf(ca_key, ca_cert, "127.0.0.1", server=True)
    client_key, client_cert = leaf(ca_key, ca_cert, "test client", server=False)
    rogue_ca_key, rogue_ca_cert = authority("some other CA")
    rogue_key, rogue_cert = leaf(rogue_ca_key, rogue_ca_cert, "rogue client", server=False)
    return PKI(
        ca=write_cert(ca_cert, dest / "ca.pem"),
        server_cert=write_cert(server_cert, dest / "server.pem"),
        server_key=write_key(server_key, dest / "server.key"),
        server_key_encrypted=write_key(server_key, dest / "server-encrypted.key", PASSWORD),
        client_cert=write_cert(client_cert, dest / "client.pem"),
        client_key=write_key(client_key, dest / "client.key"),
        rogue_cert=write_cert(rogue_cert, dest / "rogue.pem"),
        rogue_key=write_key(rogue_key, dest / "rogue.key"),
    )


def _pki_with_openssl(dest: Path, openssl: str) -> PKI:
    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=dest, check=True, capture_output=True)

    def authority(stem: str, common: str) -> None:
        run(
            *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", f"{stem}.key", "-out", f"{stem}.pem", "-days", "2", "-subj", f"/CN={common}"),
            *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        )

    def leaf(stem: str, ca: str, common: str, extensions: str) -> None:
        (dest / f"{stem}.ext").write_text(extensions)
        run(
            *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={common}"),
        )
        run(
            *("x509", "-req", "-in", f"{stem}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial"),
            *("-out", f"{stem}.pem", "-days", "2", "-sha256", "-extfile", f"{stem}.ext"),
        )

    authority("ca", "channelserver test CA")
    leaf(
        "server",
        "ca",
        "127.0.0.1",
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    leaf("client", "ca", "test client", "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
    authority("rogue-ca", "some other CA")
    leaf("rogue", "rogue-ca", "rogue client", "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
    run("pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{PASSWORD}", "-out", "server-encrypted.key")
    return PKI(
        ca=dest / "ca.pem",
        server_cert=dest / "server.pem",
        server_key=dest / "server.key",
        server_key_encrypted=dest / "server-encrypted.key",
        client_cert=dest / "client.pem",
        client_key=dest / "client.key",
        rogue_cert=dest / "rogue.pem",
        rogue_key=dest / "rogue.key",
    )


def make_pki(dest: Path) -> PKI:
    """Certificates made here and now: ``cryptography`` if importable, else ``openssl``."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            message = "neither the 'cryptography' package nor the 'openssl' command is available"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        return _pki_with_openssl(dest, openssl)
    return _pki_with_cryptography(dest)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_server(pki: PKI, *flags: str, key: Path | None = None) -> ServerProcess:
    return tls_channelserver(APP, pki.server_cert, key or pki.server_key, *flags, env=server_env())


def client_context(
    pki: PKI, cert: tuple[Path, Path] | None = None, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    """A client that verifies the server against the test CA (and its name, 127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    if maximum is not None:
        context.maximum_version = maximum
    return context


def tls_connection(port: int, context: ssl.SSLContext) -> RawConnection:
    conn = RawConnection(port)
    conn.sock = context.wrap_socket(conn.sock, server_hostname="127.0.0.1")
    return conn


def https_scope(port: int, context: ssl.SSLContext) -> dict[str, Any]:
    with tls_connection(port, context) as conn:
        conn.request("GET", "/scope")
        response = conn.read_response()
        assert response.status == 200, response
        scope: dict[str, Any] = response.json()
        return scope


def refused(port: int, context: ssl.SSLContext) -> BaseException:
    """The error a client gets whose handshake the server refuses. With TLS 1.3 a missing
    client certificate is only reported on the first read after the handshake."""
    try:
        with tls_connection(port, context) as conn:
            conn.request("GET", "/ok")
            response = conn.read_response()
    except (ssl.SSLError, OSError, EOFError) as exc:
        return exc
    raise AssertionError(f"served, status {response.status}, when it should have been refused")


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(pki: PKI) -> Iterator[ServerProcess]:
    with tls_server(pki, "--no-access-log") as proc:
        yield proc
        proc.stop()
        assert_no_traceback(proc.text)


def test_https_scope_says_https(tls: ServerProcess, pki: PKI) -> None:
    assert tls.port is not None
    scope = https_scope(tls.port, client_context(pki))
    assert scope["scheme"] == "https"
    assert scope["server"] == ["127.0.0.1", tls.port]
    assert scope["client"][0] == "127.0.0.1"


def test_wss_scope_says_wss_with_a_real_client(tls: ServerProcess, pki: PKI) -> None:
    with connect(f"wss://127.0.0.1:{tls.port}/ws/echo?token=wss", ssl=client_context(pki)) as ws:
        ws.send("over tls")
        assert ws.recv(timeout=5) == "over tls"
    assert tls.port is not None
    # The echo app recorded its scope; ask for it over HTTPS.
    with tls_connection(tls.port, client_context(pki)) as conn:
        conn.request("GET", "/_records/wss:scope?count=1&timeout=5")
        (scope,) = conn.read_response().json()
    assert scope["scheme"] == "wss"
    assert scope["type"] == "websocket"


def test_plain_http_on_the_tls_port_harms_no_one(tls: ServerProcess, pki: PKI) -> None:
    assert tls.port is not None
    with RawConnection(tls.port) as plain:
        plain.request("GET", "/ok")
        assert plain.closed_by_peer() or not plain.buffer.startswith(b"HTTP/1.1 200"), "no plain answer"
    assert https_scope(tls.port, client_context(pki))["scheme"] == "https"


def test_client_that_does_not_trust_the_server_is_refused_and_others_are_served(tls: ServerProcess, pki: PKI) -> None:
    assert tls.port is not None
    stranger = ssl.create_default_context()  # the system CAs: the test CA is not among them
    error = refused(tls.port, stranger)
    assert isinstance(error, ssl.SSLCertVerificationError), error
    assert https_scope(tls.port, client_context(pki))["scheme"] == "https"


def test_encrypted_key_opens_with_its_password(pki: PKI) -> None:
    with tls_server(pki, "--ssl-keyfile-password", PASSWORD, key=pki.server_key_encrypted) as proc:
        assert proc.port is not None
        assert https_scope(proc.port, client_context(pki))["scheme"] == "https"


def test_wrong_key_password_is_a_clear_startup_error(pki: PKI) -> None:
    proc = channelserver(
        APP,
        *("--ssl-certfile", str(pki.server_cert), "--ssl-keyfile", str(pki.server_key_encrypted)),
        *("--ssl-keyfile-password", "wrong"),
        env=server_env(),
        wait_for_port=False,
    )
    with proc:
        assert proc.wait(15) == 3
    assert "Cannot load TLS certificate" in proc.text
    assert "Traceback" not in proc.text


def test_client_certificate_required(pki: PKI) -> None:
    with tls_server(pki, "--ssl-ca-certs", str(pki.ca), "--ssl-cert-reqs", "required", "--no-access-log") as proc:
        assert proc.port is not None
        refused(proc.port, client_context(pki))
        refused(proc.port, client_context(pki, (pki.rogue_cert, pki.rogue_key)))
        signed = client_context(pki, (pki.client_cert, pki.client_key))
        assert https_scope(proc.port, signed)["scheme"] == "https"
        with connect(f"wss://127.0.0.1:{proc.port}/ws/echo", ssl=signed) as ws:
            ws.send("with a certificate")
            assert ws.recv(timeout=5) == "with a certificate"
        proc.stop()
    assert_no_traceback(proc.text)


def test_client_certificate_optional(pki: PKI) -> None:
    with tls_server(pki, "--ssl-ca-certs", str(pki.ca), "--ssl-cert-reqs", "optional", "--no-access-log") as proc:
        assert proc.port is not None
        assert https_scope(proc.port, client_context(pki))["scheme"] == "https"
        assert https_scope(proc.port, client_context(pki, (pki.client_cert, pki.client_key)))["scheme"] == "https"
        refused(proc.port, client_context(pki, (pki.rogue_cert, pki.rogue_key)))  # sent, so verified


def test_client_verification_without_ca_certs_is_a_startup_error(pki: PKI) -> None:
    proc = channelserver(
        APP,
        *("--ssl-certfile", str(pki.server_cert), "--ssl-keyfile", str(pki.server_key)),
        *("--ssl-cert-reqs", "required"),
        env=server_env(),
        wait_for_port=False,
    )
    with proc:
        assert proc.wait(15) == 3
    assert "ssl_cert_reqs needs ssl_ca_certs" in proc.text


def test_minimum_version_tls13_refuses_a_tls12_client(pki: PKI) -> None:
    with tls_server(pki, "--ssl-min-version", "TLSv1.3", "--no-access-log") as proc:
        assert proc.port is not None
        error = refused(proc.port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
        assert isinstance(error, ssl.SSLError), error
        with tls_connection(proc.port, client_context(pki)) as conn:
            assert conn.sock.version() == "TLSv1.3"  # type: ignore[attr-defined]
        assert https_scope(proc.port, client_context(pki))["scheme"] == "https"
        proc.stop()
    assert_no_traceback(proc.text)


def test_an_idle_tls_keep_alive_connection_does_not_hold_the_drain(pki: PKI) -> None:
    """A client that keeps its TLS connection and does not read it (a connection pool)
    never answers the server's close_notify: the drain waits for it a bounded moment
    (TLS_SHUTDOWN_TIMEOUT, 2 s), not graceful_timeout (asyncio's and uvloop's 30 s)."""
    with tls_server(pki, "--graceful-timeout", "20") as server:
        assert server.port is not None
        conn = tls_connection(server.port, client_context(pki))
        try:
            conn.request("GET", "/scope")
            assert conn.read_response().status == 200
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            assert server.wait(15) == 0, server.text
            took = time.monotonic() - started
        finally:
            conn.sock.close()
    assert took < 6.0, f"the drain took {took:.1f}s"
    assert "still open after graceful_timeout" not in server.text


def test_default_minimum_version_serves_tls12(tls: ServerProcess, pki: PKI) -> None:
    assert tls.port is not None
    with tls_connection(tls.port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)) as conn:
        assert conn.sock.version() == "TLSv1.2"  # type: ignore[attr-defined]
        conn.request("GET", "/scope")
        assert conn.read_response().json()["scheme"] == "https"


# -- proxy headers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trusting() -> Iterator[ServerProcess]:
    """``--proxy-headers`` with the default trusted peers: loopback, which the tests are."""
    with channelserver(APP, "--proxy-headers", "--no-access-log", env=server_env()) as proc:
        yield proc


@pytest.fixture(scope="module")
def distrusting() -> Iterator[ServerProcess]:
    """``--proxy-headers`` trusting only 10.1.2.3: the tests' loopback peer is not trusted."""
    with channelserver(
        APP, "--proxy-headers", "--forwarded-allow-ips", "10.1.2.3", "--no-access-log", env=server_env()
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def plain() -> Iterator[ServerProcess]:
    """No ``--proxy-headers``: off by default."""
    with channelserver(APP, "--no-access-log", env=server_env()) as proc:
        yield proc


def scope_with(server: ServerProcess, headers: list[tuple[str, str]]) -> tuple[dict[str, Any], int]:
    """The HTTP scope of a request with ``headers``, and the client port it came from."""
    with RawConnection(server.port) as conn:
        conn.request("GET", "/scope", headers)
        response = conn.read_response()
        assert response.status == 200, response
        scope: dict[str, Any] = response.json()
        return scope, int(conn.sock.getsockname()[1])


def ws_scope_with(server: ServerProcess, headers: list[tuple[str, str]]) -> tuple[dict[str, Any], int]:
    """The WebSocket scope of a handshake with ``headers`` (the echo app records it)."""
    key = os.urandom(6).hex()
    with RawConnection(server.port) as conn:
        conn.ws_open(f"/ws/echo?token={key}", headers)
        port = int(conn.sock.getsockname()[1])
        with RawConnection(server.port) as ask:
            ask.request("GET", f"/_records/{key}:scope?count=1&timeout=5")
            (scope,) = ask.read_response().json()
    return scope, port


SPOOFING = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Port", "8443"),
]


@pytest.mark.parametrize(
    ("headers", "client", "scheme", "server"),
    [
        ([("X-Forwarded-For", "203.0.113.7")], ["203.0.113.7", 0], "http", None),
        ([("X-Forwarded-Proto", "https")], None, "https", None),
        ([("X-Forwarded-Host", "example.com")], None, "http", ["example.com", 80]),
        ([("X-Forwarded-Host", "example.com"), ("X-Forwarded-Proto", "https")], None, "https", ["example.com", 443]),
        ([("X-Forwarded-Host", "example.com:8080")], None, "http", ["example.com", 8080]),
        ([("X-Forwarded-Host", "example.com"), ("X-Forwarded-Port", "8443")], None, "http", ["example.com", 8443]),
        (SPOOFING, ["203.0.113.7", 0], "https", ["evil.example", 8443]),
        (
            [("Forwarded", "for=192.0.2.60;proto=https;host=example.org")],
            ["192.0.2.60", 0],
            "https",
            ["example.org", 443],
        ),
        ([("Forwarded", 'for="[2001:db8::1]:4711"')], ["2001:db8::1", 4711], "http", None),
        (
            [("Forwarded", 'for="198.51.100.17:5555";host="example.net:8000"')],
            ["198.51.100.17", 5555],
            "http",
            ["example.net", 8000],
        ),
    ],
    ids=[
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-host-https-default-port",
        "x-forwarded-host-with-port",
        "x-forwarded-port",
        "all-x-forwarded",
        "forwarded",
        "forwarded-ipv6-for",
        "forwarded-quoted-host-port",
    ],
)
def test_trusted_proxy_headers_change_the_scope(
    trusting: ServerProcess,
    headers: list[tuple[str, str]],
    client: list[Any] | None,
    scheme: str,
    server: list[Any] | None,
) -> None:
    scope, port = scope_with(trusting, headers)
    assert scope["client"] == (client or ["127.0.0.1", port])
    assert scope["scheme"] == scheme
    assert scope["server"] == (server or ["127.0.0.1", trusting.port])


def test_trusted_proxy_headers_change_the_websocket_scope(trusting: ServerProcess) -> None:
    scope, _ = ws_scope_with(
        trusting,
        [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "ws.example")],
    )
    assert scope["client"] == ["203.0.113.9", 0]
    assert scope["scheme"] == "wss"
    assert scope["server"] == ["ws.example", 443]


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        # The client sent "X-Forwarded-For: 6.6.6.6"; the proxy appended the address it saw.
        ([("X-Forwarded-For", "6.6.6.6, 198.51.100.23")], ["198.51.100.23", 0]),
        # The same lie, as a header line of its own before the proxy's.
        ([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.23")], ["198.51.100.23", 0]),
        # A chain through a second trusted proxy (loopback): the first untrusted hop from the right.
        ([("X-Forwarded-For", "6.6.6.6, 198.51.100.23, 127.0.0.1")], ["198.51.100.23", 0]),
        ([("Forwarded", "for=6.6.6.6, for=198.51.100.23")], ["198.51.100.23", 0]),
    ],
    ids=["x-forwarded-for-list", "x-forwarded-for-two-lines", "through-two-proxies", "forwarded-list"],
)
def test_spoofed_leftmost_entry_behind_a_trusted_proxy_is_ignored(
    trusting: ServerProcess, headers: list[tuple[str, str]], client: list[Any]
) -> None:
    scope, _ = scope_with(trusting, headers)
    assert scope["client"] == client


FORWARDED_SPOOF = [("Forwarded", "for=203.0.113.7;proto=https;host=evil.example")]


@pytest.mark.parametrize("headers", [SPOOFING, FORWARDED_SPOOF], ids=["x-forwarded", "forwarded"])
@pytest.mark.parametrize("fixture", ["distrusting", "plain"])
def test_proxy_headers_from_an_untrusted_peer_change_nothing(
    request: pytest.FixtureRequest, fixture: str, headers: list[tuple[str, str]]
) -> None:
    server: ServerProcess = request.getfixturevalue(fixture)
    scope, port = scope_with(server, headers)
    assert scope["client"] == ["127.0.0.1", port]
    assert scope["scheme"] == "http"
    assert scope["server"] == ["127.0.0.1", server.port]
    ws, ws_port = ws_scope_with(server, headers)
    assert ws["client"] == ["127.0.0.1", ws_port]
    assert ws["scheme"] == "ws"
    assert ws["server"] == ["127.0.0.1", server.port]


def test_forwarded_allow_ips_takes_networks() -> None:
    """``127.0.0.0/8`` trusts the loopback peer (and so honours its headers)."""
    with channelserver(
        APP, "--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8,127.0.0.0/8", "--no-access-log", env=server_env()
    ) as proc:
        scope, _ = scope_with(proc, [("X-Forwarded-For", "203.0.113.50"), ("X-Forwarded-Proto", "https")])
    assert (scope["client"], scope["scheme"]) == (["203.0.113.50", 0], "https")


@pytest.mark.parametrize("allow", ["path", "*"])
def test_proxy_on_a_unix_socket_is_trusted_when_listed(tmp_path: Path, allow: str) -> None:
    """Behind a proxy on a Unix socket the peer has no address; listing the socket path in
    ``--forwarded-allow-ips`` (the literal form the setting takes, next to addresses and
    networks) trusts it, as ``*`` does."""
    path = str(tmp_path / "cs.sock")
    proc = channelserver(
        APP,
        *("--uds", path, "--proxy-headers", "--forwarded-allow-ips", path if allow == "path" else "*"),
        "--no-access-log",
        env=server_env(),
        wait_for_port=False,
    )
    with proc:
        proc.wait_for(re.compile(rb"Listening on unix:"), 30)
        with RawConnection(uds=path) as conn:
            conn.request("GET", "/scope", [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
            scope = conn.read_response().json()
    assert (scope["client"], scope["scheme"]) == (["203.0.113.7", 0], "https")

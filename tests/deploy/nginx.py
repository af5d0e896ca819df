"""A real nginx in front of several instances: its configuration and its process.

:func:`config` writes the configuration docs/deployment.md recommends, with every path
inside one directory (pid, logs, temp files), so the test needs no root and leaves nothing
behind. :func:`nginx` runs it in the foreground (``daemon off``) under
:class:`~tests.servers.ServerProcess` and stops it with SIGQUIT (graceful), then reads its
access log.

What the configuration does, in the order of the file:

- one upstream with every instance, ``max_fails=1 fail_timeout=FAIL_TIMEOUT``: open-source
  nginx has no active health checks, so an instance is taken out for ``FAIL_TIMEOUT``
  seconds after one failed attempt (refused connection, reset, timeout, or a 503 since
  ``http_503`` is listed in ``proxy_next_upstream``), and tried again after;
- ``keepalive``: idle connections to the instances are reused for plain HTTP, for at most
  ``keepalive_timeout 4s``: shorter than the server's ``keep_alive_timeout`` (5 s), so nginx
  never sends a request on a connection the server is closing (nginx's default is 60 s);
- plain HTTP: ``proxy_next_upstream error timeout http_503`` so a request that meets a
  stopped or draining instance goes to the next one (GET and HEAD always; POST only when
  nginx had not sent it yet, unless ``non_idempotent`` is added);
- WebSocket handshakes (``Upgrade: websocket``) go to a named location of their own through
  ``error_page 418`` (``return`` is one of the uses of ``if`` nginx documents as safe),
  with the upgrade headers and a long ``proxy_read_timeout``: a quiet subscription must not
  be cut by the proxy. Plain HTTP keeps a short one.
- ``add_header X-Upstream $upstream_addr always``: the instance (or instances, after a
  retry) that answered, so the test tells which instance accepted each handshake.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.demo.conftest import require_executable
from tests.servers import ServerProcess

#: Seconds an instance stays out of the upstream after one failed attempt.
FAIL_TIMEOUT = 2
#: The access-log line: enough to tell retries (several upstream addresses) and their statuses.
LOG_FORMAT = '$msec $status "$request" upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time'
LOG_LINE = re.compile(
    r'^(?P<msec>[\d.]+) (?P<status>\d+) "(?P<request>[^"]*)" '
    r"upstream=(?P<upstream>\S*(?:, \S+)*) upstream_status=(?P<upstream_status>\S*(?:, \S+)*) rt=(?P<rt>[\d.]+)$"
)

TEMPLATE = """\
daemon off;
worker_processes 1;
{user}pid {dir}/nginx.pid;
error_log stderr notice;
worker_rlimit_nofile 8192;

events {{
    worker_connections 4096;
}}

http {{
    log_format deploy '{log_format}';
    access_log {dir}/access.log deploy;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream channelserver {{
{servers}
        keepalive 32;
        keepalive_timeout 4s;
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            error_page 418 = @websocket;
            if ($http_upgrade = "websocket") {{
                return 418;
            }}
            proxy_pass http://channelserver;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
            add_header X-Upstream $upstream_addr always;
        }}

        location @websocket {{
            proxy_pass http://channelserver;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 2s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def config(directory: Path, port: int, upstreams: Sequence[int]) -> Path:
    """Write ``nginx.conf`` into ``directory``: listen on ``port``, proxy to ``upstreams``."""
    servers = "\n".join(
        f"        server 127.0.0.1:{upstream} max_fails=1 fail_timeout={FAIL_TIMEOUT}s;" for upstream in upstreams
    )
    # As root, the master would switch its worker to "nobody", which cannot write the
    # temp directories of a pytest tmp_path; unprivileged, the directive is not needed.
    user = "user root;\n" if os.geteuid() == 0 else ""
    path = directory / "nginx.conf"
    path.write_text(
        TEMPLATE.format(dir=directory, port=port, servers=servers, user=user, log_format=LOG_FORMAT.replace("'", "\\'"))
    )
    return path


@dataclass(frozen=True)
class Access:
    """One line of nginx's access log."""

    at: float
    status: int
    request: str
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]
    seconds: float


def read_access_log(directory: Path) -> list[Access]:
    path = directory / "access.log"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            raise AssertionError(f"nginx access log line not understood: {line!r}")
        lines.append(
            Access(
                at=float(match["msec"]),
                status=int(match["status"]),
                request=match["request"],
                upstreams=tuple(match["upstream"].split(", ")) if match["upstream"] else (),
                upstream_statuses=tuple(match["upstream_status"].split(", ")) if match["upstream_status"] else (),
                seconds=float(match["rt"]),
            )
        )
    return lines


@contextmanager
def nginx(directory: Path, port: int, upstreams: Sequence[int]) -> Iterator[ServerProcess]:
    """nginx in the foreground on ``port``; stopped gracefully (SIGQUIT) at the end."""
    binary = require_executable("nginx", "/usr/sbin/nginx")
    conf = config(directory, port, upstreams)
    check = ServerProcess([binary, "-t", "-p", str(directory), "-e", "stderr", "-c", str(conf)], wait_for_port=False)
    code = check.wait(15)
    check.close()
    assert code == 0, f"nginx -t failed:\n{check.text}"
    with ServerProcess([binary, "-p", str(directory), "-e", "stderr", "-c", str(conf)], wait_for_port=False) as server:
        yield server
        server.stop(signal.SIGQUIT, timeout=15)

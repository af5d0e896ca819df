#!/usr/bin/env bash
# System packages the tests use for real: redis-server (the channel layer), Debian's
# chromium (the demo page in a real browser), nginx (the load balancer in front of
# several instances, tests/deploy), prometheus (scraping the --metrics listener,
# tests/integration/test_prometheus.py), nghttp2-client (nghttp and h2load, HTTP/2
# clients, tests/integration/test_http2_clients.py) and curl. Installed with apt-get when missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Debian installs nginx in /usr/sbin, which is not on an unprivileged user's PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
# curl: the HTTP/2 tests' client over TLS (ALPN), h2c and Upgrade (tests/integration/test_http2.py).
command -v curl >/dev/null 2>&1 || need+=(curl)
# One package holds both HTTP/2 clients.
{ command -v nghttp >/dev/null 2>&1 && command -v h2load >/dev/null 2>&1; } || need+=(nghttp2-client)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "system-deps: need ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

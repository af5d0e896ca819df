"""The TLS context the config asks for."""

from __future__ import annotations

import ssl

from ..config import Config
from ..errors import StartupError

__all__ = ["ssl_context"]

_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
#: What ALPN offers for each ``http`` setting, the server's preference first.
_ALPN = {"auto": ["h2", "http/1.1"], "1": ["http/1.1"], "2": ["h2"]}


def ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.ssl_certfile:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[config.ssl_min_version]
    try:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, password=config.ssl_keyfile_password)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"Cannot load TLS certificate {config.ssl_certfile!r}: {exc}") from None
    context.verify_mode = _REQS[config.ssl_cert_reqs]
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(f"Cannot load CA certificates {config.ssl_ca_certs!r}: {exc}") from None
    elif context.verify_mode != ssl.CERT_NONE:
        raise StartupError("ssl_cert_reqs needs ssl_ca_certs to verify client certificates with")
    context.set_alpn_protocols(_ALPN[config.http])
    return context

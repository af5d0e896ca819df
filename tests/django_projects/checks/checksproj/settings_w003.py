"""W003: no http entry in the ProtocolTypeRouter."""

from checksproj.settings import *  # noqa: F403

ASGI_APPLICATION = "checksproj.asgi_no_http.application"

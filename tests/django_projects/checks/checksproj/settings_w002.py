"""W002: no OriginValidator in front of the websocket router."""

from checksproj.settings import *  # noqa: F403

ASGI_APPLICATION = "checksproj.asgi_no_origin.application"

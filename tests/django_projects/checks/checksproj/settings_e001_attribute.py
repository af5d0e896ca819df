"""E001: the module has no such attribute."""

from checksproj.settings import *  # noqa: F403

ASGI_APPLICATION = "checksproj.asgi.aplication"

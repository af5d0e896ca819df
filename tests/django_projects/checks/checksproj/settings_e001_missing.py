"""E001: ASGI_APPLICATION is not set."""

from checksproj.settings import *  # noqa: F403

del ASGI_APPLICATION  # noqa: F821

"""E001: the application module raises ImportError."""

from checksproj.settings import *  # noqa: F403

ASGI_APPLICATION = "checksproj.asgi_broken.application"

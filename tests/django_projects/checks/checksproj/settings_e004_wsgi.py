"""E004: get_wsgi_application() inside the ASGI router."""

from checksproj.settings import *  # noqa: F403

ASGI_APPLICATION = "checksproj.asgi_wsgi.application"

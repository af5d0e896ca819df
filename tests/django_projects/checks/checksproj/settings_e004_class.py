"""E004: a consumer class without .as_asgi()."""

from checksproj.settings import *  # noqa: F403

ASGI_APPLICATION = "checksproj.asgi_class.application"

"""System checks (``manage.py check``) for projects served by channelserver.

Each finds a misconfiguration that would otherwise surface only when a request or a
WebSocket hits it, often only in production. Ids and meanings (docs/django.md lists them
with examples):

- ``channelserver.E001`` ``settings.ASGI_APPLICATION`` is missing or cannot be imported.
- ``channelserver.E002`` ``settings.CHANNELSERVER`` has a key that is not a setting.
- ``channelserver.E003`` ``settings.CHANNELSERVER`` is not a dict, or has a bad value.
- ``channelserver.E004`` something in the application is not an ASGI 3 application: a
  WSGI handler, or a consumer class routed without ``.as_asgi()``.
- ``channelserver.W001`` ``InMemoryChannelLayer`` with more than one worker: group
  messages and subscriptions do not cross worker processes.
- ``channelserver.W002`` nothing checks the ``Origin`` of WebSocket handshakes
  (no ``AllowedHostsOriginValidator`` / ``OriginValidator`` in front of the router), so any
  web page can open a WebSocket with the visitor's cookies.
- ``channelserver.W003`` a ``ProtocolTypeRouter`` without an ``"http"`` entry: every
  HTTP request (admin, static files, health checks) fails with an exception.

The checks are registered by :class:`channelserver.apps.ChannelServerConfig` with the tag
``channelserver``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core import checks

from . import django_config
from .errors import ConfigError, StartupError

__all__ = [
    "TAG",
    "channel_layer_warnings",
    "check_application",
    "check_channel_layers",
    "check_settings",
    "register",
]

TAG = "channelserver"
DOCS = "See docs/django.md, section 'System checks'."
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


# -- settings.CHANNELSERVER --------------------------------------------------------------


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E002 / E003: every problem with ``settings.CHANNELSERVER``, one message each."""
    messages: list[checks.CheckMessage] = []
    for problem in django_config.settings_problems():
        if problem.kind == "unknown":
            messages.append(
                checks.Error(
                    problem.message,
                    hint="Keys of settings.CHANNELSERVER are the names of the settings in docs/settings.md "
                    "(the flags without the leading '--', with '_' for '-').",
                    obj=django_config.SOURCE,
                    id="channelserver.E002",
                )
            )
        else:
            messages.append(
                checks.Error(
                    problem.message,
                    hint="settings.CHANNELSERVER is a dict of setting name to value; docs/settings.md gives "
                    "each setting's type, unit and default.",
                    obj=django_config.SOURCE,
                    id="channelserver.E003",
                )
            )
    return messages


# -- channel layers --------------------------------------------------------------------


def _in_memory_aliases() -> list[str]:
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if not isinstance(layers, dict):
        return []
    aliases = []
    for alias, conf in layers.items():
        backend = conf.get("BACKEND") if isinstance(conf, dict) else None
        if not isinstance(backend, str):
            continue
        if backend == IN_MEMORY_LAYER:
            aliases.append(alias)
            continue
        try:
            from channels.layers import InMemoryChannelLayer
            from django.utils.module_loading import import_string

            cls = import_string(backend)
        except Exception:
            continue  # channels' own checks and start-up report an unimportable backend
        if isinstance(cls, type) and issubclass(cls, InMemoryChannelLayer):
            aliases.append(alias)
    return aliases


def channel_layer_warnings(workers: int, *, where: str) -> list[checks.CheckMessage]:
    """W001 for ``workers`` worker processes (``runchannelserver --workers`` calls this
    with its own count, which ``manage.py check`` cannot see)."""
    if workers <= 1:
        return []
    return [
        checks.Warning(
            f"CHANNEL_LAYERS[{alias!r}] is {IN_MEMORY_LAYER} but {where} asks for {workers} worker processes: "
            "group messages and subscriptions sent in one worker never reach consumers in the others.",
            hint="Use a layer shared between processes, such as channels_redis.core.RedisChannelLayer "
            "(pip install channels-redis), or run a single worker.",
            obj=f"CHANNEL_LAYERS[{alias!r}]",
            id="channelserver.W001",
        )
        for alias in _in_memory_aliases()
    ]


def check_channel_layers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001 for the worker count of the settings (``$WEB_CONCURRENCY`` included)."""
    try:
        from_settings = django_config.settings_values()
        workers = django_config.config_from_settings().workers
    except ConfigError:
        return []  # reported by check_settings
    where = "settings.CHANNELSERVER['workers']" if "workers" in from_settings else "$WEB_CONCURRENCY"
    return channel_layer_warnings(workers, where=where)


# -- the application ---------------------------------------------------------------------


def _unwrap(app: Any) -> Iterator[Any]:
    """What an application wraps: middleware's inner app, a router's routes."""
    from channels.routing import ProtocolTypeRouter, URLRouter

    if isinstance(app, ProtocolTypeRouter):
        yield from app.application_mapping.values()
        return
    if isinstance(app, URLRouter):
        for route in app.routes:
            callback = getattr(route, "callback", None)
            if callback is not None:
                yield callback
        return
    for attr in ("inner", "application", "app"):
        inner = getattr(app, attr, None)
        if inner is not None and inner is not app and not inspect.ismodule(inner):
            yield inner
            return


def _walk(app: Any, seen: set[int] | None = None) -> Iterator[Any]:
    seen = set() if seen is None else seen
    if id(app) in seen:
        return
    seen.add(id(app))
    yield app
    for inner in _unwrap(app):
        yield from _walk(inner, seen)


def _origin_checked(app: Any, seen: set[int] | None = None) -> bool:
    """Whether every WebSocket route below ``app`` passes an OriginValidator first."""
    from channels.routing import URLRouter
    from channels.security.websocket import OriginValidator

    seen = set() if seen is None else seen
    if id(app) in seen:
        return False
    seen.add(id(app))
    if isinstance(app, OriginValidator):
        return True
    inner = list(_unwrap(app))
    if isinstance(app, URLRouter):
        return bool(inner) and all(_origin_checked(i, seen) for i in inner)
    return len(inner) == 1 and _origin_checked(inner[0], seen)


def _name(obj: Any) -> str:
    if inspect.isclass(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__} instance"


def _application_messages(app: Any) -> list[checks.CheckMessage]:
    from channels.routing import ProtocolTypeRouter
    from django.core.handlers.wsgi import WSGIHandler

    target = str(getattr(settings, "ASGI_APPLICATION", ""))
    messages: list[checks.CheckMessage] = []
    routers: list[ProtocolTypeRouter] = []
    for node in _walk(app):
        if isinstance(node, WSGIHandler):
            messages.append(
                checks.Error(
                    f"settings.ASGI_APPLICATION = {target!r} contains a WSGI application ({_name(node)}).",
                    hint="Use django.core.asgi.get_asgi_application() for HTTP, not get_wsgi_application().",
                    obj=target,
                    id="channelserver.E004",
                )
            )
        elif inspect.isclass(node):
            hint = (
                f"Route {node.__qualname__}.as_asgi() instead of the class."
                if hasattr(node, "as_asgi")
                else "An ASGI 3 application is a callable taking (scope, receive, send), not a class."
            )
            messages.append(
                checks.Error(
                    f"settings.ASGI_APPLICATION = {target!r} routes to the class {_name(node)}, "
                    "which is not an ASGI 3 application: connections to it fail with a TypeError.",
                    hint=hint,
                    obj=target,
                    id="channelserver.E004",
                )
            )
        elif isinstance(node, ProtocolTypeRouter):
            routers.append(node)
    for router in routers:
        mapping = router.application_mapping
        if "http" not in mapping:
            messages.append(
                checks.Warning(
                    f"The ProtocolTypeRouter of settings.ASGI_APPLICATION = {target!r} has no 'http' entry, "
                    "so every HTTP request fails with \"No application configured for scope type 'http'\".",
                    hint='Add "http": django.core.asgi.get_asgi_application() to the ProtocolTypeRouter.',
                    obj=target,
                    id="channelserver.W003",
                )
            )
        websocket = mapping.get("websocket")
        if websocket is not None and not _origin_checked(websocket):
            messages.append(
                checks.Warning(
                    f"WebSocket connections to settings.ASGI_APPLICATION = {target!r} do not pass an "
                    "OriginValidator: any web page a visitor opens can connect to your consumers with the "
                    "visitor's cookies (cross-site WebSocket hijacking).",
                    hint='Wrap the websocket router: "websocket": AllowedHostsOriginValidator(URLRouter(...)) '
                    "(from channels.security.websocket). If your own middleware checks the Origin header, "
                    "add 'channelserver.W002' to SILENCED_SYSTEM_CHECKS.",
                    obj=target,
                    id="channelserver.W002",
                )
            )
    return messages


def check_application(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001, E004, W002, W003: import ``settings.ASGI_APPLICATION`` and inspect it."""
    try:
        app = django_config.import_asgi_application()
    except StartupError as exc:
        return [
            checks.Error(
                str(exc),
                hint="ASGI_APPLICATION is the dotted path of the application runchannelserver serves, "
                "usually 'yourproject.asgi.application'. " + DOCS,
                obj="settings.ASGI_APPLICATION",
                id="channelserver.E001",
            )
        ]
    try:
        import channels.routing  # noqa: F401
    except ImportError:
        return []
    return _application_messages(app)


def register() -> None:
    """Register the checks (from ``AppConfig.ready``)."""
    checks.register(check_settings, TAG)
    checks.register(check_channel_layers, TAG)
    checks.register(check_application, TAG)

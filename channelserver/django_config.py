"""Django settings -> :class:`~channelserver.config.Config`: the one translation.

Three places feed a Config when channelserver runs inside a Django project, in this order
of precedence: ``runchannelserver`` options, then ``settings.CHANNELSERVER`` (a dict of
Config field names), then the field defaults. This module is the only code that reads
those settings, so ``runchannelserver``, the system checks and the live-server test
process all agree on what a setting means and on the error text for a bad one.

It also resolves ``settings.ASGI_APPLICATION`` into the application, with errors that
name the setting and the import error, and offers the project's application (optionally
behind Django's static files handler) as ``module:attribute`` targets for worker
processes, which import their application by name:

- ``channelserver.django_config:application``
- ``channelserver.django_config:static_application``
"""

from __future__ import annotations

import argparse
import importlib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings

from .config import Config, coerce, config_from_args, options, unknown_key_message
from .errors import ConfigError, StartupError

__all__ = [
    "SETTING",
    "SOURCE",
    "SettingsProblem",
    "application_target",
    "config_for_command",
    "config_from_settings",
    "import_asgi_application",
    "load_application",
    "settings_problems",
    "settings_values",
]

SETTING = "CHANNELSERVER"
SOURCE = "settings.CHANNELSERVER"


@dataclass(frozen=True)
class SettingsProblem:
    """One thing wrong with ``settings.CHANNELSERVER``; the checks report each one."""

    kind: Literal["type", "unknown", "value"]
    key: str | None
    message: str


def _raw_settings() -> Any:
    return getattr(settings, SETTING, None)


def settings_problems() -> list[SettingsProblem]:
    """Every problem with ``settings.CHANNELSERVER``, not only the first.

    Unknown keys are named with the closest valid key; bad values are named with the
    value; values that are fine one by one but not together (``workers=0``, a negative
    timeout) are reported as Config itself words them.
    """
    raw = _raw_settings()
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return [SettingsProblem("type", None, f"{SOURCE} must be a dict, not {type(raw).__name__} ({raw!r})")]
    known = {opt.name: opt for opt in options()}
    problems: list[SettingsProblem] = []
    good: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in known:
            problems.append(SettingsProblem("unknown", str(key), unknown_key_message(str(key), SOURCE)))
            continue
        try:
            good[key] = coerce(known[key], value)
        except ConfigError as exc:
            problems.append(SettingsProblem("value", key, f"{SOURCE}: {exc}"))
    if not problems:
        try:
            Config.from_mapping(good, source=SOURCE)
        except ConfigError as exc:
            problems.append(SettingsProblem("value", None, f"{SOURCE}: {exc}"))
    return problems


def settings_values() -> dict[str, Any]:
    """The validated ``settings.CHANNELSERVER`` as a plain dict (empty when unset).

    Raises :class:`ConfigError` with the text of the first problem.
    """
    problems = settings_problems()
    if problems:
        raise ConfigError(problems[0].message)
    raw = _raw_settings()
    return dict(raw) if raw else {}


def config_from_settings(**overrides: Any) -> Config:
    """Config from ``settings.CHANNELSERVER``, with ``overrides`` (field names) on top."""
    values = settings_values()
    values.update(overrides)
    return Config.from_mapping(values, source=SOURCE)


def config_for_command(options: Mapping[str, Any], *, host: str | None, port: int | None) -> Config:
    """Config for ``runchannelserver``: its options over the settings over the defaults.

    ``options`` is the command's options dict (flags not given are ``None``); ``host`` and
    ``port`` come from the ``addrport`` argument (``None``: not given).
    """
    base = settings_values()
    if host is not None:
        base["host"] = host
    if port is not None:
        base["port"] = port
    return config_from_args(argparse.Namespace(**options), base=base)


# -- the application -----------------------------------------------------------------


def application_target() -> str:
    """``settings.ASGI_APPLICATION`` as a ``module:attribute`` target."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        raise StartupError(
            "settings.ASGI_APPLICATION is not set; set it to the dotted path of your ASGI "
            "application, for example 'mysite.asgi.application'."
        )
    if not isinstance(path, str) or "." not in path:
        raise StartupError(f"settings.ASGI_APPLICATION = {path!r} is not a dotted path like 'mysite.asgi.application'.")
    module, _, attr = path.rpartition(".")
    return f"{module}:{attr}"


def _where(exc: BaseException) -> str:
    """' (at file:line)' of the innermost frame, so an import error points at its source."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) or not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno})"


def import_asgi_application(*, raw: bool = False) -> Any:
    """Import ``settings.ASGI_APPLICATION``.

    Raises :class:`StartupError` naming the setting and the import error. With ``raw``,
    an exception raised while importing the module propagates as it is, so Django's
    autoreloader can see which file failed and watch it.
    """
    target = application_target()
    module_name, _, attr = target.partition(":")
    dotted = f"{module_name}.{attr}"
    if raw:
        module = importlib.import_module(module_name)
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise StartupError(
                f"settings.ASGI_APPLICATION = {dotted!r} could not be imported: "
                f"{type(exc).__name__}: {exc}{_where(exc)}"
            ) from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise StartupError(
            f"settings.ASGI_APPLICATION = {dotted!r}: module {module_name!r} has no attribute {attr!r}."
        ) from None
    if not callable(app):
        raise StartupError(f"settings.ASGI_APPLICATION = {dotted!r} is {type(app).__name__}, not an ASGI application.")
    return app


def load_application(*, static: bool, raw: bool = False) -> Any:
    """The project's ASGI application, behind Django's ``ASGIStaticFilesHandler`` when
    ``static`` (the handler serves ``STATIC_URL`` for HTTP and passes everything else,
    WebSocket and lifespan included, to the application)."""
    app = import_asgi_application(raw=raw)
    if static:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        app = ASGIStaticFilesHandler(app)
    return app


def __getattr__(name: str) -> Any:
    """``application`` / ``static_application``: built when a worker imports them by name,
    not when this module is imported."""
    if name in ("application", "static_application"):
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup(set_prefix=False)
        return load_application(static=name == "static_application")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

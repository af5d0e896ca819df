"""Import ``module:attribute`` application strings with one-line errors. Stdlib only."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .errors import StartupError

__all__ = ["import_app"]


def import_app(target: str) -> Any:
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise StartupError(f"Application must be given as 'module:attribute', got {target!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or (exc.name and module_name.startswith(exc.name + ".")):
            raise StartupError(f"Could not import module {module_name!r}: no module named {exc.name!r}") from None
        raise StartupError(f"Could not import {module_name!r}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise StartupError(f"Could not import {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise StartupError(f"Module {module_name!r} has no attribute {attrs!r}") from None
    if not callable(obj):
        raise StartupError(f"{target!r} is not callable: an ASGI application is a callable")
    return obj

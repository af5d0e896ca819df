"""Settings of ``basic``, a small Channels project the integration tests serve.

Environment knobs (set by the tests, each in its own process):

- ``BASIC_DB`` / ``BASIC_TEST_DB``: SQLite files (tests keep them in tmp_path);
- ``BASIC_DEBUG``: "0" turns DEBUG off;
- ``BASIC_CHANNELSERVER``: JSON for ``settings.CHANNELSERVER``;
- ``BASIC_ASGI``: ``ASGI_APPLICATION`` ("-" removes the setting);
- ``BASIC_LOGGING=custom``: a ``LOGGING`` that configures ``channelserver.access``.
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "tests-only-insecure-key"
DEBUG = os.environ.get("BASIC_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "channels",
    "channelserver",
    "basic",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "basic.urls"
TEMPLATES: list[dict[str, object]] = []

ASGI_APPLICATION = os.environ.get("BASIC_ASGI", "basic.asgi.application")
if ASGI_APPLICATION == "-":
    del ASGI_APPLICATION

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BASIC_DB", str(BASE_DIR / "db.sqlite3")),
        "TEST": {"NAME": os.environ.get("BASIC_TEST_DB")},
    }
}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

CHANNELSERVER = json.loads(os.environ.get("BASIC_CHANNELSERVER", "{}"))

if os.environ.get("BASIC_LOGGING") == "custom":
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "PROJECT-ACCESS %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "loggers": {"channelserver.access": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }

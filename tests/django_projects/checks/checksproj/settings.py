"""Base settings of ``checksproj``: a correct project, clean under ``manage.py check``.

Each ``settings_*`` module imports these and breaks one thing, so that one system check
fires (tests/integration/test_django_checks.py runs ``manage.py check --settings ...``).
"""

import os

SECRET_KEY = "tests-only-insecure-key"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "channels", "channelserver", "checksproj"]
ROOT_URLCONF = "checksproj.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("CHECKS_DB", ":memory:")}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
ASGI_APPLICATION = "checksproj.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
CHANNELSERVER = {"workers": 1, "ws_ping_interval": 30}

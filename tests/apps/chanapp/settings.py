"""Settings of the test Channels project: no database, an in-memory channel layer that
counts ``group_discard`` calls."""

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "chanapp.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"
ASGI_APPLICATION = "chanapp.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "chanapp.layers.CountingChannelLayer"}}

"""Settings of the ecosystem project; the environment chooses the database and channel layer."""

import os

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels", "tests.ecosystem.apps.ecoproj"]
ROOT_URLCONF = "tests.ecosystem.apps.ecoproj.urls"
ASGI_APPLICATION = "tests.ecosystem.apps.ecoproj.asgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ECOSYSTEM_DB", ":memory:"),
    }
}

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
_layer = os.environ.get("ECOSYSTEM_LAYER", "")
if _layer:
    # redis-py gives every socket read a 5 s timeout by default; RedisChannelLayer's
    # blocking pop waits up to 5 s, so idle receives need a longer one (as in the demo).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": LAYERS[_layer],
            "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

"""Settings of the scale benchmark's project; see ``bench/scaleproject/__init__.py``."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, Any] = {}
USE_TZ = True

#: ``BENCH_SCALE_LAYER`` -> the default channel layer.
LAYER = os.environ.get("BENCH_SCALE_LAYER", "memory")
if LAYER == "memory":
    # Channels' in-memory layer, sweeping expired entries once a second, not at every receive.
    CHANNEL_LAYERS: dict[str, Any] = {"default": {"BACKEND": "bench.scaleproject.layers.SweptInMemoryChannelLayer"}}
elif LAYER == "memory-stock":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
elif LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [os.environ["BENCH_REDIS_URL"]]},
        }
    }
elif LAYER == "core":
    # A socket read timeout above the layer's 5 s blocking pop (redis-py's own default of
    # 5 s would fail an idle receive every 5 s), as in demo_project/settings.py.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": os.environ["BENCH_REDIS_URL"], "socket_timeout": 30}]},
        }
    }
else:
    raise RuntimeError(f"BENCH_SCALE_LAYER must be memory, memory-stock, pubsub or core, not {LAYER!r}")

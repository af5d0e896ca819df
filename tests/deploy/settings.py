"""The demo project's settings with ``RedisPubSubChannelLayer`` on ``REDIS_URL``.

The deployment test runs several instances of the demo sharing one redis-server through
the pub/sub layer (the layer a deployment of GraphQL subscriptions picks: no per-message
polling, one SUBSCRIBE per channel). Everything else is the demo's own.
"""

import os

from demo_project.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # redis-py gives every socket read a 5 s timeout by default; as in the demo's settings.
        "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 30}]},
    }
}

"""``tests.ecosystem.apps.ecoproj``: the suite's Django project, served as
``tests.ecosystem.apps.ecoproj.asgi:application``.

One project for the Django-side libraries: Django views on the async ORM and a sync view,
a Channels ``AsyncWebsocketConsumer`` chatting through groups, and Strawberry's Channels
consumers (GraphQL over HTTP and both WebSocket protocols). The environment picks the
database (``ECOSYSTEM_DB``) and the channel layer (``ECOSYSTEM_LAYER`` = ``core`` for
``RedisChannelLayer`` or ``pubsub`` for ``RedisPubSubChannelLayer``, on ``REDIS_URL``);
see :mod:`.settings`.
"""

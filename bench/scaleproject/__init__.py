"""The app every server runs for ``bench/scale.py`` (``make bench-scale``):
``bench.scaleproject.asgi:application``, a Django + Channels + Strawberry project with no
database, no middleware and no templates, so that what grows with the connections is the
server and the Channels consumers users run.

- ``settings.py``: the channel layer comes from ``BENCH_SCALE_LAYER``: ``memory`` (the
  default: Channels' ``InMemoryChannelLayer`` with its expiry sweep at most once a second,
  ``layers.py`` says why), ``memory-stock`` (Channels' own), ``pubsub``
  (``RedisPubSubChannelLayer``) or ``core`` (``RedisChannelLayer``), the last two on
  ``BENCH_REDIS_URL``.
- ``consumers.py``: ``AsyncWebsocketConsumer`` subclasses. ``/ws/idle`` joins a group and
  accepts; ``/ws/subscribed`` does the same, then sends three 200-byte JSON messages (so a
  connection that negotiated permessage-deflate has compression contexts in use).
- ``schema.py``: one subscription, ``feed(topic)``, through Strawberry's
  ``listen_to_channel`` (the consumer's own channel joins the topic's group); it yields
  ``seq 0`` once the group is joined, so a client knows it is subscribed. One mutation,
  ``publish(topic, seq, text)``, ``group_send``s an event that every subscriber gets.
- ``asgi.py``: HTTP ``/graphql`` (Strawberry's Channels HTTP consumer, without a channel of
  its own) and a plain 200 on every other path; WebSocket ``/ws/idle``, ``/ws/subscribed``
  and ``/graphql`` (Strawberry's own Channels consumer, graphql-transport-ws).
"""

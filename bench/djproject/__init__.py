"""A small Django + Channels project, the one app every server runs for the Channels
workloads of ``bench/run.py`` (``bench.djproject.asgi:application``).

- ``settings.py``: what ``django-admin startproject`` writes (its installed apps and its
  seven middleware), plus Channels, with an in-memory SQLite database no request touches,
  ``DEBUG = False`` and ``ALLOWED_HOSTS = ["*"]``. Two channel layers: ``default`` is
  ``InMemoryChannelLayer``; ``redis`` is ``RedisPubSubChannelLayer`` on ``BENCH_REDIS_URL``
  (configured only when that variable is set: the harness starts a redis-server of its own).
  ``BENCH_DJANGO_MIDDLEWARE=none`` in the environment of ``bench/run.py`` drops the
  middleware (Django runs each middleware hook of an async request in a thread).
- ``views.py``: one async view answering a small ``HttpResponse`` at ``/``.
- ``consumers.py``: ``AsyncWebsocketConsumer`` subclasses: echo, connect-and-accept, and a
  group fan-out (subscribers ``group_add`` on connect; a trigger connection's message is
  ``group_send`` to the group, and every subscriber sends it on to its peer).
- ``asgi.py``: ``ProtocolTypeRouter`` with Django's ASGI handler for HTTP and a
  ``URLRouter`` of the consumers for WebSocket, no auth middleware (none of the consumers
  reads a user or a session).
"""

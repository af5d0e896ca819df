"""A small Django + Channels project for the core tests (``chanapp.asgi:application``).

It exercises the consumer patterns real projects use: a streaming ``AsyncHttpConsumer``,
a WebSocket consumer that answers from background tasks it spawns per message, and one
that keeps sending while its client leaves. Each consumer records through
:mod:`recorder` how often ``websocket_connect``, ``websocket_disconnect`` and the channel
layer's ``group_discard`` ran, so the tests can count them.
"""

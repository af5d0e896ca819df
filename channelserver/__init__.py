"""channelserver: an ASGI server for Django Channels and Strawberry GraphQL subscriptions."""

__version__ = "0.1.0"

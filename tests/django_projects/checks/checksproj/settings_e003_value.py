"""E003: a value of the wrong type."""

from checksproj.settings import *  # noqa: F403

CHANNELSERVER = {"ws_max_size": "16MB"}

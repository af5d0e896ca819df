"""E003: CHANNELSERVER is not a dict."""

from checksproj.settings import *  # noqa: F403

CHANNELSERVER = ["workers", 4]

"""E002: a misspelt key in CHANNELSERVER."""

from checksproj.settings import *  # noqa: F403

CHANNELSERVER = {"worker": 2, "ws_ping_interval": 30}

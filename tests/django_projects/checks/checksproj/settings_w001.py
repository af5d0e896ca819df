"""W001: the in-memory channel layer with four workers."""

from checksproj.settings import *  # noqa: F403

CHANNELSERVER = {"workers": 4}

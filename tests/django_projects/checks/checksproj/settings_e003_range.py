"""E003: values fine alone, invalid as a Config."""

from checksproj.settings import *  # noqa: F403

CHANNELSERVER = {"workers": 0}

"""W001 through $WEB_CONCURRENCY: no "workers" key (the test sets WEB_CONCURRENCY=3)."""

from checksproj.settings import *  # noqa: F403

CHANNELSERVER = {"ws_ping_interval": 30}

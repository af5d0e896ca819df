"""W002 silenced, as a project with its own Origin check would."""

from checksproj.settings import *  # noqa: F403

ASGI_APPLICATION = "checksproj.asgi_no_origin.application"
SILENCED_SYSTEM_CHECKS = ["channelserver.W002"]

"""The Django app: add ``"channelserver"`` to ``INSTALLED_APPS``.

That gives the project the ``runchannelserver`` management command and the
``channelserver.*`` system checks (see :mod:`channelserver.checks`). It does not replace
``runserver``.
"""

from __future__ import annotations

from django.apps import AppConfig


class ChannelServerConfig(AppConfig):
    name = "channelserver"
    verbose_name = "channelserver"

    def ready(self) -> None:
        """Register the system checks; nothing else happens at start-up."""
        from . import checks

        checks.register()

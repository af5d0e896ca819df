"""An in-memory channel layer that records each ``group_discard`` under its group name."""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer
from recorder import record


class CountingChannelLayer(InMemoryChannelLayer):
    async def group_discard(self, group: str, channel: str) -> None:
        record(f"group_discard:{group}", channel)
        await super().group_discard(group, channel)

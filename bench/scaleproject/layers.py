"""Channels' in-memory channel layer without its quadratic sweep.

``channels.layers.InMemoryChannelLayer`` runs ``_clean_expired`` at every ``receive`` and
``group_send``: a walk over every channel and every group member. Each new consumer starts
a ``receive`` on its channel, so the N-th connection costs O(N), and opening 10,000
WebSockets spends most of its time there whichever server runs the app (about two minutes
for 10,000 on a 2-core machine). This subclass keeps the same data structures (so the same
memory per connection) and sweeps at most once a second; nothing the benchmark does
expires sooner than that (messages after 60 s, group membership after a day).
``BENCH_SCALE_LAYER=memory-stock`` serves Channels' own class instead.
"""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer


class SweptInMemoryChannelLayer(InMemoryChannelLayer):
    sweep_interval = 1.0
    _last_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = now
        super()._clean_expired()

"""Hypercorn's settings in ``bench/h2.py`` (``--config python:bench.hypercorn_config``).

Hypercorn ends an HTTP/2 connection with GOAWAY after ``keep_alive_max_requests`` (1000 by
default) requests; h2load does not reconnect, so every request past the 1000th of each of
its connections failed, and the CPU per request was taken over a fifth of the requests.
channelserver and Granian have no such bound: lifted here, so that all three serve every
request on the same connections.
"""

keep_alive_max_requests = 1 << 31

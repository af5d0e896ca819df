"""The benchmark app with a cProfile switch, for ``bench/run.py --profile``.

``BENCH_PROFILE_OUT=FILE python -m channelserver ... bench.profiled:app`` serves the
benchmark app (``BENCH_PROFILE_APP``, ``module:attribute``, default ``bench.apps:app``; the
Channels workloads use ``bench.djproject.asgi:application``) plus two control paths, in the server's own process and thread:
``GET /__profile/start`` turns the profiler on; ``GET /__profile/stop`` turns it off and
writes the stats to FILE before it answers, so whoever got the answer can read the file.
``BENCH_PROFILE_TIMER``: ``wall`` (the default) is cProfile's own clock, cheap, but time
the process spends waiting for a CPU is charged to whatever function ran (on a busy
machine, mostly the one that wrote to the socket and so woke the client); ``cpu`` times
with this thread's CPU clock, immune to that, but each reading is a system call, which
makes the profiler cost about ten times the code it measures and weights functions by
their number of calls.
Start-up, warm-up and shutdown stay out of the profile; the profile covers exactly the
timed phase of ``bench/load.py --profile-control``.
"""

from __future__ import annotations

import cProfile
import importlib
import os
import time

from bench.apps import Receive, Scope, Send

_module, _, _attribute = os.environ.get("BENCH_PROFILE_APP", "bench.apps:app").partition(":")
bench_app = getattr(importlib.import_module(_module), _attribute)

_profiler = cProfile.Profile(time.thread_time) if os.environ.get("BENCH_PROFILE_TIMER") == "cpu" else cProfile.Profile()


async def _answer(send: Send, text: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(text))]})
    await send({"type": "http.response.body", "body": text})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"] == "/__profile/start":
        _profiler.enable()
        await _answer(send, b"profiling\n")
    elif scope["type"] == "http" and scope["path"] == "/__profile/stop":
        _profiler.disable()
        _profiler.dump_stats(os.environ["BENCH_PROFILE_OUT"])
        await _answer(send, b"written\n")
    else:
        await bench_app(scope, receive, send)

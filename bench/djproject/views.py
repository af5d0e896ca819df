"""The one view of the ``dj-view`` workload."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

HELLO = b"Hello, world!"


async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(HELLO, content_type="text/plain; charset=utf-8")

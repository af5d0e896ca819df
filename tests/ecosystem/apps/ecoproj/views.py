"""Django views: the async ORM in an async view, the same table from a sync view.

- ``POST /notes/async/?text=T``: ``acreate``, ``acount`` and an ``async for`` over the
  table, from an async view; reports the Task it ran in (one Task, from the first line to
  the answer) and the thread of two ``sync_to_async(thread_sensitive=True)`` calls.
- ``GET /notes/sync/``: ``count()`` and the texts from a sync view, which Django runs
  through ``sync_to_async(thread_sensitive=True)``; reports its thread and that no event
  loop runs there.
"""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse

from .models import Note


def task_id() -> int | None:
    task = asyncio.current_task()
    return None if task is None else id(task)


def thread_name() -> str:
    return threading.current_thread().name


async def notes_async(request: HttpRequest) -> HttpResponse:
    first = task_id()
    note = await Note.objects.acreate(text=request.GET["text"])
    count = await Note.objects.acount()
    texts = [n.text async for n in Note.objects.order_by("id")]
    sensitive = [await sync_to_async(thread_name, thread_sensitive=True)() for _ in range(2)]
    return JsonResponse(
        {
            "id": note.id,
            "count": count,
            "texts": texts,
            "tasks": [first, task_id()],
            "view_thread": thread_name(),
            "thread_sensitive": sensitive,
        }
    )


def notes_sync(request: HttpRequest) -> HttpResponse:
    try:
        asyncio.get_running_loop()
        loop_here = True
    except RuntimeError:
        loop_here = False
    return JsonResponse(
        {
            "count": Note.objects.count(),
            "texts": list(Note.objects.order_by("id").values_list("text", flat=True)),
            "thread": thread_name(),
            "event_loop_in_thread": loop_here,
        }
    )

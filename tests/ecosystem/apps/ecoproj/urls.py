from django.urls import path

from .views import notes_async, notes_sync

urlpatterns = [path("notes/async/", notes_async), path("notes/sync/", notes_sync)]

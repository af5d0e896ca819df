from __future__ import annotations

from django.urls import path

from bench.djproject.views import hello

urlpatterns = [path("", hello)]

"""The one plain Django view: ``/django/`` answers ``django ok``."""

from django.http import HttpRequest, HttpResponse
from django.urls import path


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"django ok", content_type="text/plain")


urlpatterns = [path("django/", hello)]

from django.http import HttpResponse
from django.urls import path

from basic.models import Note


def index(request):
    return HttpResponse("basic ok\n", content_type="text/plain")


def notes(request):
    return HttpResponse(str(Note.objects.count()), content_type="text/plain")


urlpatterns = [path("", index), path("notes/", notes)]

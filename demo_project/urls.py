from django.http import HttpResponse
from django.urls import path


def index(request):
    return HttpResponse("channelserver demo\n", content_type="text/plain")


urlpatterns = [path("", index)]

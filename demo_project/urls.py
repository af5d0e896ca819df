"""Django's routes: the live page. (GraphQL is routed in asgi.py, before Django.)"""

from django.urls import path

from demo_project.views import index

urlpatterns = [path("", index, name="index")]

"""The live page: a plain template; everything live happens in its static JavaScript."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from demo_project.models import MAX_AUTHOR_LENGTH, MAX_TEXT_LENGTH


def index(request: HttpRequest) -> HttpResponse:
    """The page, with the few values its script needs (as JSON, via ``json_script``)."""
    config = {"graphqlPath": "/graphql/", "maxTextLength": MAX_TEXT_LENGTH}
    return render(request, "demo_project/index.html", {"config": config, "max_author_length": MAX_AUTHOR_LENGTH})

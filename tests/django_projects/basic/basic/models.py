from django.db import models


class Note(models.Model):
    """A row the live-server test writes and the served view counts."""

    text = models.CharField(max_length=100)

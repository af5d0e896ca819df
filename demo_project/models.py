"""The demo's domain: chat rooms and the messages posted in them.

Kept deliberately small: what matters in the demo is how the rows travel (async ORM reads,
a mutation that saves then broadcasts through the channel layer), not the model itself.
"""

from __future__ import annotations

from django.db import models

#: Longest message text the mutation accepts; longer text is a GraphQL error, not a DB error.
MAX_TEXT_LENGTH = 500
#: Longest author name.
MAX_AUTHOR_LENGTH = 40


class Room(models.Model):
    """A chat room. Its slug names the channel-layer group its subscribers join."""

    slug = models.SlugField(max_length=50, unique=True)
    title = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def group_name(self) -> str:
        """The channel-layer group of this room (letters, digits, '-', '_', '.': valid for every layer)."""
        return f"room.{self.slug}"


class Message(models.Model):
    """One chat message, saved before it is broadcast so a late joiner can read it back."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.CharField(max_length=MAX_AUTHOR_LENGTH)
    text = models.TextField(max_length=MAX_TEXT_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.author}@{self.room_id}: {self.text[:30]}"

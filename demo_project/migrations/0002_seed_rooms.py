"""Seed the rooms the live page offers, so a freshly migrated database is ready to chat."""

from django.db import migrations

ROOMS = [("lobby", "Lobby"), ("random", "Random"), ("releases", "Releases")]


def create_rooms(apps, schema_editor):
    Room = apps.get_model("demo_project", "Room")
    for slug, title in ROOMS:
        Room.objects.get_or_create(slug=slug, defaults={"title": title})


def delete_rooms(apps, schema_editor):
    Room = apps.get_model("demo_project", "Room")
    Room.objects.filter(slug__in=[slug for slug, _ in ROOMS]).delete()


class Migration(migrations.Migration):
    dependencies = [("demo_project", "0001_initial")]

    operations = [migrations.RunPython(create_rooms, delete_rooms)]

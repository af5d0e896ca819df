"""The smallest Django settings the lifecycle test apps need: Channels and an in-memory layer.

Kept apart from ``demo_project`` so these tests depend only on what they define.
"""

SECRET_KEY = "lifecycle-tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
DATABASES: dict[str, dict[str, str]] = {}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

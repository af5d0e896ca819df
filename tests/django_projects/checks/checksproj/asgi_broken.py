"""E001: importing the application module fails."""

from checksproj.consumers import EchoConsumer  # noqa: F401
from checksproj.no_such_module import something  # noqa: F401

application = None

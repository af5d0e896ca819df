"""Live-server tests on channelserver.

:class:`ChannelServerProcess` keeps the contract of ``daphne.testing.DaphneProcess``, the
process class Channels' ``ChannelsLiveServerTestCase`` starts: the same constructor
(``host, get_application, kwargs=None, setup=None, teardown=None, port=None``) and the
same attributes the parent reads (``.ready``, a ``multiprocessing.Event`` set once the
server listens; ``.port``, a ``multiprocessing.Value`` holding the bound port; ``.errors``,
a ``multiprocessing.Queue`` of ``(exception, traceback text)``). ``kwargs`` are Config
settings (``{"ws_ping_interval": None}``), over ``settings.CHANNELSERVER`` when Django is
configured.

:class:`ChannelServerLiveServerTestCase` is ``ChannelsLiveServerTestCase`` served by
channelserver::

    from channelserver.testing import ChannelServerLiveServerTestCase

    class ChatTests(ChannelServerLiveServerTestCase):
        def test_echo(self):
            with websockets.sync.client.connect(self.live_server_ws_url + "/ws/echo/",
                                                origin=self.live_server_url) as ws:
                ...

``terminate()`` (SIGTERM) shuts the server down the way it does in production: open
WebSockets are closed with 1012 and app instances get their disconnect.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from collections.abc import Callable, Mapping
from typing import Any

try:
    from channels.testing import ChannelsLiveServerTestCase
except ImportError as exc:  # channels.testing imports daphne.testing; a project may not have Daphne
    if getattr(exc, "name", None) is None or not str(exc.name).startswith("daphne"):
        raise
    ChannelsLiveServerTestCase = None

__all__ = ["ChannelServerLiveServerTestCase", "ChannelServerProcess"]


class ChannelServerProcess(multiprocessing.Process):
    """A process serving ``get_application()`` with channelserver on ``host``, reporting
    the port it bound back to the parent (``DaphneProcess``' contract)."""

    def __init__(
        self,
        host: str,
        get_application: Callable[[], Any],
        kwargs: Mapping[str, Any] | None = None,
        setup: Callable[[], None] | None = None,
        teardown: Callable[[], None] | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__()
        self.host = host
        self.get_application = get_application
        self.kwargs = dict(kwargs or {})
        self.setup = setup
        self.teardown = teardown
        self.port = multiprocessing.Value("i", port if port is not None else 0)
        self.ready = multiprocessing.Event()
        self.errors: multiprocessing.Queue[tuple[BaseException, str]] = multiprocessing.Queue()

    def build_config(self) -> Any:
        """Config: ``kwargs`` over ``settings.CHANNELSERVER`` (if Django is configured),
        on ``host`` and the requested port, in one process."""
        from .config import Config

        values: dict[str, Any] = {}
        with contextlib.suppress(ImportError):
            from django.conf import settings

            if settings.configured:
                from .django_config import settings_values

                values.update(settings_values())
        values.update(self.kwargs)
        values.update(host=self.host, port=self.port.value, workers=1, max_requests=None)
        return Config.from_mapping(values, source="ChannelServerProcess kwargs")

    def run(self) -> None:
        try:
            from .server.server import run

            config = self.build_config()
            application = self.get_application()
            if self.setup is not None:
                self.setup()
            try:
                run(config, application, on_ready=self._ready)
            finally:
                if self.teardown is not None:
                    self.teardown()
        except BaseException as exc:
            # The parent reads it from the queue (it raises "did not start up" with it).
            self.errors.put((exc, traceback.format_exc()))

    def _ready(self, server: Any) -> None:
        if server.ports:
            self.port.value = server.ports[0]
            self.ready.set()


def _live_server_base() -> type:
    """Channels' ``ChannelsLiveServerTestCase``, or, when Daphne is not installed (Channels'
    testing module imports it), the same test case without it: Channels' ``setUpClass``
    and ``tearDownClass`` with the process class left to the subclass."""
    if ChannelsLiveServerTestCase is not None:
        return ChannelsLiveServerTestCase  # type: ignore[no-any-return]

    from functools import partial

    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections
    from django.test.testcases import TransactionTestCase
    from django.test.utils import modify_settings

    class LiveServerTestCase(TransactionTestCase):
        host = "localhost"
        _port: int
        _server_process: Any
        _live_server_modified_settings: Any
        ProtocolServerProcess: type = ChannelServerProcess
        static_wrapper: Any = ASGIStaticFilesHandler
        serve_static = True

        @property
        def live_server_url(self) -> str:
            return f"http://{self.host}:{self._port}"

        @property
        def live_server_ws_url(self) -> str:
            return f"ws://{self.host}:{self._port}"

        @classmethod
        def setUpClass(cls) -> None:
            for connection in connections.all():
                if connection.vendor == "sqlite" and getattr(connection, "is_in_memory_db", lambda: False)():
                    raise ImproperlyConfigured("ChannelLiveServerTestCase can not be used with in memory databases")
            super().setUpClass()
            cls._live_server_modified_settings = modify_settings(ALLOWED_HOSTS={"append": cls.host})
            cls._live_server_modified_settings.enable()
            get_application = partial(
                _make_application, static_wrapper=cls.static_wrapper if cls.serve_static else None
            )
            cls._server_process = cls.ProtocolServerProcess(cls.host, get_application, setup=_use_test_database)
            cls._server_process.start()
            while not cls._server_process.ready.wait(timeout=1):
                if not cls._server_process.is_alive():
                    raise RuntimeError("Server stopped")
            cls._port = cls._server_process.port.value

        @classmethod
        def tearDownClass(cls) -> None:
            cls._server_process.terminate()
            cls._server_process.join()
            cls._live_server_modified_settings.disable()
            super().tearDownClass()

    return LiveServerTestCase


def _make_application(*, static_wrapper: Any) -> Any:
    """Module level, so a spawned server process can unpickle it (as Channels' own)."""
    from channels.routing import get_default_application

    application = get_default_application()
    return static_wrapper(application) if static_wrapper is not None else application


def _use_test_database() -> None:
    """In the server process: use the test database the test runner created."""
    from django.conf import settings
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX

    name = (
        settings.DATABASES["default"]["TEST"]["NAME"]
        or f"{TEST_DATABASE_PREFIX}{settings.DATABASES['default']['NAME']}"
    )
    settings.DATABASES["default"]["NAME"] = name


class ChannelServerLiveServerTestCase(_live_server_base()):  # type: ignore[misc]
    """``ChannelsLiveServerTestCase`` (a ``TransactionTestCase`` with a live server on
    ``live_server_url`` / ``live_server_ws_url``), served by channelserver. Works with or
    without Daphne installed."""

    ProtocolServerProcess = ChannelServerProcess

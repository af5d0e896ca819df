"""``manage.py runchannelserver [addrport]``: ``runserver``, served by channelserver.

Shaped like Django's ``runserver`` (and ``django.contrib.staticfiles``' override of it):
the same ``addrport`` forms, ``--ipv6``, ``--noreload``, ``--nostatic``, ``--insecure``,
``--skip-checks``, the same banner and error sentences. It serves
``settings.ASGI_APPLICATION`` over HTTP and WebSocket. Every server setting is an option
too, generated from :class:`channelserver.config.Config`, over ``settings.CHANNELSERVER``
(see :mod:`channelserver.django_config`).

Autoreload: Django's reloader runs the server in a thread of a child process and exits
that process when a file changes. Two things make the restart kind to clients:

- the listening socket is bound once, by the reloader's parent process, and inherited by
  each child, so the port stays the same (``127.0.0.1:0`` included) and connections made
  during a restart wait in the listen queue instead of being refused;
- before the child exits, a ``file_changed`` receiver asks the server to shut down from
  its own loop, which closes open WebSockets with 1012 ("service restart") so clients
  know to reconnect, and waits (bounded by :attr:`Command.reload_grace`) for that.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import sys
import threading
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, SystemCheckError
from django.core.management.commands.runserver import naiveip_re
from django.db import connections
from django.utils import autoreload

from channelserver import __version__
from channelserver.config import Config, add_arguments
from channelserver.django_config import (
    application_target,
    config_for_command,
    load_application,
    settings_values,
)
from channelserver.errors import ConfigError, StartupError
from channelserver.logging import console_logging

#: The listening socket a reloader child inherits from its parent (a file descriptor).
SOCKET_FD_ENV = "CHANNELSERVER_RELOADER_FD"


class Command(BaseCommand):
    help = (
        "Starts channelserver serving settings.ASGI_APPLICATION (HTTP and WebSocket), "
        "reloading on code changes, and serving static files in DEBUG."
    )

    stealth_options = ("shutdown_message",)
    suppressed_base_arguments = {"--verbosity", "--traceback"}

    default_addr = "127.0.0.1"
    default_addr_ipv6 = "::1"
    default_port = "8000"
    #: How long a code change waits for the server to close its connections (WebSockets
    #: with 1012) before the process restarts.
    reload_grace = 3.0
    #: How long Ctrl+C in autoreload mode waits: Django's reloader parent kills the child
    #: 0.25 s after the interrupt.
    interrupt_grace = 0.2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from channelserver.server.server import ThreadStop

        self.config: Config | None = None
        #: Stops the server from the reloader's thread (a file changed, Ctrl+C).
        self.stopper = ThreadStop()
        self._reloader_socket: socket.socket | None = None
        self._reloader_watching = threading.Event()

    # -- options ---------------------------------------------------------------------------
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "addrport", nargs="?", help="Optional port number, or ipaddr:port (default: 127.0.0.1:8000)."
        )
        parser.add_argument("--ipv6", "-6", action="store_true", dest="use_ipv6", help="Use an IPv6 address.")
        parser.add_argument(
            "--noreload", action="store_false", dest="use_reloader", help="Do NOT use the auto-reloader."
        )
        parser.add_argument(
            "--nostatic",
            action="store_false",
            dest="use_static_handler",
            help="Do NOT serve static files at STATIC_URL (served by default in DEBUG).",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            dest="insecure_serving",
            help="Serve static files even if DEBUG is False.",
        )
        add_arguments(parser, skip=("host", "port"))

    def get_check_kwargs(self, options: dict[str, Any]) -> Any:
        """Checks run in :meth:`inner_run`, again on each reload, as runserver does."""
        return {"tags": set()}

    def execute(self, *args: Any, **options: Any) -> Any:
        if options["no_color"]:
            os.environ["DJANGO_COLORS"] = "nocolor"
        return super().execute(*args, **options)

    # -- handle: addrport and settings -> Config ---------------------------------------
    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not settings.ALLOWED_HOSTS:
            raise CommandError("You must set settings.ALLOWED_HOSTS if DEBUG is False.")
        try:
            from_settings = settings_values()
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        self.use_ipv6 = options["use_ipv6"]
        if self.use_ipv6 and not socket.has_ipv6:
            raise CommandError("Your Python does not support IPv6.")
        addr, port = self.parse_addrport(options["addrport"])
        if not addr:
            if self.use_ipv6:
                addr = self.default_addr_ipv6
            else:
                addr = str(from_settings.get("host") or self.default_addr)
        if addr == "0":
            addr = "0.0.0.0"
        if port is None:
            port = str(from_settings.get("port", self.default_port))
        try:
            self.config = config_for_command(options, host=addr, port=int(port))
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        self.run(**options)

    def parse_addrport(self, addrport: str | None) -> tuple[str, str | None]:
        """(address or "", port or None) from runserver's forms: 8000, 0.0.0.0:8000,
        [::1]:8000, localhost:8000."""
        if not addrport:
            return "", None
        match = re.match(naiveip_re, addrport)
        if match is None:
            raise CommandError(f'"{addrport}" is not a valid port number or address:port pair.')
        addr, _ipv4, ipv6, fqdn, port = match.groups()
        if not port.isdigit():
            raise CommandError(f"{port!r} is not a valid port number.")
        if addr:
            if ipv6:
                addr = addr[1:-1]
                self.use_ipv6 = True
            elif self.use_ipv6 and not fqdn:
                raise CommandError(f'"{addr}" is not a valid IPv6 address.')
        return addr or "", port

    # -- run: with or without the reloader --------------------------------------------
    def run(self, **options: Any) -> None:
        config = self.config
        assert config is not None
        if not options["use_reloader"]:
            self.inner_run(None, **options)
            return
        if config.supervised:
            for name in ("workers", "max_requests", "max_worker_memory", "max_worker_age"):
                if options.get(name) is not None:
                    given = f"--{name.replace('_', '-')} {getattr(config, name)}"
                    raise CommandError(
                        f"{given} runs worker processes, which the autoreloader cannot restart: add --noreload."
                    )
            # From settings or $WEB_CONCURRENCY: meant for production; develop on one.
            self.config = config = config.replace(
                workers=1, max_requests=None, max_worker_memory=None, max_worker_age=None
            )
        if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true":
            # The reloader's parent: bind once, so every child serves the same socket.
            sock = self.bind(config)
            sock.set_inheritable(True)
            self._reloader_socket = sock
            os.environ[SOCKET_FD_ENV] = str(sock.fileno())
        else:
            # The reloader's child. The reloader watches the modules imported (and the
            # files that failed to import) when it takes its first snapshot: import the
            # application now, so an edit made right after start-up is seen. A failure is
            # recorded by check_errors and raised again in inner_run's thread.
            with contextlib.suppress(Exception):
                autoreload.check_errors(self._preload)(self.serve_static(options))
            autoreload.autoreload_started.connect(self._watching, dispatch_uid="channelserver.runchannelserver")
        try:
            autoreload.run_with_reloader(self.inner_run, **options)
        finally:
            # Ctrl+C or SIGTERM reached the reloader loop in this (main) thread.
            self.stop_server(self.interrupt_grace)

    @staticmethod
    def _preload(static: bool) -> None:
        """Import the application; a StartupError (a setting) is left for inner_run to
        report as a CommandError, anything else is the project's code failing."""
        with contextlib.suppress(StartupError):
            load_application(static=static, raw=True)

    def _watching(self, sender: Any, **kwargs: Any) -> None:
        """Django's ``autoreload_started``: the reloader takes its first snapshot next."""
        self._reloader_watching.set()

    def bind(self, config: Config) -> socket.socket:
        from channelserver.server.server import bind_socket

        try:
            return bind_socket(config)
        except StartupError as exc:
            raise CommandError(str(exc)) from None

    def listening_socket(self, config: Config, reloading: bool) -> socket.socket:
        inherited = os.environ.get(SOCKET_FD_ENV)
        if reloading and inherited:
            sock = socket.socket(fileno=int(inherited))
            sock.setblocking(False)
            return sock
        return self.bind(config)

    def serve_static(self, options: dict[str, Any]) -> bool:
        return bool(
            apps.is_installed("django.contrib.staticfiles")
            and options.get("use_static_handler", True)
            and (settings.DEBUG or options.get("insecure_serving"))
        )

    def inner_run(self, *args: Any, **options: Any) -> None:
        reloading = bool(options["use_reloader"])
        try:
            self._inner_run(reloading, **options)
        except KeyboardInterrupt:
            if options.get("shutdown_message"):
                self.stdout.write(options["shutdown_message"])
            sys.exit(0)
        except CommandError as exc:
            if not reloading:
                raise
            # In the reloader's thread: report and keep watching for the fix.
            if isinstance(exc, SystemCheckError):
                self.stderr.write(str(exc), lambda x: x)
            else:
                self.stderr.write(f"Error: {exc}")
            self.stderr.write("Waiting for a file change to restart.")

    def _inner_run(self, reloading: bool, **options: Any) -> None:
        if reloading:
            # Report and serve once the reloader watches the files.
            self._reloader_watching.wait(self.reload_grace)
        # An exception silenced (by ManagementUtility.execute, or by run() above) to be
        # raised here, in the reloader's thread.
        autoreload.raise_last_exception()
        config = self.config
        assert config is not None
        static = self.serve_static(options)
        # The application first: in reload mode an error while importing it propagates
        # as it is, so the reloader watches the file that failed.
        try:
            app = load_application(static=static, raw=reloading)
        except StartupError as exc:
            raise CommandError(str(exc)) from None

        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
            if options.get("workers") is not None:
                from channelserver.checks import channel_layer_warnings

                for message in channel_layer_warnings(config.workers, where="--workers"):
                    self.stderr.write(self.style.WARNING(str(message)))
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()

        self.configure_logging(config, options)
        sock = self.listening_socket(config, reloading)
        if config.supervised:
            self.run_workers(config, sock, static, **options)
            return
        self.serve(config, app, sock, reloading, **options)

    # -- logging -----------------------------------------------------------------------
    def configure_logging(self, config: Config, options: dict[str, Any]) -> None:
        console_logging(config.log_level, **self.logging_options(options))

    def logging_options(self, options: dict[str, Any]) -> dict[str, bool]:
        """:func:`console_logging`'s options, from the command's."""
        return {
            "level_given": options.get("log_level") is not None or "log_level" in settings_values(),
            "no_color": bool(options.get("no_color")),
            "force_color": bool(options.get("force_color")),
        }

    # -- banner --------------------------------------------------------------------------
    def describe(self, sock: socket.socket) -> str:
        """The URL the socket serves, with the port it is really bound to."""
        from channelserver.server.server import describe_socket

        url = describe_socket(sock, tls=bool(self.config is not None and self.config.ssl_certfile))
        return url if url.startswith("unix:") else url + "/"

    def print_banner(self, where: list[str], workers: int = 1) -> None:
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        now = datetime.now().strftime("%B %d, %Y - %X")
        plural = f" with {workers} workers" if workers > 1 else ""
        lines = [
            now,
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}",
            *(f"Starting ASGI/channelserver version {__version__} server{plural} at {w}" for w in where),
            f"Quit the server with {quit_command}.",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    # -- serving ------------------------------------------------------------------------
    def serve(self, config: Config, app: Any, sock: socket.socket, reloading: bool, **options: Any) -> None:
        from channelserver.server.server import run

        def ready(server: Any) -> None:
            self.print_banner([self.describe(sock)])
            self.stopper.ready(server)

        self.stopper.starting()
        if reloading:
            autoreload.file_changed.connect(self.on_file_changed, dispatch_uid="channelserver.runchannelserver")
        try:
            # Under the autoreloader this runs in a thread of its own: no signal handlers.
            run(config, app, [sock], on_ready=ready, signals=threading.current_thread() is threading.main_thread())
        except StartupError as exc:
            raise CommandError(str(exc)) from None
        finally:
            self.stopper.finished()
        if options.get("shutdown_message"):
            self.stdout.write(options["shutdown_message"])

    def on_file_changed(self, sender: Any, file_path: Any, **kwargs: Any) -> None:
        """Django's reloader saw ``file_path`` change: close connections (WebSockets with
        1012) before it exits the process. Returns None, so the reload goes ahead."""
        self.stderr.write(f"{file_path} changed: closing connections before the restart.")
        self.stop_server(self.reload_grace)

    def stop_server(self, timeout: float) -> None:
        """Ask the server (running in another thread) to shut down, now or as soon as it
        listens; wait up to ``timeout``."""
        self.stopper.stop(timeout)

    def run_workers(self, config: Config, sock: socket.socket, static: bool, **options: Any) -> None:
        """``--workers N`` / ``--max-requests``: the supervisor, as ``python -m channelserver``
        runs it, on the socket bound here (so its errors were CommandErrors)."""
        try:
            from channelserver.supervisor.multiprocess import Supervisor
        except ImportError as exc:
            raise CommandError(f"--workers {config.workers}: the worker supervisor is not available ({exc}).") from None
        application_target()  # a clear error before any worker starts
        target = "channelserver.django_config:" + ("static_application" if static else "application")
        self.print_banner([self.describe(sock)], workers=config.workers)
        # The supervisor owns the socket from here (it wraps the descriptor and closes it).
        config = config.replace(fd=sock.detach())
        # Each worker logs as this process does (see console_logging).
        worker_logging = functools.partial(console_logging, **self.logging_options(options))
        code = Supervisor(config, target, worker_logging=worker_logging).run()
        if options.get("shutdown_message"):
            self.stdout.write(options["shutdown_message"])
        if code:
            sys.exit(code)

"""``python -m channelserver module:application [options]``; also the ``channelserver`` script."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .config import add_arguments, config_from_args
from .errors import EXIT_OK, EXIT_STARTUP_FAILED, ConfigError, StartupError
from .importer import import_app
from .server.log import configure_logging

__all__ = ["build_parser", "console", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="channelserver",
        description="Serve an ASGI application (Django Channels, Strawberry, any ASGI 3 app).",
    )
    parser.add_argument("application", help="The ASGI application, as 'module:attribute'.")
    parser.add_argument("--version", action="version", version=f"channelserver {__version__}")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.exit(2, f"channelserver: error: {exc}\n")
    configure_logging(config.log_level)
    log = logging.getLogger("channelserver.error")
    try:
        app = import_app(args.application)
        if config.supervised:
            from .supervisor.multiprocess import Supervisor

            return Supervisor(config, args.application, worker_logging=configure_logging).run()
        from .server.server import run

        run(config, app)
    except StartupError as exc:
        log.error("%s", exc)
        return EXIT_STARTUP_FAILED
    return EXIT_OK


def console() -> None:
    """The process's entry point: serve, then exit with main()'s code, even if an app left
    a thread busy (see ``server.tasks.exit_watchdog``)."""
    code = main()
    from .server.tasks import exit_watchdog

    exit_watchdog(code)
    sys.exit(code)


if __name__ == "__main__":
    console()

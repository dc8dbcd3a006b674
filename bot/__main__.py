"""`python -m bot`: Socket Mode when SLACK_APP_TOKEN is set, otherwise HTTP on $PORT.

`python -m bot check` checks the setup instead (see bot/check.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web

from . import check
from .app import create_runtime
from .config import Settings, load_settings, settings_help
from .errors import ConfigError, StartupError
from .http import EVENTS_PATH, build_web_app, serve_operations, socket_mode_handler
from .installs.oauth import INSTALL_PATH
from .ops.logs import configure_logging

logger = logging.getLogger("bot")


async def run_socket_mode(settings: Settings) -> None:
    """Connect, serve until SIGINT or SIGTERM, then let running turns finish and close."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as closing:  # whatever started is closed, last first
        runtime = await create_runtime(settings)
        closing.push_async_callback(runtime.close)
        handler = socket_mode_handler(runtime)
        closing.push_async_callback(handler.close_async)
        operations = await serve_operations(runtime)
        closing.push_async_callback(operations.cleanup)
        await handler.connect_async()  # type: ignore[no-untyped-call]  # slack_bolt leaves it unannotated
        logger.info("connected to Slack in Socket Mode; /healthz and /metrics on port %d", settings.port)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description=(
            "threadbox: a Slack app that gives every thread its own Claude code-execution container."
            " Runs in Socket Mode when SLACK_APP_TOKEN is set, otherwise serves HTTP on $PORT."
        ),
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", nargs="?", choices=["check"],
        help="check: verify the settings, the Slack and Anthropic credentials and the database, then exit",
    )
    if parser.parse_args(argv).command == "check":
        raise SystemExit(check.main())
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"threadbox: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    if settings.placeholders:
        logger.warning(
            "%s still hold(s) the .env.example placeholder, so it counts as unset",
            ", ".join(settings.placeholders),
        )
    if settings.oauth:
        logger.info("installing by OAuth: the install page is %s on port %d", INSTALL_PATH, settings.port)
    try:
        if settings.socket_mode:
            asyncio.run(run_socket_mode(settings))
        else:
            logger.info("serving HTTP on port %d (%s)", settings.port, EVENTS_PATH)
            web.run_app(build_web_app(settings), host=settings.host, port=settings.port, print=None)
    except StartupError as error:  # found at start-up: one line, as for a setting
        print(f"threadbox: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

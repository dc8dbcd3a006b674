"""`python -m bot`: Socket Mode when SLACK_APP_TOKEN is set, otherwise HTTP on $PORT."""

from __future__ import annotations

import asyncio
import logging
import sys

from aiohttp import web

from .app import build_web_app, create_runtime, socket_mode_handler
from .config import ConfigError, Settings, load_settings


async def run_socket_mode(settings: Settings) -> None:
    runtime = await create_runtime(settings)
    handler = socket_mode_handler(runtime)
    try:
        await handler.start_async()
    finally:
        await handler.close_async()
        await runtime.close()


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"threadbox: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.socket_mode:
        logging.getLogger(__name__).info("starting in Socket Mode")
        asyncio.run(run_socket_mode(settings))
    else:
        web.run_app(build_web_app(settings), port=settings.port, print=None)


if __name__ == "__main__":
    main()

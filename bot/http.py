"""The HTTP side: Slack's requests on `/slack/events` (HTTP mode), `/healthz` and `/metrics` (both
modes), and the Socket Mode handler that replaces the first in Socket Mode."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from .app import Runtime, create_runtime
from .config import Settings
from .installs.oauth import INSTALL_PATH, REDIRECT_PATH

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
HEALTH_TIMEOUT_SECONDS = 5.0
RUNTIME_KEY = web.AppKey("runtime", Runtime)


def socket_mode_handler(runtime: Runtime) -> AsyncSocketModeHandler:
    """Socket Mode: Slack pushes events over a WebSocket the app opens (no public URL)."""
    return AsyncSocketModeHandler(runtime.app, runtime.settings.slack_app_token or "")


def build_web_app(settings: Settings) -> web.Application:
    """HTTP mode: Slack events, commands and interactivity on one path, the install pages when
    installing by OAuth, plus a health check."""
    web_app = web.Application()

    async def lifecycle(web_app: web.Application) -> AsyncIterator[None]:
        runtime = web_app[RUNTIME_KEY] = await create_runtime(settings)
        yield
        await runtime.close()

    async def slack_events(request: web.Request) -> web.StreamResponse:
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, TypeError, KeyError, AttributeError):  # a body Bolt cannot parse
            return web.json_response({"ok": False, "error": "malformed request body"}, status=400)
        bolt_app = request.app[RUNTIME_KEY].app
        return await to_aiohttp_response(await bolt_app.async_dispatch(bolt_request))

    web_app.cleanup_ctx.append(lifecycle)
    web_app.router.add_post(EVENTS_PATH, slack_events)
    add_operations_routes(web_app, settings)
    return web_app


async def install_page(request: web.Request) -> web.Response:
    """Bolt's install flow: the "Add to Slack" page, and Slack's redirect back with a code."""
    flow = request.app[RUNTIME_KEY].app.oauth_flow
    if flow is None:
        return web.Response(status=404)
    bolt_request = await to_bolt_request(request)
    if request.path == INSTALL_PATH:
        return await to_aiohttp_response(await flow.handle_installation(bolt_request))
    return await to_aiohttp_response(await flow.handle_callback(bolt_request))


def add_operations_routes(web_app: web.Application, settings: Settings) -> None:
    """`/healthz` and `/metrics`, for the platform and Prometheus, in either mode; and when
    installing by OAuth, the install pages (Socket Mode serves them here too)."""
    web_app.router.add_get(HEALTH_PATH, health)
    web_app.router.add_get(METRICS_PATH, metrics_page)
    if settings.oauth:
        web_app.router.add_get(INSTALL_PATH, install_page)
        web_app.router.add_get(REDIRECT_PATH, install_page)


async def health(request: web.Request) -> web.Response:
    """200 only when the database takes a write: a platform then restarts or reroutes."""
    runtime: Runtime = request.app[RUNTIME_KEY]
    try:
        await asyncio.wait_for(runtime.store.check_writable(), HEALTH_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - any failure is an unhealthy database
        logger.warning("health check failed: %s", error)
        return web.json_response({"ok": False, "error": "database unavailable"}, status=503)
    return web.json_response({"ok": True})


async def metrics_page(request: web.Request) -> web.Response:
    """The Prometheus text format; the queue depth is read from the database at each scrape.
    With `METRICS_TOKEN` set, only a scrape bearing it is answered."""
    runtime: Runtime = request.app[RUNTIME_KEY]
    token = runtime.settings.metrics_token
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return web.json_response({"ok": False, "error": "metrics need the METRICS_TOKEN bearer token"}, status=401)
    try:
        runtime.metrics.queue_depth.set(
            await asyncio.wait_for(runtime.store.count_waiting(), HEALTH_TIMEOUT_SECONDS)
        )
    except Exception as error:  # noqa: BLE001 - the other metrics are still worth serving
        logger.warning("could not read the queue depth: %s", error)
    body, content_type = runtime.metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def serve_operations(runtime: Runtime) -> web.AppRunner:
    """Socket Mode has no HTTP app for Slack; this small one on $PORT serves only operations."""
    web_app = web.Application()
    web_app[RUNTIME_KEY] = runtime
    add_operations_routes(web_app, runtime.settings)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host=runtime.settings.host, port=runtime.settings.port).start()
    return runner


"""Assembles the running bot: clients, storage, the turn engine and the Bolt app."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
import anthropic
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from storage import Store, open_store

from .access import AccessControl, AccessPolicy
from .budget import Budgets
from .claude import ClaudeTurns
from .config import Settings
from .home import HomeTab
from .listeners import register_listeners
from .maintenance import maintain
from .tasks import stop_tasks
from .metrics import Metrics
from .payloads import TolerantApp
from .queue import QueueSettings, TurnQueue
from .turn import TurnRunner

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
HEALTH_TIMEOUT_SECONDS = 5.0


@dataclass
class Runtime:
    """Everything that lives as long as the process; built once, closed once."""

    settings: Settings
    store: Store
    slack: AsyncWebClient
    claude: anthropic.AsyncAnthropic
    http: aiohttp.ClientSession
    engine: TurnQueue
    app: AsyncApp
    maintenance: asyncio.Task[None]
    metrics: Metrics

    async def close(self) -> None:
        await stop_tasks([self.maintenance])
        await self.engine.shutdown(self.settings.shutdown_grace_seconds)
        await self.http.close()
        await self.claude.close()
        await self.store.close()


RUNTIME_KEY = web.AppKey("runtime", Runtime)


async def create_runtime(settings: Settings, metrics: Metrics | None = None) -> Runtime:
    """Open storage, identify the bot, register listeners and resume unanswered messages."""
    metrics = metrics or Metrics()
    store = await open_store(settings.database_url)
    slack = AsyncWebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            metrics.slack_error_counter(),  # first: it sees every answer, and never retries
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )
    identity = await slack.auth_test()
    access = AccessControl(
        slack,
        AccessPolicy(
            allowed_channels=settings.allowed_channels,
            allowed_users=settings.allowed_users,
            admin_users=settings.admin_users,
            allow_guests=settings.allow_guests,
            allow_external=settings.allow_external_users,
        ),
        home_team_id=str(identity["team_id"]),
    )
    claude = anthropic.AsyncAnthropic(api_key=settings.anthropic_api_key, http_client=metrics.anthropic_http_client())
    http = aiohttp.ClientSession()
    budgets = Budgets(store, settings.prices, settings.user_daily_budget, settings.workspace_daily_budget)
    runner = TurnRunner(
        store=store,
        claude=ClaudeTurns(
            claude,
            model=settings.anthropic_model,
            tool_version=settings.code_execution_tool,
            max_tokens=settings.max_tokens,
            context_window=settings.context_window,
            system_prompt=settings.system_prompt,
            deadline_seconds=settings.turn_timeout_seconds,
        ),
        slack=slack,
        http=http,
        bot_user_id=str(identity["user_id"]),
        max_message_chars=settings.max_message_chars,
        max_file_bytes=settings.max_file_bytes,
        access=access,
        streaming=settings.slack_streaming,
        follow_ups=settings.follow_ups,
        metrics=metrics,
        file_timeout=settings.file_timeout_seconds,
        max_separate_files=settings.max_output_files,
        show_usage=settings.show_usage,
        prices=settings.prices,
        budgets=budgets,
    )
    engine = TurnQueue(
        store=store,
        slack=slack,
        runner=runner,
        settings=QueueSettings(
            lease_seconds=settings.queue_lease_seconds,
            poll_seconds=settings.queue_poll_seconds,
            max_turns=settings.max_concurrent_turns,
            limits=settings.turn_limits,
        ),
    )
    app = TolerantApp(
        client=slack,
        signing_secret=settings.slack_signing_secret,
        request_verification_enabled=not settings.socket_mode,
        # Listeners store what they were sent before Slack is acknowledged; a failed insert
        # answers 500, so Slack sends the event again.
        process_before_response=True,
    )
    home = HomeTab(
        slack, store, access, settings.prices, budgets=budgets, workspace_url=_string(identity.get("url"))
    )
    register_listeners(app, engine, store, access, home=home, follow_ups=settings.follow_ups)
    await engine.start()
    maintenance = asyncio.create_task(
        maintain(
            store,
            claude,
            retention_seconds=settings.retention_days * 86400,
            interval_seconds=settings.maintenance_interval_seconds,
        )
    )
    return Runtime(settings, store, slack, claude, http, engine, app, maintenance, metrics)


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def socket_mode_handler(runtime: Runtime) -> AsyncSocketModeHandler:
    """Socket Mode: Slack pushes events over a WebSocket the app opens (no public URL)."""
    return AsyncSocketModeHandler(runtime.app, runtime.settings.slack_app_token)


def build_web_app(settings: Settings) -> web.Application:
    """HTTP mode: Slack events, commands and interactivity on one path, plus a health check."""
    web_app = web.Application()

    async def lifecycle(web_app: web.Application):  # type: ignore[no-untyped-def]
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
    add_operations_routes(web_app)
    return web_app


def add_operations_routes(web_app: web.Application) -> None:
    """`/healthz` and `/metrics`, for the platform and Prometheus, in either mode."""
    web_app.router.add_get(HEALTH_PATH, health)
    web_app.router.add_get(METRICS_PATH, metrics_page)


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
    """The Prometheus text format; the queue depth is read from the database at each scrape."""
    runtime: Runtime = request.app[RUNTIME_KEY]
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
    add_operations_routes(web_app)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, port=runtime.settings.port).start()
    return runner


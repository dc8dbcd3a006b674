"""The composition root: builds every client and component once, and closes them once.

Nothing else builds a client or reads settings: each component is handed what it uses
(`slack_side.py`, which it calls, builds the Slack clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, replace

import aiohttp
import anthropic
from anthropic.types import SkillParams
from prometheus_client import CollectorRegistry
from slack_bolt.async_app import AsyncApp
from slack_bolt.listener.async_builtins import AsyncTokenRevocationListeners
from slack_sdk.web.async_client import AsyncWebClient

from storage import Store, open_store

from .channels.book import ChannelSettingsBook
from .channels.file import SettingsFile
from .channels.keys import Keys
from .config import Settings
from .errors import StartupError
from .installs.uninstall import Uninstalls
from .jobs.maintenance import maintain
from .listeners import Intake, register_listeners
from .listeners.errors import TolerantApp
from .model.catalog import ModelCatalog, ModelLimits, model_limits
from .model.errors import api_message
from .model.request import ModelSettings
from .model.skills import skills_in_use
from .model.turns import ClaudeTurns
from .ops.metrics import Metrics
from .outbound.home import HomeTab
from .outbound.waiting import WaitingSigns
from .policy.budgets import Budgets
from .queue import QueueSettings, TurnQueue, process_owner_id
from .schedules.clock import ScheduleClock
from .schedules.commands import Scheduling
from .slack_side import slack_side, workspace_policies
from .tasks import stop_tasks
from .turn.checks import TurnChecks
from .turn.commands import thread_commands
from .turn.deliveries import OwedFiles
from .turn.export import ThreadExports
from .turn.prompt import Prompts
from .turn.resets import Resets
from .turn.runner import TurnRunner
from .turn.shared_files import FileIntake

logger = logging.getLogger(__name__)


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
    channels: ChannelSettingsBook
    scheduler: asyncio.Task[None]

    def reload_settings(self) -> None:
        """`SIGHUP`: read the settings file again (its problems are logged; nothing stops)."""
        if self.channels.file is not None:
            self.channels.file.reload_soon()

    async def close(self) -> None:
        if self.channels.file is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await self.channels.file.close()
        await stop_tasks([self.maintenance, self.scheduler])
        await self.engine.shutdown(self.settings.shutdown_grace_seconds)
        await self.http.close()
        await self.claude.close()
        await self.store.close()


def process_model_settings(
    settings: Settings, limits: ModelLimits, skills: tuple[SkillParams, ...] = ()
) -> ModelSettings:
    """The model request every channel makes unless its settings say otherwise."""
    return ModelSettings(
        model=settings.anthropic_model,
        tool_version=settings.code_execution_tool,
        max_tokens=limits.max_tokens,
        system_prompt=settings.system_prompt,
        web=settings.web,
        skills=skills,
    )


def process_keys(settings: Settings, skill_names: tuple[str, ...]) -> Keys:
    """The process settings as the bottom layer of every channel's settings."""
    return Keys(
        model=settings.anthropic_model, skills=skill_names, web_fetch=settings.web.fetch,
        web_search=settings.web.search, follow_ups=settings.follow_ups,
    )


async def channel_settings(
    settings: Settings, claude: anthropic.AsyncAnthropic, store: Store, limits: ModelLimits
) -> ChannelSettingsBook:
    """The channels' settings: the process's, the settings file's (read now: its problems stop
    start-up) and what admins set in Slack."""
    shelf, names = await skills_in_use(claude, store, settings.skills, settings.custom_skills_dir)
    catalog = ModelCatalog(claude, limits, settings.max_tokens)
    file = None
    if settings.settings_file:
        file = SettingsFile(settings.settings_file, skills=tuple(shelf), check_model=catalog.problem)
        await file.load()
    base = process_model_settings(settings, limits, tuple(shelf[name] for name in names))
    return ChannelSettingsBook(
        process=process_keys(settings, names), base=base, store=store, catalog=catalog, shelf=shelf, file=file
    )


def as_configured(settings: Settings, limits: ModelLimits) -> ModelLimits:
    """The model's limits, with `CONTEXT_WINDOW_TOKENS` and `ANTHROPIC_MAX_TOKENS` where set."""
    return replace(
        limits,
        context_window=settings.context_window or limits.context_window,
        max_tokens=settings.max_tokens or limits.max_tokens,
    )


async def configured_model(claude: anthropic.AsyncAnthropic, settings: Settings) -> ModelLimits:
    """The configured model's limits as the settings leave them (`ModelUnusable` stops
    start-up); a deprecation is logged."""
    try:
        limits = await model_limits(claude, settings.anthropic_model)
    except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as error:
        raise StartupError(f"the Anthropic API refused ANTHROPIC_API_KEY ({api_message(error)})") from None
    except anthropic.APIConnectionError as error:
        raise StartupError(
            f"could not reach the Anthropic API ({error}): check the network and ANTHROPIC_BASE_URL"
        ) from None
    if limits.warning:
        logger.warning("%s", limits.warning)
    return as_configured(settings, limits)


async def create_runtime(settings: Settings) -> Runtime:
    """Ask the model's limits, open storage, identify the bot, register listeners and resume
    unanswered messages. A start that fails closes what it opened (an open store would keep
    the process alive) and raises `StartupError` with one line for the operator."""
    opened = contextlib.AsyncExitStack()
    try:
        runtime = await _assemble(settings, opened)
    except BaseException:
        await opened.aclose()
        raise
    if runtime.channels.file is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # no signals here
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.reload_settings)
    return runtime


async def _assemble(settings: Settings, opened: contextlib.AsyncExitStack) -> Runtime:
    metrics = Metrics(CollectorRegistry())  # the process's own: no global registry
    claude = anthropic.AsyncAnthropic(api_key=settings.anthropic_api_key, http_client=metrics.anthropic_http_client())
    opened.push_async_callback(claude.close)
    limits = await configured_model(claude, settings)
    store = await open_store(
        settings.database_url, pool_size=settings.database_pool_size, acquire_seconds=settings.database_acquire_seconds
    )
    opened.push_async_callback(store.close)
    channels = await channel_settings(settings, claude, store, limits)
    if channels.file is not None:
        channels.file.watch()
        opened.push_async_callback(channels.file.close)
    policies = workspace_policies(settings, channels)
    side = await slack_side(settings, metrics, store, channels, policies)
    slack, workspaces = side.client, side.workspaces
    http = aiohttp.ClientSession()
    opened.push_async_callback(http.close)
    budgets = Budgets(store, settings.prices, policies.budgets)
    resets = Resets(store, claude)
    clock = ScheduleClock(store, workspaces, poll_seconds=settings.queue_poll_seconds)
    runner = TurnRunner(
        store=store,
        claude=ClaudeTurns(
            claude,
            context_window=limits.context_window,
            deadline_seconds=settings.turn_timeout_seconds,
        ),
        intake=FileIntake(
            claude, http, metrics, store, max_bytes=settings.max_file_bytes, timeout=settings.file_timeout_seconds
        ),
        owed=OwedFiles(
            store, claude, http, metrics, timeout=settings.file_timeout_seconds,
            max_separate_files=settings.max_output_files,
        ),
        prompts=Prompts(store),
        checks=TurnChecks(budgets, metrics, max_message_chars=settings.max_message_chars),
        commands=thread_commands(
            store, resets, settings.prices,
            ThreadExports(
                store, claude, http, timeout=settings.file_timeout_seconds, max_file_bytes=settings.max_file_bytes,
                max_fork_files=settings.max_fork_files, max_fork_bytes=settings.max_fork_bytes,
            ),
            Scheduling(store, clock, min_interval_seconds=settings.schedule_min_interval_seconds,
                       per_person=settings.max_schedules_per_person),
        ),
        metrics=metrics,
        streaming=settings.slack_streaming,
        task_display=settings.task_display,
        show_usage=settings.show_usage,
        prices=settings.prices,
    )
    engine = TurnQueue(
        store=store,
        workspaces=workspaces,
        runner=runner,
        resets=resets,
        waiting=WaitingSigns(store, workspaces),
        settings=QueueSettings(
            lease_seconds=settings.queue_lease_seconds,
            poll_seconds=settings.queue_poll_seconds,
            max_turns=settings.max_concurrent_turns,
            limits=settings.turn_limits,
        ),
        owner=process_owner_id(),
    )
    app = TolerantApp(
        client=slack,
        signing_secret=settings.slack_signing_secret,
        request_verification_enabled=not settings.socket_mode,
        # Listeners store what they were sent before Slack is acknowledged; a failed insert
        # answers 500, so Slack sends the event again.
        process_before_response=True,
        oauth_settings=side.oauth,
    )
    revocations = AsyncTokenRevocationListeners(side.installations) if side.installations is not None else None
    uninstalls = Uninstalls(store, claude, workspaces, revocations)
    clock.queue = engine  # runs it fires are woken into this process's queue at once
    intake = Intake(engine, store, HomeTab(store, settings.prices, budgets), metrics, clock, uninstalls)
    register_listeners(app, intake, workspaces)
    await engine.start()
    scheduler = asyncio.create_task(clock.run(), name="schedules")
    maintenance = asyncio.create_task(
        maintain(
            store,
            claude,
            retention_seconds=settings.retention_days * 86400,
            interval_seconds=settings.maintenance_interval_seconds,
        )
    )
    return Runtime(settings, store, slack, claude, http, engine, app, maintenance, metrics, channels, scheduler)

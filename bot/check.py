"""`python -m bot check`: a preflight of the whole setup, one line per check, each with its fix.

It proves what a first mention would need (settings, Slack tokens and scopes, the Anthropic key,
model, code execution tool and Files API, the database) without running a paid turn.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TextIO

import aiohttp
import anthropic
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from storage import POSTGRES_SCHEMES, open_store
from storage.connector import migrations

from .app import as_configured, process_model_settings
from .channels.file import read_settings_file
from .config import DEFAULTS, Settings, load_settings
from .errors import ConfigError, StartupError, slack_error
from .installs.scopes import BOT_SCOPES
from .model.catalog import ModelCatalog, ModelLimits, ModelUnusable, model_limits
from .model.errors import api_message
from .model.skills import ANTHROPIC_SKILLS, custom_folders, too_many

CHECK_TIMEOUT_SECONDS = 20.0
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
# Slack could not be reached (after slack_sdk's own retries).
UNREACHABLE = (SlackRequestError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"✓ {self.name}: {self.detail}"
        return f"✗ {self.name}: {self.detail}" + (f" → {self.fix}" if self.fix else "")


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


async def run_checks(settings: Settings) -> list[CheckResult]:
    """Every check after the settings, concurrently; results in a fixed order."""
    checks: list[Awaitable[list[CheckResult]]] = [check_oauth(settings) if settings.oauth else check_slack(settings)]
    if settings.socket_mode:
        checks.append(check_socket_mode(settings))
    checks += [check_anthropic(settings), check_database(settings)]
    results = await asyncio.gather(*checks)
    return [result for group in results for result in group]


async def check_slack(settings: Settings) -> list[CheckResult]:
    """The bot token works (`auth.test`), and Slack granted every scope the manifest declares."""
    slack = AsyncWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    try:
        identity = await asyncio.wait_for(slack.auth_test(), CHECK_TIMEOUT_SECONDS)
    except SlackApiError as error:
        return [failed("slack bot token", f"auth.test answered {slack_error(error)}",
                       "copy the Bot User OAuth Token (xoxb-…) of the installed app into SLACK_BOT_TOKEN")]
    except UNREACHABLE as error:
        return [failed("slack bot token", f"could not reach {settings.slack_api_url}: {error or type(error).__name__}",
                       "check the network and SLACK_API_URL")]
    who = f"bot @{identity.get('user')} ({identity.get('user_id')}) in {identity.get('team')}"
    granted = {s.strip() for s in str(identity.headers.get("x-oauth-scopes", "")).split(",") if s.strip()}
    missing = [scope for scope in BOT_SCOPES if scope not in granted]
    if missing:
        scopes = failed("slack scopes", f"missing {', '.join(missing)}",
                        "add them under OAuth & Permissions (or paste manifest.yml again) and reinstall the app")
    else:
        scopes = passed("slack scopes", f"all {len(BOT_SCOPES)} granted")
    return [passed("slack bot token", who), scopes]


async def check_oauth(settings: Settings) -> list[CheckResult]:
    """The app's client id and secret: Slack refuses a made-up code (`invalid_code`) only once it
    has accepted them."""
    slack = AsyncWebClient(base_url=settings.slack_api_url)
    name = "slack app credentials"
    try:
        await asyncio.wait_for(
            slack.oauth_v2_access(
                client_id=settings.slack_client_id or "", client_secret=settings.slack_client_secret or "",
                code="threadbox-check",
            ),
            CHECK_TIMEOUT_SECONDS,
        )
    except SlackApiError as error:
        answer = slack_error(error)
        if answer == "invalid_code":
            return [passed(name, f"client id and secret accepted; people install at /slack/install ({len(BOT_SCOPES)}"
                                 " bot scopes from manifest.yml)")]
        return [failed(name, f"oauth.v2.access answered {answer}",
                       "copy the Client ID and Client Secret (Basic Information) into SLACK_CLIENT_ID and"
                       " SLACK_CLIENT_SECRET")]
    except UNREACHABLE as error:
        return [failed(name, f"could not reach {settings.slack_api_url}: {error or type(error).__name__}",
                       "check the network and SLACK_API_URL")]
    return [failed(name, "Slack accepted a made-up install code", "check SLACK_API_URL: it is not Slack's")]


async def check_socket_mode(settings: Settings) -> list[CheckResult]:
    """The app-level token opens a Socket Mode connection (`apps.connections.open`)."""
    slack = AsyncWebClient(base_url=settings.slack_api_url)
    name, fix = "slack app token", "create an app-level token with connections:write and put it in SLACK_APP_TOKEN"
    try:
        await asyncio.wait_for(slack.apps_connections_open(app_token=settings.slack_app_token or ""),
                               CHECK_TIMEOUT_SECONDS)
    except SlackApiError as error:
        return [failed(name, f"apps.connections.open answered {slack_error(error)}", fix)]
    except UNREACHABLE as error:
        return [failed(name, f"could not reach Slack: {error or type(error).__name__}", "check the network")]
    return [passed(name, "Socket Mode connection opens")]


async def check_anthropic(settings: Settings) -> list[CheckResult]:
    """Key, model and code execution tool through a token count (free), then the Files API."""
    client = anthropic.AsyncAnthropic(api_key=settings.anthropic_api_key, max_retries=1,
                                      timeout=CHECK_TIMEOUT_SECONDS)
    try:
        model, limits = await _check_model(client, settings)
        if limits is None:
            return [model]
        results = [
            model, await _check_tool(client, settings, limits), await _check_skills(client, settings),
            await _check_files(client),
        ]
        if settings.settings_file:
            results.append(await _check_settings_file(client, settings, limits))
        return results
    except anthropic.AuthenticationError as error:
        return [failed("anthropic key", f"refused ({api_message(error)})",
                       "put a valid key from console.anthropic.com in ANTHROPIC_API_KEY")]
    except anthropic.PermissionDeniedError as error:
        return [failed("anthropic key", f"not allowed ({api_message(error)})",
                       "use a key of a workspace with access to the model and the Files API")]
    except anthropic.APIConnectionError as error:
        return [failed("anthropic key", f"could not reach the API: {error}",
                       "check the network and ANTHROPIC_BASE_URL")]
    except anthropic.APIStatusError as error:
        return [failed("anthropic API", f"answered {error.status_code} ({api_message(error)})",
                       "try again later; see status.anthropic.com")]
    finally:
        await client.close()


async def _check_model(
    client: anthropic.AsyncAnthropic, settings: Settings
) -> tuple[CheckResult, ModelLimits | None]:
    """The model as start-up reads it: its window and output limit, and whether it can run turns."""
    try:
        limits = await model_limits(client, settings.anthropic_model)
    except ModelUnusable as error:
        return failed("anthropic model", error.problem,
                      "set ANTHROPIC_MODEL to a model id from the Anthropic console's model list"), None
    limits = as_configured(settings, limits)
    detail = (
        f"key accepted; {limits.model} ({limits.display_name}), {limits.context_window:,}-token window,"
        f" {limits.max_tokens:,} output tokens"
    )
    if limits.warning:
        detail += f"; warning: deprecated, retires {limits.retires_at or 'soon'}"
    return passed("anthropic model", detail), limits


async def _check_tool(client: anthropic.AsyncAnthropic, settings: Settings, limits: ModelLimits) -> CheckResult:
    request = process_model_settings(settings, limits)  # the tool exactly as a turn sends it
    try:
        count = await client.messages.count_tokens(
            model=request.model, messages=[{"role": "user", "content": "ping"}], tools=request.tools()
        )
    except (anthropic.BadRequestError, anthropic.NotFoundError) as error:
        newest = DEFAULTS["CODE_EXECUTION_TOOL"]
        return failed("code execution tool", f"{settings.code_execution_tool!r} refused ({api_message(error)})",
                      f"set CODE_EXECUTION_TOOL to a version the model supports, e.g. {newest}")
    return passed("code execution tool", f"{settings.code_execution_tool} accepted ({count.input_tokens} tokens)")


async def _check_skills(client: anthropic.AsyncAnthropic, settings: Settings) -> CheckResult:
    """The skills a new thread gets: Anthropic's, and each custom folder with its skill (or
    that start-up uploads it). Nothing is uploaded here."""
    try:
        folders = await custom_folders(settings.custom_skills_dir)
    except StartupError as error:
        return failed("skills", str(error), "point CUSTOM_SKILLS_DIR at a folder of skill folders")
    problem = too_many(len(settings.skills) + len(folders))
    if problem:
        return failed("skills", problem, "name fewer in SKILLS or keep fewer folders in CUSTOM_SKILLS_DIR")
    uploaded: dict[str, str] = {}
    if folders:
        try:
            uploaded = {skill.display_name or "": skill.id async for skill in client.skills.list()}
        except anthropic.APIStatusError as error:
            return failed("skills", f"the Skills API answered {error.status_code} ({api_message(error)})",
                          "use a key of a workspace with Agent Skills enabled")
    parts = [f"{name} (Anthropic's)" for name in settings.skills] + [
        f"{f.name} ({uploaded[f.name]})" if f.name in uploaded else f"{f.name} (uploaded at start-up)"
        for f in folders
    ]
    return passed("skills", ", ".join(parts) if parts else "none (SKILLS=none)")


async def _check_settings_file(
    client: anthropic.AsyncAnthropic, settings: Settings, limits: ModelLimits
) -> CheckResult:
    """The settings file as start-up reads it: every problem on a line of its own."""
    path = settings.settings_file or ""
    try:
        folders = await custom_folders(settings.custom_skills_dir)
    except StartupError:
        folders = []  # the skills check says why
    catalog = ModelCatalog(client, limits, settings.max_tokens)
    skills = (*ANTHROPIC_SKILLS, *(folder.name for folder in folders))
    read, problems = await read_settings_file(path, skills=skills, check_model=catalog.problem)
    if problems:
        heading = f"{len(problems)} problem(s); fix each named key (the README lists the keys and their values):"
        return failed("settings file", "\n  ".join([heading, *problems]), "")
    return passed("settings file", f"{path}: {len(read.channels)} channel(s), {len(read.workspaces)} workspace(s)")


async def _check_files(client: anthropic.AsyncAnthropic) -> CheckResult:
    try:
        await client.files.list(limit=1)
    except anthropic.APIStatusError as error:
        return failed("anthropic files API", f"answered {error.status_code} ({api_message(error)})",
                      "use a key of a workspace with the Files API enabled")
    return passed("anthropic files API", "answers")


async def check_database(settings: Settings) -> list[CheckResult]:
    """Reachable, writable, and its schema one this release knows (opening applies migrations)."""
    name = "database"
    try:
        store = await asyncio.wait_for(open_store(settings.database_url), CHECK_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - any backend's failure to connect or migrate
        return [failed(name, f"cannot open {_redacted(settings.database_url)}: {error or type(error).__name__}",
                       "check DATABASE_URL, that the server runs and that the disk or account allows writes")]
    try:
        await asyncio.wait_for(store.check_writable(), CHECK_TIMEOUT_SECONDS)
        version = await store.schema_version()
    except Exception as error:  # noqa: BLE001
        return [failed(name, f"not writable: {error or type(error).__name__}",
                       "give the bot's user write access to the database (or its file and folder)")]
    finally:
        await store.close()
    known = len(migrations("postgres" if settings.database_url.startswith(POSTGRES_SCHEMES) else "sqlite"))
    if version != known:
        return [failed(name, f"schema version {version}, this release knows {known}",
                       "run the threadbox release that last migrated this database, or a newer one")]
    return [passed(name, f"{_redacted(settings.database_url)} writable, schema version {version} (current)")]


def _redacted(database_url: str) -> str:
    """The URL without its password (in the credentials or as `?password=`), for printing."""
    database_url = _PASSWORD_PARAMETER.sub(r"\1***", database_url)
    scheme, sep, rest = database_url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return database_url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def main(env: Mapping[str, str] | None = None, out: TextIO = sys.stdout) -> int:
    """Print one line per check; 0 when every check passes, else 1."""
    try:
        settings = load_settings(env)
    except ConfigError as error:
        print(failed("settings", str(error), "set it in .env or in the environment").line(), file=out)
        return 1
    mode = "Socket Mode" if settings.socket_mode else f"HTTP mode on port {settings.port}"
    results = [passed("settings", f"complete ({mode})"), *asyncio.run(run_checks(settings))]
    for result in results:
        print(result.line(), file=out)
    return 0 if all(result.ok for result in results) else 1

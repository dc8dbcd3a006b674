"""All configuration, read once from the environment (and `.env`).

`SETTINGS` is the one place each setting's default and meaning are written: start-up, `--help`
and the components all take them from here (the README's table documents the same).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from dotenv import find_dotenv, load_dotenv

from storage import ACQUIRE_SECONDS, POOL_SIZE, TurnLimits

from . import config_values as values
from .channels.keys import FollowUps
from .errors import ConfigError
from .model.catalog import DEFAULT_MODEL, prices_for
from .model.request import DEFAULT_SYSTEM_PROMPT
from .model.skills import ANTHROPIC_SKILLS
from .model.web import WebTools
from .policy.budgets import Budget
from .policy.usage import Prices

T = TypeVar("T")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# `.env.example` holds values such as `xapp-...`: a copied, unfilled one must not count as set.
PLACEHOLDER_ENDINGS = ("...", "…")


@dataclass(frozen=True)
class Setting:
    """One setting: its variable, its default as it would be written there, and its meaning."""

    name: str
    default: str
    meaning: str
    shown: str | None = None
    """How `--help` shows the default when it is not a value (`required`, `everyone`…)."""


SETTINGS: tuple[Setting, ...] = (
    Setting("SLACK_BOT_TOKEN", "", "bot token, xoxb-…: threadbox serves the one workspace it is installed in",
            "required, unless installing by OAuth"),
    Setting("SLACK_CLIENT_ID", "", "with SLACK_CLIENT_SECRET: installs by OAuth in any number of workspaces"
            " (/slack/install), instead of SLACK_BOT_TOKEN", "unset"),
    Setting("SLACK_CLIENT_SECRET", "", "the app's client secret (Basic Information), with SLACK_CLIENT_ID", "unset"),
    Setting("SLACK_SIGNING_SECRET", "", "verifies that requests come from Slack", "required in HTTP mode"),
    Setting("SLACK_APP_TOKEN", "", "app-level token xapp-…; when set, the bot runs in Socket Mode", "unset"),
    Setting("SLACK_API_URL", "https://slack.com/api/", "Web API base URL (https; GovSlack: https://slack-gov.com/api/)"),
    Setting("ANTHROPIC_API_KEY", "", "Anthropic API key", "required"),
    Setting("ANTHROPIC_BASE_URL", "", "API endpoint, read by the anthropic SDK itself", "SDK default"),
    Setting("ANTHROPIC_MODEL", DEFAULT_MODEL, "model for every turn"),
    Setting("CODE_EXECUTION_TOOL", "code_execution_20260521", "code execution tool version"),
    Setting("ANTHROPIC_MAX_TOKENS", "", "output limit of one model call (thinking included)", "the model's"),
    Setting("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT, "replaces the built-in system prompt", "built in"),
    Setting("DATABASE_URL", "sqlite:///threadbox.db", "sqlite:///relative/path, sqlite:////absolute/path or postgresql://…"),
    Setting("DATABASE_POOL_SIZE", str(POOL_SIZE), "PostgreSQL connections one process keeps open at most"),
    Setting(
        "DATABASE_ACQUIRE_SECONDS", f"{ACQUIRE_SECONDS:g}", "the longest a call waits for a free PostgreSQL connection"
    ),
    Setting("PORT", "3000", "HTTP mode port"),
    Setting("HOST", "0.0.0.0", "the interface HTTP listens on (127.0.0.1: this machine only)"),
    Setting(
        "METRICS_TOKEN", "", "when set, /metrics answers only requests bearing it (Authorization: Bearer …)", "unset"
    ),
    Setting("LOG_LEVEL", "INFO", "Python logging level: " + ", ".join(LOG_LEVELS)),
    Setting("MAX_MESSAGE_CHARS", "20000", "longer messages get an explanation instead of a model call"),
    Setting("MAX_FILE_MB", "100", "largest file a user can share into a container"),
    Setting("SLACK_STREAMING", "true", "false posts and edits an ordinary message instead of streaming"),
    Setting("SLACK_TASK_DISPLAY", "timeline", "plan shows a streamed answer's code runs together as one plan"),
    Setting("QUEUE_LEASE_SECONDS", "10", "how long a process holds a thread without renewing"),
    Setting("QUEUE_POLL_SECONDS", "10", "the slowest a process looks for work it was not told about"),
    Setting("MAX_CONCURRENT_TURNS", "200", "turns one process runs at once (in different threads)"),
    Setting(
        "MAX_TURNS_PER_PERSON", "3", "turns one person may have running at once, over every process (none: no cap)"
    ),
    Setting("MAX_TURNS_OVERALL", "none", "turns running at once over every process sharing the database"),
    Setting("SHUTDOWN_GRACE_SECONDS", "20", "on SIGTERM, how long running turns may finish"),
    Setting("ALLOWED_CHANNELS", "", "channel ids where the bot answers (DMs are not limited by it)", "everyone"),
    Setting("ALLOWED_USERS", "", "user ids and user group ids who may use the bot", "everyone"),
    Setting(
        "ADMIN_USERS", "", "user ids always allowed, exempt from budgets, who see the totals on the Home tab", "none"
    ),
    Setting("ALLOW_GUESTS", "false", "let guests (restricted accounts) use the bot"),
    Setting("ALLOW_EXTERNAL_USERS", "false", "let Slack Connect people from other organisations use the bot"),
    Setting("RETENTION_DAYS", "30", "a thread idle this long loses its files and stored history"),
    Setting("MAINTENANCE_INTERVAL_SECONDS", "3600", "how often pruning and retention run"),
    Setting("FOLLOW_UPS", "all", "mention: in busy threads only messages that mention the bot start a turn"),
    Setting(
        "SETTINGS_FILE", "", "a TOML file of per-channel and per-workspace settings, read again on SIGHUP and change",
        "none",
    ),
    Setting(
        "CHANNEL_SETTINGS_BY", "admins", "members: a channel's members may also change its settings in Slack"
    ),
    Setting("LOG_FORMAT", "text", "json: one JSON object per log line"),
    Setting("TURN_TIMEOUT_MINUTES", "15", "a turn running longer is stopped, with a message in the thread"),
    Setting("FILE_TIMEOUT_SECONDS", "60", "a file transfer that makes no progress this long is given up"),
    Setting("MAX_OUTPUT_FILES", "10", "more files than this from one turn arrive as one zip with a listing"),
    Setting("SCHEDULE_MIN_INTERVAL_MINUTES", "60", "the shortest time between two runs of one schedule"),
    Setting("MAX_SCHEDULES_PER_PERSON", "10", "active and paused schedules one person may have"),
    Setting("MAX_FORK_FILES", "50", "!fork is refused for a thread with more files than this"),
    Setting("MAX_FORK_MB", "500", "!fork is refused for a thread whose files add up to more than this"),
    Setting(
        "CONTEXT_WINDOW_TOKENS", "",
        "the model's context window; older code output is left out to stay inside it", "the model's",
    ),
    Setting("SHOW_USAGE", "false", "true adds the turn's tokens and estimated cost to the reply's closing line"),
    Setting(
        "USAGE_PRICES", "", "US dollars per million tokens: input=…,cache_write=…,cache_read=…,output=… (any of them)",
        "the model's list prices",
    ),
    Setting("SKILLS", "xlsx,pptx,docx,pdf", "Anthropic's skills in every new thread (none: no skills)"),
    Setting("CUSTOM_SKILLS_DIR", "", "a folder of skill folders (each with a SKILL.md) uploaded once, pinned", "none"),
    Setting("WEB_FETCH", "true", "Claude may read pages whose links people give (or a search found)"),
    Setting("WEB_FETCH_MAX_USES", "5", "pages one turn may read"),
    Setting("WEB_FETCH_MAX_CONTENT_TOKENS", "25000", "the most of one page Claude reads, in tokens"),
    Setting("WEB_SEARCH", "false", "Claude may search the web (paid per search: see USAGE_PRICES)"),
    Setting("WEB_SEARCH_MAX_USES", "5", "searches one turn may make"),
    Setting("WEB_ALLOWED_DOMAINS", "", "the only domains the web tools may reach (comma-separated)", "any"),
    Setting("WEB_BLOCKED_DOMAINS", "", "domains the web tools may not reach (not with WEB_ALLOWED_DOMAINS)", "none"),
    Setting("USER_DAILY_BUDGET", "", "per person and UTC day: tokens (500000) or estimated dollars ($5)", "none"),
    Setting("WORKSPACE_DAILY_BUDGET", "", "per workspace and UTC day: tokens or estimated dollars", "none"),
)
DEFAULTS: dict[str, str] = {setting.name: setting.default for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    """"" when installing by OAuth (`slack_client_id` set)."""
    slack_client_id: str | None
    slack_client_secret: str | None
    slack_signing_secret: str
    slack_app_token: str | None
    slack_api_url: str
    anthropic_api_key: str
    anthropic_model: str
    code_execution_tool: str
    max_tokens: int | None
    """None: the model's own output limit."""
    database_url: str
    database_pool_size: int
    database_acquire_seconds: float
    port: int
    host: str
    metrics_token: str | None
    log_level: str
    max_message_chars: int
    max_file_bytes: int
    slack_streaming: bool
    task_display: str
    """How a streamed answer shows its code runs: `timeline` (in the text) or `plan` (together)."""
    skills: tuple[str, ...]
    custom_skills_dir: str | None
    web: WebTools
    system_prompt: str
    queue_lease_seconds: float
    queue_poll_seconds: float
    max_concurrent_turns: int
    turn_limits: TurnLimits
    shutdown_grace_seconds: float
    allowed_channels: frozenset[str]
    allowed_users: frozenset[str]
    admin_users: frozenset[str]
    allow_guests: bool
    allow_external_users: bool
    retention_days: float
    maintenance_interval_seconds: float
    log_format: str
    follow_ups: FollowUps
    settings_file: str | None
    channel_settings_by: str
    """`admins` (ADMIN_USERS and the workspace's admins and owners) or `members` (also the channel's)."""
    turn_timeout_seconds: float
    file_timeout_seconds: float
    max_output_files: int
    max_fork_files: int
    schedule_min_interval_seconds: float
    max_schedules_per_person: int
    max_fork_bytes: int
    placeholders: tuple[str, ...]
    """Settings that still held a `.env.example` placeholder, and so count as unset."""
    context_window: int | None
    """None: the model's own context window."""
    show_usage: bool
    prices: Prices
    user_daily_budget: Budget | None
    workspace_daily_budget: Budget | None

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def oauth(self) -> bool:
        """Installed by Slack's OAuth flow in any number of workspaces (not one bot token)."""
        return bool(self.slack_client_id)


def load_settings(env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Read settings from `env` (default: the process environment, after loading `.env`).

    `ANTHROPIC_BASE_URL` is not read here: the anthropic SDK reads it itself.
    """
    if env is None:
        if dotenv:  # the `.env` of the directory the bot is started in (or above it)
            load_dotenv(find_dotenv(usecwd=True), override=False)
        env = os.environ
    placeholders = tuple(
        setting.name for setting in SETTINGS if env.get(setting.name, "").strip().endswith(PLACEHOLDER_ENDINGS)
    )

    def get(name: str) -> str:
        """The setting as given, else its default (a placeholder counts as not given)."""
        value = "" if name in placeholders else env.get(name, "").strip()
        return value or DEFAULTS[name]

    def read(name: str, parse: Callable[..., T], *more: Any) -> T:
        """The setting, parsed (`parse` names the setting in what it refuses)."""
        return parse(get(name), name, *more)

    oauth = slack_mode(get)
    required = ["ANTHROPIC_API_KEY"] if oauth else ["SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY"]
    app_token = get("SLACK_APP_TOKEN") or None
    if not app_token:
        required.append("SLACK_SIGNING_SECRET")
    missing = [name for name in required if not get(name)]
    if missing:
        unfilled = f"; still the .env.example placeholder: {', '.join(placeholders)}" if placeholders else ""
        why = ""
        if "SLACK_SIGNING_SECRET" in missing:
            how = "still the placeholder" if "SLACK_APP_TOKEN" in placeholders else "unset"
            why = f"; HTTP mode, as SLACK_APP_TOKEN is {how} (set it for Socket Mode)"
        if "SLACK_BOT_TOKEN" in missing:
            why += "; or set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET instead of it, to install by OAuth"
        raise ConfigError(f"missing required setting(s): {', '.join(missing)} (see .env.example){why}{unfilled}")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")

    log_level = get("LOG_LEVEL").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    port = read("PORT", values.whole_number)
    if port > 65535:
        raise ConfigError(f"PORT must be at most 65535, got {port}")

    return Settings(
        slack_bot_token=get("SLACK_BOT_TOKEN"),
        slack_client_id=get("SLACK_CLIENT_ID") or None,
        slack_client_secret=get("SLACK_CLIENT_SECRET") or None,
        slack_signing_secret=get("SLACK_SIGNING_SECRET"),
        slack_app_token=app_token,
        slack_api_url=read("SLACK_API_URL", values.slack_api_url),
        anthropic_api_key=get("ANTHROPIC_API_KEY"),
        anthropic_model=get("ANTHROPIC_MODEL"),
        code_execution_tool=get("CODE_EXECUTION_TOOL"),
        max_tokens=read("ANTHROPIC_MAX_TOKENS", values.optional_whole_number),
        database_url=get("DATABASE_URL"),
        database_pool_size=read("DATABASE_POOL_SIZE", values.whole_number),
        database_acquire_seconds=read("DATABASE_ACQUIRE_SECONDS", values.positive),
        port=port,
        host=get("HOST"),
        metrics_token=get("METRICS_TOKEN") or None,
        log_level=log_level,
        max_message_chars=read("MAX_MESSAGE_CHARS", values.whole_number),
        max_file_bytes=read("MAX_FILE_MB", values.whole_number) * 1024 * 1024,
        slack_streaming=read("SLACK_STREAMING", values.boolean),
        task_display=read("SLACK_TASK_DISPLAY", values.choice, ("timeline", "plan")),
        skills=read("SKILLS", values.skill_names, ANTHROPIC_SKILLS),
        custom_skills_dir=get("CUSTOM_SKILLS_DIR") or None,
        web=web_tools(read),
        system_prompt=get("SYSTEM_PROMPT"),
        queue_lease_seconds=read("QUEUE_LEASE_SECONDS", values.positive),
        queue_poll_seconds=read("QUEUE_POLL_SECONDS", values.positive),
        max_concurrent_turns=read("MAX_CONCURRENT_TURNS", values.whole_number),
        turn_limits=TurnLimits(
            per_person=read("MAX_TURNS_PER_PERSON", values.cap),
            overall=read("MAX_TURNS_OVERALL", values.cap),
        ),
        shutdown_grace_seconds=read("SHUTDOWN_GRACE_SECONDS", values.positive),
        allowed_channels=read("ALLOWED_CHANNELS", values.slack_ids, values.CHANNEL_IDS),
        allowed_users=read("ALLOWED_USERS", values.slack_ids, values.PERSON_OR_GROUP_IDS),
        admin_users=read("ADMIN_USERS", values.slack_ids, values.PERSON_IDS),
        allow_guests=read("ALLOW_GUESTS", values.boolean),
        allow_external_users=read("ALLOW_EXTERNAL_USERS", values.boolean),
        retention_days=read("RETENTION_DAYS", values.positive),
        maintenance_interval_seconds=read("MAINTENANCE_INTERVAL_SECONDS", values.positive),
        log_format=read("LOG_FORMAT", values.choice, ("text", "json")),
        follow_ups=read("FOLLOW_UPS", values.follow_ups),
        settings_file=get("SETTINGS_FILE") or None,
        channel_settings_by=read("CHANNEL_SETTINGS_BY", values.choice, ("admins", "members")),
        turn_timeout_seconds=read("TURN_TIMEOUT_MINUTES", values.whole_number) * 60.0,
        file_timeout_seconds=read("FILE_TIMEOUT_SECONDS", values.positive),
        max_output_files=read("MAX_OUTPUT_FILES", values.whole_number),
        max_fork_files=read("MAX_FORK_FILES", values.whole_number),
        schedule_min_interval_seconds=read("SCHEDULE_MIN_INTERVAL_MINUTES", values.whole_number) * 60.0,
        max_schedules_per_person=read("MAX_SCHEDULES_PER_PERSON", values.whole_number),
        max_fork_bytes=read("MAX_FORK_MB", values.whole_number) * 1024 * 1024,
        placeholders=placeholders,
        context_window=read("CONTEXT_WINDOW_TOKENS", values.optional_whole_number),
        show_usage=read("SHOW_USAGE", values.boolean),
        prices=read("USAGE_PRICES", values.prices, prices_for(get("ANTHROPIC_MODEL"))),
        user_daily_budget=read("USER_DAILY_BUDGET", values.budget),
        workspace_daily_budget=read("WORKSPACE_DAILY_BUDGET", values.budget),
    )


def slack_mode(get: Callable[[str], str]) -> bool:
    """True to install by OAuth (client id and secret), False for one bot token; both, or half of
    the OAuth pair, is a mistake that says what to drop or add."""
    client_id, client_secret = get("SLACK_CLIENT_ID"), get("SLACK_CLIENT_SECRET")
    if bool(client_id) != bool(client_secret):
        pair = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET")
        given, lacking = pair if client_id else pair[::-1]
        raise ConfigError(f"{given} is set without {lacking}: installing by OAuth takes both (or unset {given})")
    if client_id and get("SLACK_BOT_TOKEN"):
        raise ConfigError(
            "SLACK_BOT_TOKEN and SLACK_CLIENT_ID/SLACK_CLIENT_SECRET are both set: unset SLACK_BOT_TOKEN to install"
            " by OAuth in many workspaces, or unset SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to serve the token's"
            " one workspace"
        )
    return bool(client_id)


def web_tools(read: Callable[..., Any]) -> WebTools:
    allowed, blocked = read("WEB_ALLOWED_DOMAINS", values.domains), read("WEB_BLOCKED_DOMAINS", values.domains)
    if allowed and blocked:
        raise ConfigError("WEB_ALLOWED_DOMAINS and WEB_BLOCKED_DOMAINS cannot both be set")
    return WebTools(
        fetch=read("WEB_FETCH", values.boolean),
        search=read("WEB_SEARCH", values.boolean),
        fetch_max_uses=read("WEB_FETCH_MAX_USES", values.whole_number),
        search_max_uses=read("WEB_SEARCH_MAX_USES", values.whole_number),
        max_content_tokens=read("WEB_FETCH_MAX_CONTENT_TOKENS", values.whole_number),
        allowed_domains=allowed,
        blocked_domains=blocked,
    )


def settings_help() -> str:
    """The settings table for `python -m bot --help`."""
    width = max(len(setting.name) for setting in SETTINGS)
    lines = ["settings (environment or .env; the environment wins):"]
    lines += [
        f"  {setting.name:<{width}}  {setting.meaning} (default: {setting.shown or setting.default})"
        for setting in SETTINGS
    ]
    return "\n".join(lines)

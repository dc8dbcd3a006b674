"""All configuration, read once from the environment (and `.env`).

`SETTINGS` is the one place each setting's default and meaning are written: start-up, `--help`
and the components all take them from here (the README's table documents the same).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from dotenv import find_dotenv, load_dotenv

from storage import TurnLimits

from .errors import ConfigError
from .model.request import DEFAULT_SYSTEM_PROMPT
from .policy.budgets import Budget, parse_budget
from .policy.usage import Prices, parse_prices
from .workspaces import FollowUps

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
    Setting("SLACK_BOT_TOKEN", "", "bot token, xoxb-…", "required"),
    Setting("SLACK_SIGNING_SECRET", "", "verifies that requests come from Slack", "required in HTTP mode"),
    Setting("SLACK_APP_TOKEN", "", "app-level token xapp-…; when set, the bot runs in Socket Mode", "unset"),
    Setting("SLACK_API_URL", "https://slack.com/api/", "Web API base URL (https; GovSlack: https://slack-gov.com/api/)"),
    Setting("ANTHROPIC_API_KEY", "", "Anthropic API key", "required"),
    Setting("ANTHROPIC_BASE_URL", "", "API endpoint, read by the anthropic SDK itself", "SDK default"),
    Setting("ANTHROPIC_MODEL", "claude-sonnet-5-5", "model for every turn"),
    Setting("CODE_EXECUTION_TOOL", "code_execution_20250825", "code execution tool version"),
    Setting("ANTHROPIC_MAX_TOKENS", "8192", "output limit of one model call"),
    Setting("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT, "replaces the built-in system prompt", "built in"),
    Setting("DATABASE_URL", "sqlite:///threadbox.db", "sqlite:///relative/path, sqlite:////absolute/path or postgresql://…"),
    Setting("PORT", "3000", "HTTP mode port"),
    Setting("LOG_LEVEL", "INFO", "Python logging level: " + ", ".join(LOG_LEVELS)),
    Setting("MAX_MESSAGE_CHARS", "20000", "longer messages get an explanation instead of a model call"),
    Setting("MAX_FILE_MB", "100", "largest file a user can share into a container"),
    Setting("SLACK_STREAMING", "true", "false posts and edits an ordinary message instead of streaming"),
    Setting("QUEUE_LEASE_SECONDS", "10", "how long a process holds a thread without renewing"),
    Setting("QUEUE_POLL_SECONDS", "10", "the slowest a process looks for work it was not told about"),
    Setting("MAX_CONCURRENT_TURNS", "10", "turns one process runs at once (in different threads)"),
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
    Setting("LOG_FORMAT", "text", "json: one JSON object per log line"),
    Setting("TURN_TIMEOUT_MINUTES", "15", "a turn running longer is stopped, with a message in the thread"),
    Setting("FILE_TIMEOUT_SECONDS", "60", "a file transfer that makes no progress this long is given up"),
    Setting("MAX_OUTPUT_FILES", "10", "more files than this from one turn arrive as one zip with a listing"),
    Setting(
        "CONTEXT_WINDOW_TOKENS", "200000",
        "the model's context window; older code output is left out to stay inside it",
    ),
    Setting("SHOW_USAGE", "false", "true adds the turn's tokens and estimated cost to the reply's closing line"),
    Setting("USAGE_PRICES", "input=3,cache_write=3.75,cache_read=0.30,output=15", "US dollars per million tokens"),
    Setting("USER_DAILY_BUDGET", "", "per person and UTC day: tokens (500000) or estimated dollars ($5)", "none"),
    Setting("WORKSPACE_DAILY_BUDGET", "", "per workspace and UTC day: tokens or estimated dollars", "none"),
)
DEFAULTS: dict[str, str] = {setting.name: setting.default for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    slack_signing_secret: str
    slack_app_token: str | None
    slack_api_url: str
    anthropic_api_key: str
    anthropic_model: str
    code_execution_tool: str
    max_tokens: int
    database_url: str
    port: int
    log_level: str
    max_message_chars: int
    max_file_bytes: int
    slack_streaming: bool
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
    turn_timeout_seconds: float
    file_timeout_seconds: float
    max_output_files: int
    placeholders: tuple[str, ...]
    """Settings that still held a `.env.example` placeholder, and so count as unset."""
    context_window: int
    show_usage: bool
    prices: Prices
    user_daily_budget: Budget | None
    workspace_daily_budget: Budget | None

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)


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

    required = ["SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY"]
    app_token = get("SLACK_APP_TOKEN") or None
    if not app_token:
        required.append("SLACK_SIGNING_SECRET")
    missing = [name for name in required if not get(name)]
    if missing:
        unfilled = f"; still the .env.example placeholder: {', '.join(placeholders)}" if placeholders else ""
        raise ConfigError(f"missing required setting(s): {', '.join(missing)} (see .env.example){unfilled}")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")

    log_level = get("LOG_LEVEL").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    port = _whole(get("PORT"), "PORT")
    if port > 65535:
        raise ConfigError(f"PORT must be at most 65535, got {port}")

    return Settings(
        slack_bot_token=get("SLACK_BOT_TOKEN"),
        slack_signing_secret=get("SLACK_SIGNING_SECRET"),
        slack_app_token=app_token,
        slack_api_url=_slack_api_url(get("SLACK_API_URL")),
        anthropic_api_key=get("ANTHROPIC_API_KEY"),
        anthropic_model=get("ANTHROPIC_MODEL"),
        code_execution_tool=get("CODE_EXECUTION_TOOL"),
        max_tokens=_whole(get("ANTHROPIC_MAX_TOKENS"), "ANTHROPIC_MAX_TOKENS"),
        database_url=get("DATABASE_URL"),
        port=port,
        log_level=log_level,
        max_message_chars=_whole(get("MAX_MESSAGE_CHARS"), "MAX_MESSAGE_CHARS"),
        max_file_bytes=_whole(get("MAX_FILE_MB"), "MAX_FILE_MB") * 1024 * 1024,
        slack_streaming=_bool(get("SLACK_STREAMING"), "SLACK_STREAMING"),
        system_prompt=get("SYSTEM_PROMPT"),
        queue_lease_seconds=_positive(get("QUEUE_LEASE_SECONDS"), "QUEUE_LEASE_SECONDS"),
        queue_poll_seconds=_positive(get("QUEUE_POLL_SECONDS"), "QUEUE_POLL_SECONDS"),
        max_concurrent_turns=_whole(get("MAX_CONCURRENT_TURNS"), "MAX_CONCURRENT_TURNS"),
        turn_limits=TurnLimits(
            per_person=_cap(get("MAX_TURNS_PER_PERSON"), "MAX_TURNS_PER_PERSON"),
            overall=_cap(get("MAX_TURNS_OVERALL"), "MAX_TURNS_OVERALL"),
        ),
        shutdown_grace_seconds=_positive(get("SHUTDOWN_GRACE_SECONDS"), "SHUTDOWN_GRACE_SECONDS"),
        allowed_channels=_ids(get("ALLOWED_CHANNELS"), "ALLOWED_CHANNELS", "CGD"),
        allowed_users=_ids(get("ALLOWED_USERS"), "ALLOWED_USERS", "UWS"),
        admin_users=_ids(get("ADMIN_USERS"), "ADMIN_USERS", "UW"),
        allow_guests=_bool(get("ALLOW_GUESTS"), "ALLOW_GUESTS"),
        allow_external_users=_bool(get("ALLOW_EXTERNAL_USERS"), "ALLOW_EXTERNAL_USERS"),
        retention_days=_positive(get("RETENTION_DAYS"), "RETENTION_DAYS"),
        maintenance_interval_seconds=_positive(get("MAINTENANCE_INTERVAL_SECONDS"), "MAINTENANCE_INTERVAL_SECONDS"),
        log_format=_choice(get("LOG_FORMAT"), "LOG_FORMAT", ("text", "json")),
        follow_ups=_follow_ups(get("FOLLOW_UPS")),
        turn_timeout_seconds=_whole(get("TURN_TIMEOUT_MINUTES"), "TURN_TIMEOUT_MINUTES") * 60.0,
        file_timeout_seconds=_positive(get("FILE_TIMEOUT_SECONDS"), "FILE_TIMEOUT_SECONDS"),
        max_output_files=_whole(get("MAX_OUTPUT_FILES"), "MAX_OUTPUT_FILES"),
        placeholders=placeholders,
        context_window=_whole(get("CONTEXT_WINDOW_TOKENS"), "CONTEXT_WINDOW_TOKENS"),
        show_usage=_bool(get("SHOW_USAGE"), "SHOW_USAGE"),
        prices=_prices(get("USAGE_PRICES")),
        user_daily_budget=_budget(get("USER_DAILY_BUDGET"), "USER_DAILY_BUDGET"),
        workspace_daily_budget=_budget(get("WORKSPACE_DAILY_BUDGET"), "WORKSPACE_DAILY_BUDGET"),
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


def _slack_api_url(url: str) -> str:
    """https only: the bot token travels with every call (plain http only to this machine)."""
    parsed = urlparse(url)
    if parsed.scheme != "https" and not (parsed.scheme == "http" and _is_loopback(parsed.hostname or "")):
        raise ConfigError(f"SLACK_API_URL must be an https:// URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cap(value: str | None, name: str) -> int | None:
    """A whole number, or `none` (or empty) for no cap."""
    if (value or "").strip().lower() in ("", "none"):
        return None
    return _whole(value, name)


def _whole(value: str | None, name: str) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than zero, got {number}")
    return number


def _ids(value: str | None, name: str, prefixes: str) -> frozenset[str]:
    """A comma- or space-separated list of Slack ids, each starting with one of `prefixes`."""
    ids = frozenset((value or "").replace(",", " ").split())
    wrong = sorted(i for i in ids if i[:1] not in prefixes or not i.isalnum() or i.upper() != i)
    if wrong:
        raise ConfigError(f"{name} takes Slack ids starting with {'/'.join(prefixes)}, got {', '.join(wrong)}")
    return ids


def _choice(value: str | None, name: str, choices: tuple[str, ...]) -> str:
    lowered = (value or "").lower()
    if lowered not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return lowered


def _budget(value: str | None, name: str) -> Budget | None:
    try:
        return parse_budget(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number of tokens (500000) or dollars ($5), got {value!r}") from None


def _positive(value: str | None, name: str) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than zero, got {value}")
    return number


def _prices(value: str) -> Prices:
    """The default prices, with those `value` names in their place."""
    try:
        return parse_prices(value, parse_prices(DEFAULTS["USAGE_PRICES"]))
    except ValueError as error:
        raise ConfigError(f"USAGE_PRICES: {error}") from None


def _follow_ups(value: str) -> FollowUps:
    return "mention" if _choice(value, "FOLLOW_UPS", ("all", "mention")) == "mention" else "all"


def _bool(value: str | None, name: str) -> bool:
    lowered = (value or "").lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
